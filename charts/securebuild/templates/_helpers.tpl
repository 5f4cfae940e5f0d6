{{/*
Names, labels and image references shared by every template.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "securebuild.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, or the release name when it already
contains the chart name, or "<release>-<chart>"; at most 63 characters.
*/}}
{{- define "securebuild.fullname" -}}
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

{{/* "name-version" of the chart, for the helm.sh/chart label. */}}
{{- define "securebuild.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator Pods; never change them in an upgrade. */}}
{{- define "securebuild.selectorLabels" -}}
app.kubernetes.io/name: {{ include "securebuild.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of every resource. */}}
{{- define "securebuild.labels" -}}
helm.sh/chart: {{ include "securebuild.chart" . }}
{{ include "securebuild.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: securebuild
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "securebuild.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "securebuild.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: "repository:tag", "repository@digest", or
"repository:tag@digest" when both are set. The tag defaults to the chart's appVersion.
Call with (dict "image" .Values.image "context" $).
*/}}
{{- define "securebuild.imageReference" -}}
{{- $tag := .image.tag | default .context.Chart.AppVersion | toString }}
{{- if .image.digest }}
{{- if .image.tag }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- end }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* The operator image. */}}
{{- define "securebuild.operatorImage" -}}
{{- include "securebuild.imageReference" (dict "image" .Values.image "context" .) }}
{{- end }}

{{/* The builder image, written into the operator's configuration. */}}
{{- define "securebuild.builderImage" -}}
{{- include "securebuild.imageReference" (dict "image" .Values.builder.image "context" .) }}
{{- end }}

{{/* Whether the replicas elect a leader: more than one replica. */}}
{{- define "securebuild.leaderElection" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/* The leader election Lease (operator/src/leader.rs, LEASE_NAME). */}}
{{- define "securebuild.leaseName" -}}securebuild-operator{{- end }}

{{/* Where the configuration file is mounted, and its name in the ConfigMap. */}}
{{- define "securebuild.configDir" -}}/etc/securebuild{{- end }}
{{- define "securebuild.configFile" -}}config.yaml{{- end }}

{{/*
The operator's configuration file (operator/src/config.rs): camelCase keys, unknown keys
rejected, so only keys the operator knows are written.
*/}}
{{- define "securebuild.config" -}}
{{- $config := dict
  "namespace" .Release.Namespace
  "builderImage" (include "securebuild.builderImage" .)
  "backend" .Values.backend
  "maxConcurrentBuilds" .Values.maxConcurrentBuilds
  "reconcileConcurrency" .Values.reconcileConcurrency
  "watchNamespaces" (.Values.watchNamespaces | default list)
  "defaultRepositories" (.Values.defaultRepositories | default list)
  "defaultKeyring" (.Values.defaultKeyring | default list)
  "workSizeLimit" .Values.builder.workSizeLimit
  "defaultTimeout" .Values.builder.defaultTimeout
  "defaultResources" .Values.builder.resources
  "deploymentName" (include "securebuild.fullname" .)
  "cacheDir" "/var/cache/securebuild"
}}
{{- with .Values.registryPrefix }}
{{- $_ := set $config "registryPrefix" . }}
{{- end }}
{{- with .Values.pullPrefix }}
{{- $_ := set $config "pullPrefix" . }}
{{- end }}
{{- with .Values.builder.serviceAccountName }}
{{- $_ := set $config "builderServiceAccount" . }}
{{- end }}
{{- with .Values.signingKey.secretName }}
{{- $_ := set $config "signingKeySecret" . }}
{{- end }}
{{- if not (kindIs "invalid" .Values.jobTtlSecondsAfterFinished) }}
{{- $_ := set $config "jobTtlSecondsAfterFinished" (int64 .Values.jobTtlSecondsAfterFinished) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The proxy's resource name. */}}
{{- define "securebuild.proxy.fullname" -}}
{{- printf "%s-proxy" (include "securebuild.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the proxy Pods; never change them in an upgrade. */}}
{{- define "securebuild.proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "securebuild.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end }}

{{/* Labels of the proxy's resources. */}}
{{- define "securebuild.proxy.labels" -}}
helm.sh/chart: {{ include "securebuild.chart" . }}
{{ include "securebuild.proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: securebuild
{{- end }}

{{/* The proxy image. */}}
{{- define "securebuild.proxy.image" -}}
{{- include "securebuild.imageReference" (dict "image" .Values.proxy.image "context" .) }}
{{- end }}

{{/* Where the proxy reads its configuration, credentials and certificate. */}}
{{- define "securebuild.proxy.configDir" -}}/etc/securebuild-proxy{{- end }}

{{/* The proxy's configuration file (docs/proxy.md). */}}
{{- define "securebuild.proxy.config" -}}
listen: {{ printf "0.0.0.0:%d" (int .Values.proxy.port) | quote }}
routes:
{{- range .Values.proxy.routes }}
  - vanity: {{ .vanity | quote }}
    upstream: {{ .upstream | quote }}
    access: {{ .access | default "public" | quote }}
{{- end }}
{{- if .Values.proxy.registryConfigSecret }}
registryConfig: {{ include "securebuild.proxy.configDir" . }}/registry/config.json
{{- end }}
insecureUpstreams: {{ .Values.proxy.insecureUpstreams | toJson }}
{{- if .Values.proxy.tlsSecret }}
tls:
  certificate: {{ include "securebuild.proxy.configDir" . }}/tls/tls.crt
  key: {{ include "securebuild.proxy.configDir" . }}/tls/tls.key
{{- end }}
cache:
  manifestBytes: {{ int64 .Values.proxy.cache.manifestBytes }}
  tagTtlSeconds: {{ int .Values.proxy.cache.tagTtlSeconds }}
upstreamConcurrency: {{ int .Values.proxy.upstreamConcurrency }}
redirectBlobs: {{ .Values.proxy.redirectBlobs }}
{{- end }}
