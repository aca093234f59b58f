{{/* Labels of the agent's objects, and its pods' selector. */}}
{{- define "tcpspan.labels" -}}
app.kubernetes.io/name: tcpspan
app.kubernetes.io/component: agent
{{- end }}
