package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// ArtifactsEnv names a directory where TestHTMLReportInBrowser leaves the
// page and its screenshot; without it they go to the test's temporary
// directory, which is removed.
const ArtifactsEnv = "TCPSPAN_ARTIFACTS"

// TestHTMLReportInBrowser plays connections that fail in different ways
// while the agent exports to Jaeger, writes the HTML report with the built
// tcpspan-report, and loads it in a real headless Chromium. What the
// browser parsed must hold a timeline of each kind of error, drawn from
// the spans Jaeger returns (both ends side by side where both are in
// Jaeger), numbers that equal Jaeger's and the kernel's, and the storm;
// the screenshot must show the timelines' colours.
func TestHTMLReportInBrowser(t *testing.T) {
	testutil.RequireBPF(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (scripts/deps.sh installs it): %v", err)
	}
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	report := buildReport(t)
	ns := testutil.NewNetNS(t)
	// Handshakes the kernel gives up on end within seconds.
	ns.Sysctl(t, "net.ipv4.tcp_synack_retries", "1")
	start := time.Now()
	a := startAgent(t, bin, ns, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC, "OTEL_SERVICE_NAME=tcpspan-e2e-report")
	before := ns.Counters(t)

	runScenarios(t, ns) // a clean connection, a refused connect, a close with unread data
	refuse(t, ns, 60)   // a storm of resets from a closed port
	overflow(t, ns)     // handshakes dropped by a full accept queue
	time.Sleep(time.Second)
	after := ns.Counters(t)
	a.stop(t)
	t.Log(a.stopped())

	dir := os.Getenv(ArtifactsEnv)
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "tcpspan-report.html")
	writeReport(t, report, jaeger, start, page)

	// What Jaeger holds, read here, independently of the report.
	spans := jaegerSpans(t, jaeger, start.Add(-5*time.Second))
	errConns := map[string]int{} // error.type -> connections
	var stormConns, rstEvents, errorSpans int
	byID := map[string]*jaegerapi.Span{}
	for i := range spans {
		sp := &spans[i]
		byID[sp.SpanID] = sp
		if sp.Scope != "github.com/tcpspan/tcpspan" {
			continue // an application's
		}
		rstEvents += sp.EventCount("tcp.rst_sent")
		if sp.Connections() > 1 {
			stormConns += sp.Connections()
		}
		if isError(sp) {
			errorSpans++
			errConns[attr(sp, "error.type")] += sp.Connections()
		}
	}
	t.Logf("Jaeger: %d spans, %d with status Error, by error.type %v, %d connections in storms", len(spans), errorSpans, errConns, stormConns)
	for _, want := range []string{"tcp.refused", "tcp.rst_sent", "tcp.rst_received", "tcp.accept_queue_overflow"} {
		if errConns[want] == 0 {
			t.Errorf("no %s span in Jaeger: the scenario did not play", want)
		}
	}
	if stormConns < 2 {
		t.Errorf("no storm span in Jaeger (60 refused connects)")
	}
	if rsts := after["TcpOutRsts"] - before["TcpOutRsts"]; uint64(rstEvents) != rsts {
		t.Errorf("RSTs sent in Jaeger %d, TcpOutRsts delta %d", rstEvents, rsts)
	}

	// The page as the browser parsed it.
	doc := browserDOM(t, chromium, page)
	stat := func(name string) int {
		n := findNode(doc, func(n *html.Node) bool { return attrOf(n, "data-stat") == name })
		if n == nil {
			t.Fatalf("page has no %s figure", name)
		}
		v, _ := strconv.Atoi(strings.TrimSpace(text(n)))
		return v
	}
	if got := stat("spans"); got != len(spans) {
		t.Errorf("page: %d spans, Jaeger %d", got, len(spans))
	}
	if got := stat("error-spans"); got != errorSpans {
		t.Errorf("page: %d error spans, Jaeger %d", got, errorSpans)
	}
	allConns, stormSpans := 0, 0
	for _, n := range errConns {
		allConns += n
	}
	for i := range spans {
		if spans[i].Scope == "github.com/tcpspan/tcpspan" && spans[i].Connections() > 1 {
			stormSpans++
		}
	}
	if got := stat("error-connections"); got != allConns {
		t.Errorf("page: %d connections with an error, Jaeger %d", got, allConns)
	}
	if got := stat("storms"); got != stormSpans {
		t.Errorf("page: %d storm spans, Jaeger %d", got, stormSpans)
	}
	pageConns := map[string]int{}
	for _, row := range findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "diagnosis") }) {
		c, _ := strconv.Atoi(attrOf(row, "data-count"))
		pageConns[attrOf(row, "data-error-type")] += c
	}
	if fmt.Sprint(pageConns) != fmt.Sprint(errConns) {
		t.Errorf("diagnosis table by error.type %v, Jaeger %v", pageConns, errConns)
	}
	pageStorm := 0
	for _, row := range findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "storm") }) {
		c, _ := strconv.Atoi(attrOf(row, "data-count"))
		pageStorm += c
	}
	if pageStorm != stormConns {
		t.Errorf("storm table: %d connections, Jaeger %d", pageStorm, stormConns)
	}
	pageRST := 0
	for _, row := range findAll(doc, func(n *html.Node) bool { return hasClass(n, "event-total") }) {
		if strings.HasPrefix(attrOf(row, "data-name"), "tcp.rst_sent") {
			c, _ := strconv.Atoi(attrOf(row, "data-count"))
			pageRST += c
		}
	}
	if uint64(pageRST) != after["TcpOutRsts"]-before["TcpOutRsts"] {
		t.Errorf("page: %d RSTs sent, TcpOutRsts delta %d", pageRST, after["TcpOutRsts"]-before["TcpOutRsts"])
	}

	// One timeline per kind of error, each lane a span Jaeger has, its
	// markers that span's events in time order.
	examples := findAll(doc, func(n *html.Node) bool { return n.Data == "section" && hasClass(n, "example") })
	kinds := map[string]bool{}
	sideBySide := 0
	for _, ex := range examples {
		errType := attrOf(ex, "data-error-type")
		kinds[errType] = true
		sp := byID[attrOf(ex, "data-span-id")]
		if sp == nil || attr(sp, "error.type") != errType || sp.TraceID != attrOf(ex, "data-trace-id") {
			t.Errorf("example %s: span %s is not an %s span in Jaeger", attrOf(ex, "data-kind"), attrOf(ex, "data-span-id"), errType)
			continue
		}
		lanes := findAll(ex, func(n *html.Node) bool { return n.Data == "g" && hasClass(n, "lane") })
		if len(lanes) == 0 || attrOf(lanes[0], "data-span-id") != sp.SpanID {
			t.Errorf("example %s: the first lane is not its span", attrOf(ex, "data-kind"))
			continue
		}
		for _, l := range lanes {
			lsp := byID[attrOf(l, "data-span-id")]
			if lsp == nil {
				t.Errorf("example %s: lane %q draws span %s, not in Jaeger", errType, attrOf(l, "data-role"), attrOf(l, "data-span-id"))
				continue
			}
			var drawn []string
			for _, m := range findAll(l, func(n *html.Node) bool { return n.Data == "circle" && hasClass(n, "event") }) {
				drawn = append(drawn, attrOf(m, "data-event"))
			}
			if want := eventsInTimeOrder(lsp); strings.Join(drawn, " ") != strings.Join(want, " ") {
				t.Errorf("example %s, lane %q: events drawn %v, Jaeger %v", errType, attrOf(l, "data-role"), drawn, want)
			}
			if attrOf(l, "data-role") == "the other end" {
				if lsp.TraceID != sp.TraceID || !linksAsPeer(sp, lsp) && !linksAsPeer(lsp, sp) {
					t.Errorf("example %s: the other end %s is not %s's peer in Jaeger", errType, lsp.SpanID, sp.SpanID)
				}
				sideBySide++
			}
		}
		t.Logf("example %s: %d lanes (%s), %q", attrOf(ex, "data-kind"), len(lanes), laneRoles(lanes), sp.Status.Message)
	}
	for errType := range errConns {
		if !kinds[errType] {
			t.Errorf("no example timeline of %s", errType)
		}
	}
	// A refused connect and the server's NO_SOCKET reset, a reset sent and
	// the reset received, share a trace: both ends are drawn.
	if sideBySide < 2 {
		t.Errorf("%d examples drawn with both ends, want at least 2", sideBySide)
	}

	shot := filepath.Join(dir, "tcpspan-report.png")
	browserScreenshot(t, chromium, page, shot)
	t.Logf("page %s, screenshot %s", page, shot)
	img := readPNG(t, shot)
	for _, c := range []struct {
		name    string
		r, g, b uint32
	}{{"RST sent", 0xd6, 0x28, 0x28}, {"state change", 0x2a, 0x9d, 0x8f}, {"overflow", 0x8e, 0x44, 0xad}} {
		if n := countColour(img, c.r, c.g, c.b); n < 30 {
			t.Errorf("screenshot: %d pixels of the %s colour, want the timelines' markers", n, c.name)
		}
	}
}

func buildReport(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tcpspan-report")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/tcpspan-report").CombinedOutput(); err != nil {
		t.Fatalf("build tcpspan-report: %v\n%s", err, out)
	}
	return bin
}

// writeReport runs tcpspan-report on what Jaeger holds since start, with
// -html page.
func writeReport(t *testing.T, bin string, jaeger *testutil.Jaeger, start time.Time, page string) {
	t.Helper()
	since := time.Since(start) + 5*time.Second
	out, err := exec.Command(bin, "-jaeger", jaeger.QueryURL, "-since", since.Round(time.Second).String(), "-html", page).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpspan-report: %v\n%s", err, out)
	}
}

// overflow fills an accept queue of 1 that nothing accepts: the third
// handshake is dropped; then the listener closes, resetting what it queued.
func overflow(t *testing.T, ns *testutil.NetNS) {
	t.Helper()
	fd, addr := ns.RawListener(t, 1)
	port := int(addr.Port())
	// With -syn-watch auto the agent attaches its SYN watch when a
	// listener with a small queue appears; SYNs dropped before that go
	// unseen (README, Limits). Give it the time.
	time.Sleep(200 * time.Millisecond)
	var queued []net.Conn
	dropped := false
	ns.Do(t, func() {
		for range 4 {
			d := net.Dialer{Timeout: time.Second}
			c, err := d.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				dropped = true
				break
			}
			c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
			queued = append(queued, c)
		}
	})
	if !dropped {
		t.Errorf("overflow: all %d handshakes completed on a queue of 1", len(queued))
	}
	unix.Close(fd)
	time.Sleep(100 * time.Millisecond)
	for _, c := range queued {
		c.Close()
	}
}

// jaegerSpans reads every span of every service but Jaeger's own that
// started since then.
func jaegerSpans(t *testing.T, jaeger *testutil.Jaeger, since time.Time) []jaegerapi.Span {
	t.Helper()
	client := jaegerapi.Client{BaseURL: jaeger.QueryURL, MaxTraces: 100000}
	services, err := client.Services()
	if err != nil {
		t.Fatal(err)
	}
	var spans []jaegerapi.Span
	for _, svc := range services {
		if svc == "jaeger" {
			continue
		}
		traces, err := client.Traces(svc, since, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range traces {
			spans = append(spans, tr.ServiceSpans(svc)...)
		}
	}
	return spans
}

func chromiumArgs(t *testing.T, extra ...string) []string {
	return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--no-first-run"}, extra...)
}

// browserDOM returns the page as Chromium parsed and serialised it.
func browserDOM(t *testing.T, chromium, page string) *html.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, chromium, chromiumArgs(t, "--dump-dom", "file://"+page)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stdout.Len() == 0 {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, stderr.String())
	}
	doc, err := html.Parse(&stdout)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func browserScreenshot(t *testing.T, chromium, page, png string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	os.Remove(png)
	out, err := exec.CommandContext(ctx, chromium, chromiumArgs(t, "--window-size=1200,3200",
		"--screenshot="+png, "file://"+page)...).CombinedOutput()
	if err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// countColour counts the pixels of one colour, give or take 2 per channel.
func countColour(img image.Image, r, g, b uint32) int {
	near := func(a, b uint32) bool { return a+2 >= b && b+2 >= a }
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if near(pr>>8, r) && near(pg>>8, g) && near(pb>>8, b) {
				n++
			}
		}
	}
	return n
}

func eventsInTimeOrder(sp *jaegerapi.Span) []string {
	evs := slices.Clone(sp.Events)
	// Stable: events of one instant keep their order.
	slices.SortStableFunc(evs, func(a, b jaegerapi.Event) int { return a.Time.Compare(b.Time) })
	names := make([]string, len(evs))
	for i, e := range evs {
		names[i] = e.Name
	}
	return names
}

func linksAsPeer(sp, other *jaegerapi.Span) bool {
	for _, l := range sp.Links {
		if l.SpanID == other.SpanID && l.TraceID == other.TraceID && fmt.Sprint(l.Attributes["tcpspan.link.reason"]) == "peer" {
			return true
		}
	}
	return false
}

func laneRoles(lanes []*html.Node) string {
	var roles []string
	for _, l := range lanes {
		roles = append(roles, attrOf(l, "data-role"))
	}
	return strings.Join(roles, ", ")
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	for _, c := range strings.Fields(attrOf(n, "class")) {
		if c == class {
			return true
		}
	}
	return false
}

func findAll(root *html.Node, pred func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && pred(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	return out
}

func findNode(root *html.Node, pred func(*html.Node) bool) *html.Node {
	if all := findAll(root, pred); len(all) > 0 {
		return all[0]
	}
	return nil
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}
