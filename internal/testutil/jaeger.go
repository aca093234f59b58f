package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
)

// JaegerBinEnv names a Jaeger v2 binary to use instead of building one with
// scripts/tools.sh.
const JaegerBinEnv = "TCPSPAN_JAEGER"

// Jaeger is a Jaeger v2 process with in-memory storage, started by
// [StartJaeger] for one test. Every listener is on 127.0.0.1, on ports picked
// free at start.
type Jaeger struct {
	OTLPGRPC string // OTLP/gRPC receiver, host:port
	OTLPHTTP string // OTLP/HTTP receiver, http://host:port (POST /v1/traces)
	QueryURL string // query service, http://host:port (/api/v3/...)

	LogPath string // Jaeger's stdout and stderr

	bin, cfgPath string
	stop         func(kill bool) // ends the current process, if running
}

// jaegerConfig replaces Jaeger's built-in all-in-one configuration, whose
// other listeners (remote sampling 5778/5779, health check 13133, expvar,
// zpages, metrics 8888, the jaeger and zipkin receivers) sit on fixed ports:
// two Jaegers, or a collector with health_check on 13133, would collide.
// Jaeger's self-tracing is off: it exports to OTEL_EXPORTER_OTLP_ENDPOINT,
// localhost:4317 by default, which may be someone else's collector. No batch
// processor: a span is queryable as soon as the receiver has taken it.
// jaegerConfigFile is the configuration `make jaeger` runs; tests move its
// four loopback endpoints to free ports.
const jaegerConfigFile = "tools/jaeger/jaeger.yaml"

// jaegerConfig returns the configuration with its endpoints replaced, in
// the order: query HTTP, query gRPC, OTLP gRPC, OTLP HTTP.
func jaegerConfig(queryHTTP, queryGRPC, otlpGRPC, otlpHTTP string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(root, jaegerConfigFile))
	if err != nil {
		return "", err
	}
	return strings.NewReplacer(
		"127.0.0.1:16686", queryHTTP,
		"127.0.0.1:16685", queryGRPC,
		"127.0.0.1:14317", otlpGRPC,
		"127.0.0.1:14318", otlpHTTP,
	).Replace(string(b)), nil
}

// StartJaeger builds Jaeger v2 if needed (scripts/tools.sh jaeger; the first
// build takes minutes), starts it with in-memory storage on loopback, waits
// until its receivers and query API answer, and stops it at cleanup. Its log
// is printed if the test fails.
func StartJaeger(tb testing.TB) *Jaeger {
	tb.Helper()
	bin := jaegerBinary(tb)
	var lastErr error
	// Free ports are picked, released, then bound by Jaeger: another process
	// can take one in between, so a start that loses that race is retried.
	for attempt := 0; attempt < 3; attempt++ {
		j, err := startJaeger(tb, bin)
		if err == nil {
			return j
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	tb.Fatalf("jaeger: %v", lastErr)
	return nil
}

var errPortTaken = errors.New("a port was taken before Jaeger bound it")

func startJaeger(tb testing.TB, bin string) (*Jaeger, error) {
	tb.Helper()
	ports := freePorts(tb, 4)
	addr := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
	j := &Jaeger{
		OTLPGRPC: addr(0),
		OTLPHTTP: "http://" + addr(1),
		QueryURL: "http://" + addr(2),
	}
	dir := tb.TempDir()
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	cfg, err := jaegerConfig(addr(2), addr(3), addr(0), addr(1))
	if err != nil {
		tb.Fatalf("jaeger config: %v", err)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	j.LogPath = filepath.Join(dir, "jaeger.log")
	j.bin, j.cfgPath = bin, cfgPath
	start := time.Now()
	if err := j.launch(tb); err != nil {
		return nil, err
	}
	tb.Logf("jaeger: ready in %v: OTLP gRPC %s, OTLP HTTP %s, query %s", time.Since(start).Round(time.Millisecond), j.OTLPGRPC, j.OTLPHTTP, j.QueryURL)
	tb.Cleanup(func() {
		j.stop(false)
		if tb.Failed() {
			tb.Logf("--- jaeger log %s (last 16 KiB) ---\n%s", j.LogPath, readTail(j.LogPath, 16<<10))
		}
	})
	return j, nil
}

// launch starts the process and waits until it is ready.
func (j *Jaeger) launch(tb testing.TB) error {
	tb.Helper()
	logf, err := os.OpenFile(j.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(j.bin, "--config="+j.cfgPath)
	// Nothing in the configuration is left on the default "localhost", but
	// keep any listener that falls back to the variable on loopback too.
	cmd.Env = append(os.Environ(), "JAEGER_LISTEN_HOST=127.0.0.1")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Dies with the test binary even if cleanup never runs (the signal is
	// sent when the starting OS thread exits).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("jaeger: start %s: %v", j.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	j.stop = func(kill bool) {
		select {
		case <-exited:
			return
		default:
		}
		if kill {
			cmd.Process.Kill()
		} else {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	if err := j.waitReady(exited, 30*time.Second); err != nil {
		j.stop(false)
		log := readTail(j.LogPath, 8<<10)
		if strings.Contains(log, "address already in use") {
			return fmt.Errorf("%w\n%s", errPortTaken, log)
		}
		return fmt.Errorf("%v\n--- %s (last 8 KiB) ---\n%s", err, j.LogPath, log)
	}
	return nil
}

// Kill ends Jaeger abruptly (SIGKILL), as a crashed collector: its
// listeners vanish and everything it stored is gone.
func (j *Jaeger) Kill(tb testing.TB) {
	tb.Helper()
	j.stop(true)
}

// Restart starts Jaeger again on the same ports after [Jaeger.Kill], with
// empty storage, and waits until it is ready.
func (j *Jaeger) Restart(tb testing.TB) {
	tb.Helper()
	j.stop(true)
	if err := j.launch(tb); err != nil {
		tb.Fatalf("jaeger: restart: %v", err)
	}
}

// waitReady waits until both OTLP receivers accept connections and the query
// API answers. Extensions (the query service) start before the receivers, so
// the query API alone is not enough.
func (j *Jaeger) waitReady(exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	httpHost := strings.TrimPrefix(j.OTLPHTTP, "http://")
	var last error
	for {
		select {
		case <-exited:
			return errors.New("jaeger exited before it was ready")
		default:
		}
		last = nil
		for _, a := range []string{j.OTLPGRPC, httpHost} {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				last = err
				break
			}
			c.Close()
		}
		if last == nil {
			resp, err := client.Get(j.QueryURL + "/api/v3/services")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				err = fmt.Errorf("GET /api/v3/services: %s", resp.Status)
			}
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var jaegerBin struct {
	sync.Mutex
	path string
}

// jaegerBinary returns $TCPSPAN_JAEGER, or builds Jaeger with
// scripts/tools.sh once per test binary.
func jaegerBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(JaegerBinEnv); p != "" {
		return p
	}
	jaegerBin.Lock()
	defer jaegerBin.Unlock()
	if jaegerBin.path != "" {
		return jaegerBin.path
	}
	root, err := moduleRoot()
	if err != nil {
		tb.Fatalf("jaeger: %v", err)
	}
	start := time.Now()
	cmd := exec.Command(filepath.Join(root, "scripts", "tools.sh"), "jaeger")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("jaeger: scripts/tools.sh jaeger: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	path := lines[len(lines)-1]
	if d := time.Since(start); d > 5*time.Second {
		tb.Logf("jaeger: built in %v:\n%s", d.Round(time.Second), stderr.String())
	}
	jaegerBin.path = path
	return path
}

// moduleRoot walks up from the working directory (a test runs in its
// package's directory) to the go.mod of module github.com/tcpspan/tcpspan.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(data)), "module github.com/tcpspan/tcpspan\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/tcpspan/tcpspan above the working directory")
		}
		dir = parent
	}
}

// freePorts returns n distinct TCP ports free on 127.0.0.1 right now.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func readTail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Types of the spans read back, from package jaegerapi.
type (
	Trace      = jaegerapi.Trace
	Span       = jaegerapi.Span
	Event      = jaegerapi.Event
	Status     = jaegerapi.Status
	SpanKind   = jaegerapi.SpanKind
	StatusCode = jaegerapi.StatusCode
)

// Span kinds and status codes.
const (
	SpanKindInternal = jaegerapi.SpanKindInternal
	SpanKindServer   = jaegerapi.SpanKindServer
	SpanKindClient   = jaegerapi.SpanKindClient
	StatusUnset      = jaegerapi.StatusUnset
	StatusOK         = jaegerapi.StatusOK
	StatusError      = jaegerapi.StatusError
)

func (j *Jaeger) client() jaegerapi.Client { return jaegerapi.Client{BaseURL: j.QueryURL} }

// Services lists the services Jaeger has spans of (GET /api/v3/services).
func (j *Jaeger) Services(tb testing.TB) []string {
	tb.Helper()
	services, err := j.client().Services()
	if err != nil {
		tb.Fatalf("jaeger: %v", err)
	}
	return services
}

// Traces returns the traces that have a span of service starting at or after
// since (up to 1000 traces), through
//
//	GET /api/v3/traces?query.service_name=S&query.start_time_min=T&query.start_time_max=T&query.num_traces=N
//
// whose answer is {"result": OTLP/JSON TracesData}; a trace may span several
// resourceSpans. No trace is an empty result (the API answers 404). Spans are
// in start order within a trace, traces in order of their first span.
func (j *Jaeger) Traces(tb testing.TB, service string, since time.Time) []Trace {
	tb.Helper()
	traces, err := j.client().Traces(service, since, time.Now().Add(time.Hour))
	if err != nil {
		tb.Fatalf("jaeger: %v", err)
	}
	return traces
}

// WaitSpans polls [Jaeger.Traces] until service has at least n spans since
// the given time, and returns them all, in start order. It fails the test
// after timeout.
func (j *Jaeger) WaitSpans(tb testing.TB, service string, since time.Time, n int, timeout time.Duration) []Span {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		traces, err := j.client().Traces(service, since, time.Now().Add(time.Hour))
		if err != nil {
			tb.Fatalf("jaeger: %v", err)
		}
		var spans []Span
		for _, t := range traces {
			spans = append(spans, t.ServiceSpans(service)...)
		}
		if len(spans) >= n {
			sort.SliceStable(spans, func(a, b int) bool { return spans[a].Start.Before(spans[b].Start) })
			return spans
		}
		if time.Now().After(deadline) {
			tb.Fatalf("jaeger: service %q has %d spans since %v, want %d, after %v (services: %q)",
				service, len(spans), since.Format(time.RFC3339Nano), n, timeout, j.Services(tb))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
