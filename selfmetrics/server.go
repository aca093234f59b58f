package selfmetrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/tcpspan/tcpspan/agent"
)

// DefaultReadHeaderTimeout bounds how long the health endpoint waits for a
// request's headers, so that idle clients cannot hold connections open.
const DefaultReadHeaderTimeout = 5 * time.Second

// Server is the opt-in health endpoint: GET /healthz answers "ok" while
// the agent traces, GET /metrics serves every metric of [Definitions] in
// the Prometheus exposition format.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	page *prometheusPage
}

// Serve listens on addr (host:port; port 0 picks one) and serves the
// health endpoint from current until [Server.Close]. res, the agent's own
// resource, is the page's target_info.
func Serve(addr string, res *resource.Resource, current func() agent.Health) (*Server, error) {
	page, err := newPrometheusPage(res, current)
	if err != nil {
		return nil, fmt.Errorf("health endpoint: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		page.provider.Shutdown(context.Background())
		return nil, fmt.Errorf("health endpoint: %w", err)
	}
	s := &Server{ln: ln, page: page, srv: &http.Server{Handler: handler(page.handler), ReadHeaderTimeout: DefaultReadHeaderTimeout}}
	go s.srv.Serve(ln)
	return s, nil
}

// handler serves /healthz and, from metrics, /metrics.
func handler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", metrics)
	return mux
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving, bounded by ctx.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, s.page.provider.Shutdown(ctx))
}
