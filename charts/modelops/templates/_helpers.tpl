{{/*
Names. Kubernetes object names that end up in DNS (Services, and the labels derived from them) are
limited to 63 characters (RFC 1123 labels), and label values are limited to 63 characters as well. The
full name is therefore truncated to 63 characters and a trailing "-" left by the cut is trimmed. Names
built from it with a suffix ("-operator", "-drift-exporter", "-mlflow") truncate the base first so that the
suffix survives: a name is never cut in the middle of its role.
*/}}

{{- define "modelops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or just "<release>" when the release name already contains the chart name. */}}
{{- define "modelops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's name: the full name cut so that "-<component>" still fits in 63 characters. */}}
{{- define "modelops.componentName" -}}
{{- $root := index . 0 }}{{- $component := index . 1 }}
{{- $max := sub 62 (len $component) | int }}
{{- printf "%s-%s" (include "modelops.fullname" $root | trunc $max | trimSuffix "-") $component }}
{{- end }}

{{- define "modelops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries (the recommended app.kubernetes.io set plus commonLabels). */}}
{{- define "modelops.labels" -}}
helm.sh/chart: {{ include "modelops.chart" . }}
app.kubernetes.io/name: {{ include "modelops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelops
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; they never change across upgrades (selectors are immutable). */}}
{{- define "modelops.selectorLabels" -}}
{{- $root := index . 0 }}{{- $component := index . 1 -}}
app.kubernetes.io/name: {{ include "modelops.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ $component }}
{{- end }}

{{- define "modelops.componentLabels" -}}
{{- $root := index . 0 }}{{- $component := index . 1 -}}
{{ include "modelops.labels" $root }}
app.kubernetes.io/component: {{ $component }}
{{- end }}

{{/* "registry/repository@digest" or "registry/repository:tag"; the tag defaults to the appVersion. */}}
{{- define "modelops.image" -}}
{{- $root := index . 0 }}{{- $image := index . 1 -}}
{{- $repo := $image.repository }}
{{- if $root.Values.imageRegistry }}{{ $repo = printf "%s/%s" (trimSuffix "/" $root.Values.imageRegistry) $repo }}{{ end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repo $image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "modelops.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "modelops.componentName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The MLflow URI the operator gets: explicit, else the bundled server, else empty (operator default). */}}
{{- define "modelops.mlflowUri" -}}
{{- if .Values.mlflow.trackingUri }}
{{- .Values.mlflow.trackingUri }}
{{- else if .Values.mlflow.bundled.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "modelops.componentName" (list . "mlflow")) .Release.Namespace (int .Values.mlflow.bundled.port) }}
{{- end }}
{{- end }}

{{/* Whether to render Prometheus Operator objects: "always", or "auto" and the API is served. */}}
{{- define "modelops.prometheusOperator" -}}
{{- $mode := .Values.monitoring.prometheusOperator }}
{{- if or (eq $mode "always") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) }}true{{ end }}
{{- end }}

{{/* The restricted Pod Security Standard, shared by every Pod of the chart. */}}
{{- define "modelops.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "modelops.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* resources with empty values dropped, so `cpu: ""` means "no limit" rather than an invalid quantity. */}}
{{- define "modelops.resources" -}}
{{- range $kind := list "requests" "limits" }}
{{- $set := dict }}
{{- range $k, $v := (index $ $kind) }}{{ if $v }}{{ $_ := set $set $k $v }}{{ end }}{{ end }}
{{- if $set }}
{{ $kind }}:
{{- toYaml $set | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Host headers the bundled MLflow accepts (MLFLOW_SERVER_ALLOWED_HOSTS): its Service's names with and without a
port, localhost, the private IP ranges MLflow allows by default (probes, the API server's service proxy), and
mlflow.bundled.allowedHosts. Argument: (list . $name).
*/}}
{{- define "modelops.mlflowAllowedHosts" -}}
{{- $root := index . 0 }}{{- $name := index . 1 }}{{- $ns := $root.Release.Namespace }}
{{- $hosts := list "localhost" "127.0.0.1" }}
{{- range (list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns)) }}
{{- $hosts = append $hosts . }}
{{- end }}
{{- $withPorts := list }}
{{- range $hosts }}{{- $withPorts = append $withPorts . }}{{- $withPorts = append $withPorts (printf "%s:*" .) }}{{- end }}
{{- $private := list "10.*" "192.168.*" }}
{{- range $i := until 16 }}{{- $private = append $private (printf "172.%d.*" (add 16 $i)) }}{{- end }}
{{- join "," (concat $withPorts $private $root.Values.mlflow.bundled.allowedHosts) }}
{{- end }}

{{/*
The Secret holding the drift exporter's token: driftExporter.auth.existingSecret, or the chart's own.
*/}}
{{- define "modelops.driftTokenSecret" -}}
{{- .Values.driftExporter.auth.existingSecret | default (include "modelops.componentName" (list . "drift-exporter-token")) -}}
{{- end }}
