package semconv

import semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

// SchemaURL is the schema URL of the upstream semantic conventions that
// tcpspan pins (v1.43.0). Spans that tcpspan exports declare it.
const SchemaURL = semconv.SchemaURL
