{{/*
Names and labels shared by every template. Resource names are "<fullname>-<component>" so that
two releases in one namespace never collide.
*/}}

{{- define "ftscale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or just the release name when it already contains the chart name. */}}
{{- define "ftscale.fullname" -}}
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

{{- define "ftscale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "ftscale.labels" -}}
helm.sh/chart: {{ include "ftscale.chart" . }}
app.kubernetes.io/name: {{ include "ftscale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ftscale
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of the operator pod (immutable in a Deployment: never add to these). */}}
{{- define "ftscale.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ftscale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
"<fullname>-<suffix>" as an object name of at most 63 characters. Longer names are cut and end
in a hash of the whole name, so two suffixes never collapse into one name.
Call with (list $ "suffix").
*/}}
{{- define "ftscale.componentName" -}}
{{- $name := printf "%s-%s" (include "ftscale.fullname" (index . 0)) (index . 1) -}}
{{- if le (len $name) 63 -}}
{{- $name -}}
{{- else -}}
{{- printf "%s-%s" (trunc 54 $name | trimSuffix "-") (sha256sum $name | trunc 8) -}}
{{- end -}}
{{- end -}}

{{- define "ftscale.operator.fullname" -}}
{{- include "ftscale.componentName" (list . "operator") -}}
{{- end -}}

{{- define "ftscale.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "ftscale.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ftscale.trainer.serviceAccountName" -}}
{{- default (include "ftscale.componentName" (list . "trainer")) .Values.trainer.serviceAccount.name -}}
{{- end -}}

{{/*
An image reference from {registry, repository, tag, digest}: a digest wins over a tag, and an
empty tag means the chart's appVersion. Call with (dict "image" .Values.x.image "root" $).
*/}}
{{- define "ftscale.image" -}}
{{- $img := .image -}}
{{- $repo := $img.repository -}}
{{- if $img.registry -}}
{{- $repo = printf "%s/%s" $img.registry $img.repository -}}
{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The namespaces run pods live in: the watched namespaces in namespaced mode, else the release
namespace (in cluster-wide mode the chart cannot know every namespace a study may be created in).
Rendered as a JSON list; read it with `include ... | fromJsonArray`.
*/}}
{{- define "ftscale.studyNamespaces" -}}
{{- if .Values.operator.watchNamespaces -}}
{{- .Values.operator.watchNamespaces | uniq | toJson -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}

{{/*
Labels the operator puts on every run and fit pod (ftscale.controller.names; a test keeps them
equal). Run pods alone also carry ftscale.io/component: run.
*/}}
{{- define "ftscale.trainer.podSelectorLabels" -}}
app.kubernetes.io/managed-by: ftscale-operator
{{- end -}}

{{- define "ftscale.run.podSelectorLabels" -}}
app.kubernetes.io/managed-by: ftscale-operator
ftscale.io/component: run
{{- end -}}

{{- define "ftscale.tests.selectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end -}}

{{/*
The operator's settings (ftscale.controller.settings.OperatorSettings reads FTSCALE_<FIELD>).
*/}}
{{- define "ftscale.operator.env" -}}
- name: FTSCALE_TRAINER_IMAGE
  value: {{ include "ftscale.image" (dict "image" .Values.trainer.image "root" .) | quote }}
- name: FTSCALE_TRAINER_METRICS_PORT
  value: {{ .Values.trainer.metricsPort | quote }}
- name: FTSCALE_NAMESPACES
  value: {{ join "," (.Values.operator.watchNamespaces | uniq) | quote }}
- name: FTSCALE_METRICS_PORT
  value: {{ .Values.operator.metricsPort | quote }}
- name: FTSCALE_HEALTH_PORT
  value: {{ .Values.operator.healthPort | quote }}
{{- with .Values.policy.allowedImages }}
- name: FTSCALE_ALLOWED_IMAGES
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.policy.allowedServiceAccounts }}
- name: FTSCALE_ALLOWED_SERVICE_ACCOUNTS
  value: {{ join "," . | quote }}
{{- end }}
- name: FTSCALE_METRICS_BIND_ADDRESS
  value: {{ .Values.operator.metricsBindAddress | quote }}
- name: FTSCALE_HEALTH_BIND_ADDRESS
  value: {{ .Values.operator.healthBindAddress | quote }}
- name: FTSCALE_LEADER_ELECTION
  value: "true"
- name: FTSCALE_LEASE_NAME
  value: {{ include "ftscale.operator.fullname" . | quote }}
- name: FTSCALE_LEASE_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: FTSCALE_LEASE_DURATION_SECONDS
  value: {{ .Values.operator.leaseDurationSeconds | quote }}
# The Lease holder's identity: the pod name, unique among replicas.
- name: FTSCALE_IDENTITY
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: FTSCALE_LOG_LEVEL
  value: {{ .Values.operator.logLevel | quote }}
- name: FTSCALE_LOG_FORMAT
  value: {{ .Values.operator.logFormat | quote }}
{{- end -}}
