package selfmetrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tcpspan/tcpspan/agent"
)

// DefaultReadHeaderTimeout bounds how long the health endpoint waits for a
// request's headers, so that idle clients cannot hold connections open.
const DefaultReadHeaderTimeout = 5 * time.Second

// Server is the opt-in health endpoint: GET /healthz answers "ok" while
// the agent traces, GET /metrics lists every value of [Values] as text.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Serve listens on addr (host:port; port 0 picks one) and serves the
// health endpoint from current until [Server.Close].
func Serve(addr string, current func() agent.Health) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health endpoint: %w", err)
	}
	s := &Server{ln: ln, srv: &http.Server{Handler: Handler(current), ReadHeaderTimeout: DefaultReadHeaderTimeout}}
	go s.srv.Serve(ln)
	return s, nil
}

// Handler serves /healthz and /metrics.
func Handler(current func() agent.Health) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, Text(Values(current())))
	})
	return mux
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving, bounded by ctx.
func (s *Server) Close(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
