{{/* Names ---------------------------------------------------------------------------- */}}

{{- define "paykube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "paykube.fullname" -}}
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

{{/* <fullname>-<component>, within the 63 characters of a label value. */}}
{{- define "paykube.componentName" -}}
{{- printf "%s-%s" (include "paykube.fullname" .root | trunc 54 | trimSuffix "-") .component }}
{{- end }}

{{- define "paykube.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: call with (dict "root" $ "component" "operator"). */}}
{{- define "paykube.labels" -}}
helm.sh/chart: {{ include "paykube.chart" .root }}
{{ include "paykube.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: paykube
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "paykube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "paykube.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "paykube.serviceAccountName" -}}
{{- $sa := index .root.Values .component "serviceAccount" }}
{{- if $sa.create }}
{{- default (include "paykube.componentName" .) $sa.name }}
{{- else }}
{{- required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false" .component .component) $sa.name }}
{{- end }}
{{- end }}

{{- define "paykube.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Settings ------------------------------------------------------------------------- */}}

{{/* PAYKUBE_STRIPE_CREDENTIALS_SECRET as "namespace/name" ("" when not set). */}}
{{- define "paykube.credentialsSecret" -}}
{{- $s := .Values.operator.credentialsSecret }}
{{- if $s }}
{{- if contains "/" $s }}{{ $s }}{{ else }}{{ printf "%s/%s" .Release.Namespace $s }}{{ end }}
{{- end }}
{{- end }}

{{/* One env var from a key of secrets.existingSecret, if that key is configured. */}}
{{- define "paykube.secretEnv" -}}
{{- $key := index .root.Values.secrets.keys .key }}
{{- if $key }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secrets.existingSecret is required when secrets.keys.%s is set" .key) .root.Values.secrets.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- end }}

{{/* Settings both programs read: secrets source, AWS (but the database secret), broker,
logging. */}}
{{- define "paykube.commonEnv" -}}
- name: PAYKUBE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: PAYKUBE_SECRETS_SOURCE
  value: {{ .Values.secrets.source | quote }}
- name: PAYKUBE_SECRETS_TTL
  value: {{ .Values.secrets.ttl | toString | quote }}
{{- if eq .Values.secrets.source "aws" }}
{{- with .Values.secrets.aws }}
{{- if not (or .stripeSecretId .webhookSecretId .databaseSecretId) }}
{{- fail "secrets.source=aws needs secrets.aws.stripeSecretId, webhookSecretId and/or databaseSecretId" }}
{{- end }}
{{- if .region }}
- name: PAYKUBE_AWS_REGION
  value: {{ .region | quote }}
{{- end }}
{{- if .endpointUrl }}
- name: PAYKUBE_AWS_ENDPOINT_URL
  value: {{ .endpointUrl | quote }}
{{- end }}
{{- end }}
{{- end }}
- name: PAYKUBE_CLUSTER_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: PAYKUBE_ROUTE_TABLE_SECRET
  value: {{ include "paykube.routeTableSecret" . | quote }}
{{- with .Values.broker }}
{{- if .urls }}
- name: PAYKUBE_BROKER_URLS
  value: {{ join "," .urls | quote }}
- name: PAYKUBE_BROKER_DESTINATION
  value: {{ .destination | quote }}
- name: PAYKUBE_BROKER_TLS
  value: {{ .tls | toString | quote }}
- name: PAYKUBE_EVENTS_INCLUDE_URL
  value: {{ .includeUrl | toString | quote }}
{{- if .username }}
- name: PAYKUBE_BROKER_USERNAME
  value: {{ .username | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- include "paykube.secretEnv" (dict "root" . "key" "brokerPassword" "name" "PAYKUBE_BROKER_PASSWORD") }}
{{- end }}

{{- define "paykube.operatorEnv" -}}
{{- $o := .Values.operator }}
{{- include "paykube.commonEnv" . }}
{{- if $o.namespaces }}
- name: PAYKUBE_NAMESPACES
  value: {{ join "," $o.namespaces | quote }}
{{- end }}
- name: PAYKUBE_STRIPE_API_BASE
  value: {{ $o.stripeApiBase | quote }}
{{- with .Values.secrets.aws.stripeSecretId }}
{{- if eq $.Values.secrets.source "aws" }}
# The API key's document: the operator's only (the webhook has its own secret id).
- name: PAYKUBE_AWS_STRIPE_SECRET_ID
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- with .Values.webhook.publicUrl }}
- name: PAYKUBE_WEBHOOK_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- with include "paykube.credentialsSecret" . }}
- name: PAYKUBE_STRIPE_CREDENTIALS_SECRET
  value: {{ . | quote }}
{{- end }}
- name: PAYKUBE_STRIPE_RATE_LIMIT
  value: {{ $o.rateLimit | toString | quote }}
- name: PAYKUBE_STRIPE_TIMEOUT
  value: {{ $o.stripeTimeout | toString | quote }}
- name: PAYKUBE_RAZORPAY_API_BASE
  value: {{ $o.razorpayApiBase | quote }}
- name: PAYKUBE_RAZORPAY_RATE_LIMIT
  value: {{ $o.razorpayRateLimit | toString | quote }}
- name: PAYKUBE_RAZORPAY_TIMEOUT
  value: {{ $o.razorpayTimeout | toString | quote }}
{{- if gt (float64 $o.pollMinInterval) (float64 $o.pollMaxInterval) }}
{{- fail (printf "operator.pollMinInterval (%v) must not exceed operator.pollMaxInterval (%v)" $o.pollMinInterval $o.pollMaxInterval) }}
{{- end }}
- name: PAYKUBE_POLL_MIN_INTERVAL
  value: {{ $o.pollMinInterval | toString | quote }}
- name: PAYKUBE_POLL_MAX_INTERVAL
  value: {{ $o.pollMaxInterval | toString | quote }}
- name: PAYKUBE_RECONCILE_CONCURRENCY
  value: {{ $o.reconcileConcurrency | int64 | quote }}
- name: PAYKUBE_OUTBOX_INTERVAL
  value: {{ $o.outboxInterval | toString | quote }}
- name: PAYKUBE_PROVIDER_RESYNC
  value: {{ $o.providerResync | toString | quote }}
- name: PAYKUBE_OPERATOR_HOST
  value: {{ $o.host | quote }}
- name: PAYKUBE_HEALTH_PORT
  value: {{ $o.healthPort | int64 | quote }}
- name: PAYKUBE_METRICS_PORT
  value: {{ $o.metricsPort | int64 | quote }}
{{- if $o.database.host }}
- name: PAYKUBE_DATABASE_HOST
  value: {{ $o.database.host | quote }}
{{- end }}
- name: PAYKUBE_DATABASE_PORT
  value: {{ $o.database.port | int64 | quote }}
- name: PAYKUBE_DATABASE_NAME
  value: {{ $o.database.name | quote }}
{{- /* The mirror's RDS secret: operator only (the webhook never touches the database). */}}
{{- if and (eq .Values.secrets.source "aws") .Values.secrets.aws.databaseSecretId }}
- name: PAYKUBE_AWS_DATABASE_SECRET_ID
  value: {{ .Values.secrets.aws.databaseSecretId | quote }}
{{- end }}
{{- if $o.explain.baseUrl }}
- name: PAYKUBE_EXPLAIN_BASE_URL
  value: {{ $o.explain.baseUrl | quote }}
- name: PAYKUBE_EXPLAIN_MODEL
  value: {{ required "operator.explain.model is required when operator.explain.baseUrl is set" $o.explain.model | quote }}
- name: PAYKUBE_EXPLAIN_TIMEOUT
  value: {{ $o.explain.timeout | toString | quote }}
- name: PAYKUBE_EXPLAIN_RETRY
  value: {{ $o.explain.retry | toString | quote }}
{{- end }}
{{- include "paykube.secretFileEnv" (dict "root" . "key" "stripeApiKey" "name" "PAYKUBE_STRIPE_API_KEY_FILE") }}
{{- include "paykube.secretFileEnv" (dict "root" . "key" "databaseUrl" "name" "PAYKUBE_DATABASE_URL_FILE") }}
{{- include "paykube.secretFileEnv" (dict "root" . "key" "explainApiKey" "name" "PAYKUBE_EXPLAIN_API_KEY_FILE") }}
{{- with $o.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "paykube.webhookEnv" -}}
{{- $w := .Values.webhook }}
{{- include "paykube.commonEnv" . }}
- name: PAYKUBE_WEBHOOK_HOST
  value: {{ $w.host | quote }}
- name: PAYKUBE_WEBHOOK_PORT
  value: {{ $w.port | int64 | quote }}
- name: PAYKUBE_WEBHOOK_TOLERANCE
  value: {{ $w.tolerance | int64 | quote }}
- name: PAYKUBE_WEBHOOK_MAX_BODY
  value: {{ $w.maxBody | int64 | quote }}
- name: PAYKUBE_WEBHOOK_READ_TIMEOUT
  value: {{ $w.readTimeout | toString | quote }}
- name: PAYKUBE_WEBHOOK_MAX_READERS
  value: {{ $w.maxReaders | int64 | quote }}
- name: PAYKUBE_WEBHOOK_EVENT_RATE
  value: {{ $w.eventRate | toString | quote }}
- name: PAYKUBE_WEBHOOK_SESSION_CACHE
  value: {{ $w.sessionCache | toString | quote }}
- name: PAYKUBE_ROUTES_TTL
  value: {{ $w.routesTtl | toString | quote }}
{{- with .Values.secrets.aws.webhookSecretId }}
{{- if eq $.Values.secrets.source "aws" }}
# The signing secrets only: never the document that holds the API key.
- name: PAYKUBE_AWS_WEBHOOK_SECRET_ID
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- include "paykube.secretFileEnv" (dict "root" . "key" "webhookSecrets" "name" "PAYKUBE_WEBHOOK_SECRETS_FILE") }}
{{- include "paykube.secretFileEnv" (dict "root" . "key" "metricsUsername" "name" "PAYKUBE_METRICS_USERNAME_FILE") }}
{{- include "paykube.secretFileEnv" (dict "root" . "key" "metricsPassword" "name" "PAYKUBE_METRICS_PASSWORD_FILE") }}
{{- with $w.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* RBAC ----------------------------------------------------------------------------- */}}

{{/* true when operator.namespaces holds a kopf pattern (a glob or a negation): the same
test as the operator's (paykube.operator.__main__.configure_kopf), which then turns on
kopf's cluster scanning. */}}
{{- define "paykube.namespacePatterns" -}}
{{- range .Values.operator.namespaces }}
{{- if regexMatch "[*?!\\[,]" . }}true{{ end }}
{{- end }}
{{- end }}

{{/* true when the operator may get Secrets in every namespace: spec.credentialsRef is on
and the operator watches the whole cluster or namespace globs (which no Role can name).
With exact operator.namespaces, Roles in those namespaces grant the same reads instead. */}}
{{- define "paykube.clusterSecretRead" -}}
{{- if and (not .Values.rbac.namespaced) .Values.rbac.credentialsRefSecrets }}
{{- if or (not .Values.operator.namespaces) (include "paykube.namespacePatterns" .) }}true{{ end }}
{{- end }}
{{- end }}

{{/* The namespaces of namespaced RBAC, one per line; fails with a clear message if unusable. */}}
{{- define "paykube.rbacNamespaces" -}}
{{- $list := .Values.rbac.namespaces | default .Values.operator.namespaces }}
{{- if not $list }}
{{- fail "rbac.namespaced=true needs the namespaces to grant access in: set operator.namespaces (or rbac.namespaces) to exact namespace names" }}
{{- end }}
{{- range $list }}
{{- if regexMatch "[*?!\\[,]" . }}
{{- fail (printf "rbac.namespaced=true cannot grant Roles in the namespace pattern %q: list exact namespace names in rbac.namespaces, or use rbac.namespaced=false" .) }}
{{- end }}
{{- end }}
{{- if and .Values.operator.namespaces (not (include "paykube.namespacePatterns" .)) }}
{{- range .Values.operator.namespaces }}
{{- if not (has . $list) }}
{{- fail (printf "operator.namespaces contains %q, which rbac.namespaces does not: the operator could not watch it" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- join "\n" (uniq $list) }}
{{- end }}

{{/* Operator rules on PaymentSessions and Events (in Roles or the ClusterRole). */}}
{{- define "paykube.routeTableSecret" -}}
{{ include "paykube.fullname" . }}-webhook-routes
{{- end }}

{{- define "paykube.operatorRules" -}}
# Watch and reconcile PaymentSessions, PaymentRefunds and PaymentProviders; patch for
# kopf's finalizers and progress annotations. Never create or delete them: users do.
- apiGroups: [payments.paykube.dev]
  resources: [paymentsessions, paymentrefunds, paymentproviders]
  verbs: [get, list, watch, patch]
- apiGroups: [payments.paykube.dev]
  resources: [paymentproviders/status]
  verbs: [get, patch]
# Status is written only through the status subresource, by merge patches with the
# resourceVersion as precondition (so no update); get adds nothing to the get on the
# object (kubectl patch --subresource=status reads before it writes). A refund's amount is
# reserved on its PaymentSession's status.
- apiGroups: [payments.paykube.dev]
  resources: [paymentsessions/status, paymentrefunds/status]
  verbs: [get, patch]
# Events on the objects (kubectl describe); patch aggregates a repeated Event.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* kopf's cluster scanning, read-only. The operator turns it on only for namespace globs
(it must notice namespaces that start matching, and it then also watches CRDs); with exact
names or cluster-wide watching it is off and needs neither, so these rules are only granted
when paykube.namespacePatterns is true. */}}
{{- define "paykube.operatorObserveRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/* Cluster-scoped: ClusterPaymentProviders, and the namespace labels their
namespaceSelector matches (get only). In every RBAC mode. */}}
{{- define "paykube.operatorClusterRules" -}}
- apiGroups: [payments.paykube.dev]
  resources: [clusterpaymentproviders]
  verbs: [get, list, watch, patch]
- apiGroups: [payments.paykube.dev]
  resources: [clusterpaymentproviders/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
{{- end }}

{{- define "paykube.operatorSecretRules" -}}
# A PaymentProvider's key and signing-secret Secrets: by name, get only (never list/watch).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}

{{- define "paykube.webhookRules" -}}
# Find the object a Stripe event refers to (a session, or a refund by its metadata) ...
- apiGroups: [payments.paykube.dev]
  resources: [paymentsessions, paymentrefunds]
  verbs: [get]
# ... and move its status along (charge.refunded raises a session's amountRefunded);
# nothing else (no list, no spec, no create or delete, no Secrets).
- apiGroups: [payments.paykube.dev]
  resources: [paymentsessions/status, paymentrefunds/status]
  verbs: [get, patch]
{{- if .Values.webhook.sessionCache }}
# webhook.sessionCache: the watch whose copies are the base of each status write.
- apiGroups: [payments.paykube.dev]
  resources: [paymentsessions]
  verbs: [list, watch]
{{- end }}
# Events on the objects (kubectl describe).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# No Secrets: the signing secrets come from the route table (one named Secret in the
# release namespace, its own Role), never an API key.
{{- end }}

{{/* Pods ----------------------------------------------------------------------------- */}}

{{/* The signing secrets as a file: the kubelet updates it when the Secret changes (it
would not for an env var or a subPath mount), and the webhook re-reads it. */}}
{{- define "paykube.secretFilesDir" -}}/var/run/secrets/paykube{{- end }}

{{/* The env var naming the file of one key of secrets.existingSecret, if configured. */}}
{{- define "paykube.secretFileEnv" -}}
{{- if index .root.Values.secrets.keys .key }}
{{- $_ := required (printf "secrets.existingSecret is required when secrets.keys.%s is set" .key) .root.Values.secrets.existingSecret }}
- name: {{ .name }}
  value: {{ include "paykube.secretFilesDir" .root }}/{{ .key }}
{{- end }}
{{- end }}

{{/* The Secret volume of a component's secret files (`keys`: names in secrets.keys), each
key as a file named after it: the kubelet updates these, the programs re-read them. */}}
{{- define "paykube.secretFilesVolume" -}}
{{- $root := .root }}
{{- $set := list }}
{{- range $name := .keys }}
{{- if index $root.Values.secrets.keys $name }}{{ $set = append $set $name }}{{ end }}
{{- end }}
{{- if $set }}
- name: secret-files
  secret:
    secretName: {{ $root.Values.secrets.existingSecret }}
    items:
      {{- range $name := $set }}
      - key: {{ index $root.Values.secrets.keys $name }}
        path: {{ $name }}
      {{- end }}
    defaultMode: 0440  # group-readable: the fsGroup of podSecurityContext
{{- end }}
{{- end }}

{{- define "paykube.secretFilesMount" -}}
{{- $root := .root }}
{{- $set := list }}
{{- range $name := .keys }}
{{- if index $root.Values.secrets.keys $name }}{{ $set = append $set $name }}{{ end }}
{{- end }}
{{- if $set }}
- name: secret-files
  mountPath: {{ include "paykube.secretFilesDir" $root }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "paykube.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{/* NetworkPolicy egress: DNS plus what the user lists (API server, Stripe, RDS, broker). */}}
{{- define "paykube.egressRules" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- with .Values.networkPolicy.egress.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}
