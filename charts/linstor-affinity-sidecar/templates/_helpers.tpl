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
The Service in front of the LINSTOR controller, as "name.namespace", searched
like the upstream chart does: Services labelled
app.kubernetes.io/component=linstor-controller in every namespace (Piraeus
Operator's label), only those of the LinstorCluster's instance when there is
exactly one LinstorCluster, and the Service linstor-controller of the release
namespace. One in the release namespace wins; several elsewhere are an error
rather than a guess. Empty when helm cannot see the cluster.
*/}}
{{- define "las.linstorService" -}}
{{- $instance := "" }}
{{- if .Capabilities.APIVersions.Has "piraeus.io/v1/LinstorCluster" }}
{{- $clusters := (lookup "piraeus.io/v1" "LinstorCluster" "" "").items }}
{{- if eq (len $clusters) 1 }}
{{- $instance = (index $clusters 0).metadata.name }}
{{- end }}
{{- end }}
{{- $local := "" }}
{{- $found := list }}
{{- range (lookup "v1" "Service" "" "").items }}
{{- $labels := dig "metadata" "labels" dict . }}
{{- $labelled := and (eq (get $labels "app.kubernetes.io/component") "linstor-controller") (or (not $instance) (eq (get $labels "app.kubernetes.io/instance") $instance)) }}
{{- $named := and (eq .metadata.namespace $.Release.Namespace) (eq .metadata.name "linstor-controller") }}
{{- if or $labelled $named }}
{{- $found = append $found (printf "%s.%s" .metadata.name .metadata.namespace) }}
{{- if eq .metadata.namespace $.Release.Namespace }}
{{- $local = printf "%s.%s" .metadata.name .metadata.namespace }}
{{- end }}
{{- end }}
{{- end }}
{{- if $local }}
{{- $local }}
{{- else if eq (len $found) 1 }}
{{- first $found }}
{{- else if gt (len $found) 1 }}
{{- fail (printf "linstor.endpoint is empty and several LINSTOR controller Services were found (%s): set linstor.endpoint" (join ", " $found)) }}
{{- end }}
{{- end }}

{{/*
The LINSTOR API URL: linstor.endpoint (or linstor.Endpoint), else the Service
found by las.linstorService. When helm cannot see the cluster (helm template)
the Service linstor-controller of the release namespace is assumed; on a real
install finding none is an error, rather than a pod that can never connect.
A Service in another namespace whose namespace holds a client certificate
Secret while the release namespace holds none is an error too: the pod can
only mount Secrets of its own namespace.
*/}}
{{- define "las.endpoint" -}}
{{- $explicit := default .Values.linstor.Endpoint .Values.linstor.endpoint }}
{{- if $explicit }}
{{- $explicit }}
{{- else }}
{{- $service := include "las.linstorService" . }}
{{- if not $service }}
{{- if include "las.online" . }}
{{- fail (printf "linstor.endpoint is empty and there is no Service linstor-controller in namespace %s, nor one labelled app.kubernetes.io/component=linstor-controller in any namespace, to take it from: set linstor.endpoint (and linstor.clientSecret for TLS)" .Release.Namespace) }}
{{- end }}
{{- $service = printf "linstor-controller.%s" .Release.Namespace }}
{{- end }}
{{- $secret := include "las.clientSecret" . }}
{{- $serviceNS := last (splitList "." $service) }}
{{- if and (not $secret) (ne $serviceNS .Release.Namespace) }}
{{- range (list "linstor-csi-controller-tls" "linstor-client-tls") }}
{{- if lookup "v1" "Secret" $serviceNS . }}
{{- fail (printf "LINSTOR (Service %s) uses API TLS, but its client certificate Secret %s is in namespace %s, which this release's pods cannot mount: copy it into namespace %s and set linstor.clientSecret, or install the release in namespace %s" $service . $serviceNS $.Release.Namespace $serviceNS) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $secret }}
{{- printf "https://%s.svc:3371" $service }}
{{- else }}
{{- printf "http://%s.svc:3370" $service }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The image with its tag, the chart's appVersion unless image.tag is set. The
upstream controller's image (the upstream chart's default repository) is
another program: with it, repository and tag are those of this chart.
*/}}
{{- define "las.image" -}}
{{- $repository := .Values.image.repository }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if or (eq $repository "linstor-affinity-controller") (hasSuffix "/linstor-affinity-controller" $repository) }}
{{- $repository = "quay.io/piraeusdatastore/linstor-affinity-sidecar" }}
{{- $tag = .Chart.AppVersion }}
{{- end }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
