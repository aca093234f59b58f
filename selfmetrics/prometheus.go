package selfmetrics

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/internal/version"
)

// ScopeName is the instrumentation scope of the agent's own metrics.
const ScopeName = "github.com/tcpspan/tcpspan/selfmetrics"

// prometheusPage serves the [Definitions] in the Prometheus exposition
// format, named by OpenTelemetry's Prometheus mapping: dots become
// underscores, a unit that is not an annotation ({record}) becomes a
// suffix, and counters end in _total. The same instruments as the OTLP
// export are read by the OpenTelemetry Prometheus exporter, from its own
// registry (no Go runtime or process collectors: the page is the agent's
// health only), at every scrape.
type prometheusPage struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

// newPrometheusPage registers the instruments on a meter provider whose
// only reader is the Prometheus exporter. res becomes the target_info
// series; nil leaves the SDK's default resource.
func newPrometheusPage(res *resource.Resource, current func() agent.Health) (*prometheusPage, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(exp)}
	if res != nil {
		opts = append(opts, sdkmetric.WithResource(res))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	if err := register(mp.Meter(ScopeName, metric.WithInstrumentationVersion(version.Version())), current); err != nil {
		mp.Shutdown(context.Background())
		return nil, err
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
	return &prometheusPage{provider: mp, handler: h}, nil
}

// PrometheusName is the name a metric of [Definitions] has on /metrics.
func PrometheusName(d Definition) (string, error) {
	namer := otlptranslator.NewMetricNamer("", otlptranslator.UnderscoreEscapingWithSuffixes)
	var mtype otlptranslator.MetricType = otlptranslator.MetricTypeGauge
	if d.Kind == Counter {
		mtype = otlptranslator.MetricTypeMonotonicCounter
	}
	return namer.Build(otlptranslator.Metric{Name: d.Name, Unit: d.Unit, Type: mtype})
}
