{{/* Names and labels shared by every template. */}}

{{- define "kubedr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release name alone when it already contains the chart name (helm install kubedr ...). */}}
{{- define "kubedr.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubedr.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "kubedr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubedr.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubedr.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{- define "kubedr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubedr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubedr.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubedr.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubedr
{{- end -}}

{{/* Leader election is forced on with more than one replica: two acting controllers would run every backup twice. */}}
{{- define "kubedr.leaderElect" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.leaderElection.enabled -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{/*
Whether a prometheus-operator object is rendered: "auto" renders it only when the cluster serves monitoring.coreos.com/v1
(helm install and upgrade pass the served API versions; `helm template` needs --api-versions), so an install on a
cluster without prometheus-operator does not fail on an unknown kind. true forces it (e.g. the CRDs are installed in
the same change), false never. Called with (dict "value" .Values.monitoring.<x>.enabled "root" $).
*/}}
{{- define "kubedr.monitoringWanted" -}}
{{- $v := toString .value -}}
{{- if eq $v "auto" -}}
{{- if .root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- else if eq $v "true" -}}true
{{- else if ne $v "false" -}}
{{- fail (printf "monitoring.*.enabled must be auto, true or false, not %q" $v) -}}
{{- end -}}
{{- end -}}

{{- define "kubedr.serviceMonitorEnabled" -}}
{{- if .Values.metrics.service.enabled -}}
{{- include "kubedr.monitoringWanted" (dict "value" .Values.monitoring.serviceMonitor.enabled "root" .) -}}
{{- end -}}
{{- end -}}

{{- define "kubedr.prometheusRuleEnabled" -}}
{{- include "kubedr.monitoringWanted" (dict "value" .Values.monitoring.prometheusRule.enabled "root" .) -}}
{{- end -}}

{{/*
The controller's --shutdown-timeout in whole seconds. The pod's terminationGracePeriodSeconds is this plus a margin for
releasing the Lease and exiting, so the kubelet never kills a controller that is still finishing a backup cleanly.
*/}}
{{- define "kubedr.shutdownTimeoutSeconds" -}}
{{- $t := int .Values.shutdownTimeoutSeconds -}}
{{- if lt $t 1 -}}
{{- fail (printf "shutdownTimeoutSeconds must be a whole number of seconds above 0, not %v" .Values.shutdownTimeoutSeconds) -}}
{{- end -}}
{{- $t -}}
{{- end -}}

{{/*
A per-policy or per-location gauge as the alert rules read it: `agg by (by)` of its current samples, or, for a
(namespace, policy or location) that has none right now, of its last samples within scrapeGapTolerance. When the pod is
replaced (host network, so no surge) or a scrape fails, Prometheus marks the old series stale at once and the new pod's
series come only once it is up: without the fallback every alert would resolve for that gap and a `for:` start again
after it. Current samples, where there are any, decide alone, so a dead pod's last value never outvotes the new pod's.
Called with (dict "agg" "max" "metric" NAME "by" "namespace, policyName" "ns" NS "gap" DURATION ["offset" DURATION]).
*/}}
{{- define "kubedr.heldGauge" -}}
{{- $sel := printf "%s{namespace=%q}" .metric .ns -}}
{{- $off := "" -}}
{{- if .offset }}{{ $off = printf " offset %s" .offset }}{{ end -}}
({{ .agg }} by ({{ .by }}) ({{ $sel }}{{ $off }}) or {{ .agg }} by ({{ .by }}) (last_over_time({{ $sel }}[{{ .gap }}]{{ $off }})))
{{- end -}}
