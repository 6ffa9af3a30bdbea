{{/* The chart's name, shortened to fit a label value. */}}
{{- define "las.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: fullnameOverride, else the release name when it
already says the chart's name, else both.
*/}}
{{- define "las.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "las.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the pods; never change them in an upgrade. */}}
{{- define "las.selectorLabels" -}}
app.kubernetes.io/name: {{ include "las.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "las.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "las.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The service account the pods run as. */}}
{{- define "las.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "las.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Whether helm sees the cluster: "true" on install and upgrade (and helm
template --dry-run=server), empty for helm template and helm lint, where every
lookup finds nothing. The release namespace is something the installing user
may read even when confined to it.
*/}}
{{- define "las.online" -}}
{{- if lookup "v1" "Namespace" "" .Release.Namespace }}true{{ end }}
{{- end }}

{{/*
The Secret with the LINSTOR client certificate: linstor.clientSecret, else
the first of Piraeus Operator's secret names that exists in the release
namespace (the name the LinstorCluster gives the CSI controller's secret
first). Empty means no TLS. Nothing is looked up when linstor.endpoint is
plain http.
*/}}
{{- define "las.clientSecret" -}}
{{- if .Values.linstor.clientSecret }}
{{- .Values.linstor.clientSecret }}
{{- else if not (hasPrefix "http://" .Values.linstor.endpoint) }}
{{- $candidates := list }}
{{- if .Capabilities.APIVersions.Has "piraeus.io/v1/LinstorCluster" }}
{{- range (lookup "piraeus.io/v1" "LinstorCluster" "" "").items }}
{{- with (dig "spec" "apiTLS" "csiControllerSecretName" "" .) }}
{{- $candidates = append $candidates . }}
{{- end }}
{{- end }}
{{- end }}
{{- $candidates = concat $candidates (list "linstor-csi-controller-tls" "linstor-client-tls") }}
{{- $found := "" }}
{{- range $candidates }}
{{- if and (not $found) (lookup "v1" "Secret" $.Release.Namespace .) }}
{{- $found = . }}
{{- end }}
{{- end }}
{{- $found }}
{{- end }}
{{- end }}

{{/*
The LINSTOR API URL: linstor.endpoint, else the Service linstor-controller of
the release namespace. When helm cannot see the cluster (helm template) the
Service is assumed to be there; on a real install its absence is an error,
rather than a pod that can never connect.
*/}}
{{- define "las.endpoint" -}}
{{- if .Values.linstor.endpoint }}
{{- .Values.linstor.endpoint }}
{{- else }}
{{- $host := printf "linstor-controller.%s.svc" .Release.Namespace }}
{{- if and (include "las.online" .) (not (lookup "v1" "Service" .Release.Namespace "linstor-controller")) }}
{{- fail (printf "linstor.endpoint is empty and there is no Service linstor-controller in namespace %s to take it from: set linstor.endpoint (and linstor.clientSecret for TLS)" .Release.Namespace) }}
{{- end }}
{{- if include "las.clientSecret" . }}
{{- printf "https://%s:3371" $host }}
{{- else }}
{{- printf "http://%s:3370" $host }}
{{- end }}
{{- end }}
{{- end }}

{{/* The image with its tag, the chart's appVersion unless image.tag is set. */}}
{{- define "las.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
