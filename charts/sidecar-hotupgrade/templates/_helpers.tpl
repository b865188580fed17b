{{/* Names. Cluster-scoped objects carry the release name so two releases never collide. */}}
{{- define "hotupgrade.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hotupgrade.fullname" -}}
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

{{/* "<fullname>-<suffix>", kept within the 63-character label limit. */}}
{{- define "hotupgrade.component" -}}
{{- printf "%s-%s" (include "hotupgrade.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "hotupgrade.webhookName" -}}
{{- include "hotupgrade.component" (dict "root" . "suffix" "webhook") }}
{{- end }}

{{- define "hotupgrade.controllerName" -}}
{{- include "hotupgrade.component" (dict "root" . "suffix" "controller") }}
{{- end }}

{{- define "hotupgrade.webhookServiceAccount" -}}
{{- default (include "hotupgrade.webhookName" .) .Values.webhook.serviceAccount.name }}
{{- end }}

{{- define "hotupgrade.controllerServiceAccount" -}}
{{- default (include "hotupgrade.controllerName" .) .Values.controller.serviceAccount.name }}
{{- end }}

{{- define "hotupgrade.tlsSecretName" -}}
{{- default (include "hotupgrade.component" (dict "root" . "suffix" "tls")) .Values.certificates.secretName }}
{{- end }}

{{- define "hotupgrade.leaseName" -}}
{{- include "hotupgrade.component" (dict "root" . "suffix" "controller-leader") }}
{{- end }}

{{- define "hotupgrade.configMapName" -}}
{{- include "hotupgrade.component" (dict "root" . "suffix" "config") }}
{{- end }}

{{/* The Service's DNS name: what the serving certificate must name and the API server dials. */}}
{{- define "hotupgrade.serviceHost" -}}
{{- printf "%s.%s.svc" (include "hotupgrade.webhookName" .) .Release.Namespace }}
{{- end }}

{{- define "hotupgrade.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "hotupgrade.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "hotupgrade.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sidecar-hotupgrade
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component ("webhook" or "controller"): stable across upgrades. */}}
{{- define "hotupgrade.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hotupgrade.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The namespaces no webhook entry ever matches: the system ones and the chart's own. */}}
{{- define "hotupgrade.excludedNamespaces" -}}
{{- $all := concat (list .Release.Namespace) .Values.admission.excludedNamespaces }}
{{- toJson (uniq $all) }}
{{- end }}

{{/* Pod-level hardening shared by both Deployments. */}}
{{- define "hotupgrade.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "hotupgrade.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Anti-affinity that spreads one component's replicas across nodes. */}}
{{- define "hotupgrade.affinity" -}}
{{- $root := .root }}
{{- if .affinity }}
{{- toYaml .affinity }}
{{- else if eq $root.Values.podAntiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "hotupgrade.selectorLabels" (dict "root" $root "component" .component) | nindent 10 }}
{{- else if eq $root.Values.podAntiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "hotupgrade.selectorLabels" (dict "root" $root "component" .component) | nindent 12 }}
{{- end }}
{{- end }}

{{- define "hotupgrade.certificateName" -}}
{{- include "hotupgrade.component" (dict "root" . "suffix" "serving-cert") }}
{{- end }}

{{/* Where the API server sends AdmissionReviews: the webhook Service, at `path`. */}}
{{- define "hotupgrade.clientConfig" -}}
service:
  name: {{ include "hotupgrade.webhookName" .root }}
  namespace: {{ .root.Release.Namespace }}
  port: {{ .root.Values.webhook.servicePort }}
  path: {{ .path }}
{{- end }}

{{/* Environment every Python process of the chart gets: no bytecode writes on a read-only root. */}}
{{- define "hotupgrade.pythonEnv" -}}
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: PYTHONUNBUFFERED
  value: "1"
- name: TMPDIR
  value: /tmp
{{- end }}

{{/* Mounts of the certs containers (self-signed mode). */}}
{{- define "hotupgrade.certsMounts" -}}
- name: config
  mountPath: /etc/hotupgrade
  readOnly: true
- name: tls
  mountPath: {{ .tlsDir }}
- name: api-token
  mountPath: {{ .tokenDir }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* The certificates section of the webhook's config (format: webhook/config.py Certificates). */}}
{{- define "hotupgrade.certificatesConfig" -}}
mode: {{ ternary "files" "self-signed" .Values.certManager.enabled }}
secretName: {{ include "hotupgrade.tlsSecretName" . }}
secretNamespace: {{ .Release.Namespace }}
serviceName: {{ include "hotupgrade.webhookName" . }}
serviceNamespace: {{ .Release.Namespace }}
mutatingWebhookConfiguration: {{ include "hotupgrade.fullname" . }}
validatingWebhookConfiguration: {{ include "hotupgrade.fullname" . }}
validityDays: {{ .Values.certificates.validityDays }}
caValidityDays: {{ .Values.certificates.caValidityDays }}
renewBeforeDays: {{ .Values.certificates.renewBeforeDays }}
checkIntervalSeconds: {{ .Values.certificates.checkIntervalSeconds }}
{{- end }}
