{{/*
Names, labels, images and the pieces every workload shares. Each workload
template (collector.yaml, consumer-*.yaml, compactor.yaml, api.yaml,
migrate-job.yaml) holds only what is its own: ports, settings, probes'
ports; the pod around it (security contexts, scheduling, volumes) is
"llm-observatory.podSpec" below, the same for all of them, as in the
kustomize base (k8s/base).
*/}}

{{/* The release's name prefix: the release name, or release-chart. */}}
{{- define "llm-observatory.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: (dict "root" $ "component" "collector"). */}}
{{- define "llm-observatory.name" -}}
{{- printf "%s-%s" (include "llm-observatory.fullname" .root) .component -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "llm-observatory.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llm-observatory
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Labels of a component's objects: (dict "root" $ "component" "collector" "role" "collector"). */}}
{{- define "llm-observatory.componentLabels" -}}
{{ include "llm-observatory.labels" .root }}
app.kubernetes.io/name: {{ include "llm-observatory.name" . }}
app.kubernetes.io/component: {{ .role | default .component }}
{{- end -}}

{{/* The labels that select a component's pods: (dict "root" $ "component" "collector"). */}}
{{- define "llm-observatory.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-observatory.name" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* An image of ours: (dict "root" $ "image" "collector" "values" .Values.collector). */}}
{{- define "llm-observatory.image" -}}
{{- $img := .root.Values.image -}}
{{- $own := .values.image | default dict -}}
{{- $repo := $own.repository | default (printf "%s/%s" $img.repository .image) -}}
{{- $registry := $own.registry | default $img.registry -}}
{{- $tag := $own.tag | default $img.tag | default .root.Chart.AppVersion -}}
{{- if $registry -}}{{ printf "%s/" $registry }}{{- end -}}{{ $repo }}:{{ $tag }}
{{- end -}}

{{/* The chart's own Secret (passwords, keys given as values). */}}
{{- define "llm-observatory.secretName" -}}
{{- include "llm-observatory.fullname" . -}}
{{- end -}}

{{/* Checks of the values that no schema can say well, each failing with a message naming the value. */}}
{{- define "llm-observatory.validate" -}}
{{- $db := .Values.database -}}
{{- if not $db.host -}}
{{- fail "database.host is required: the PostgreSQL (or TimescaleDB) host, e.g. --set database.host=your-rds-endpoint" -}}
{{- end -}}
{{- $modes := list "disable" "prefer" "require" "verify-ca" "verify-full" -}}
{{- if not (has $db.sslMode $modes) -}}
{{- fail (printf "database.sslMode must be one of disable, prefer, require, verify-ca, verify-full (libpq's meanings); got %q" (toString $db.sslMode)) -}}
{{- end -}}
{{- if and $db.password $db.existingSecret -}}
{{- fail "database.password and database.existingSecret are both set: give the password one way" -}}
{{- end -}}
{{- if not .Values.kafka.brokers -}}
{{- fail "kafka.brokers is required: the Kafka bootstrap servers, host:port,..." -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled (not (has .Values.kafka.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512"))) -}}
{{- fail (printf "kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; got %q" (toString .Values.kafka.sasl.mechanism)) -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled (not .Values.kafka.existingSecret) (not .Values.kafka.sasl.username) -}}
{{- fail "kafka.sasl.username is required when kafka.sasl.enabled is true (or give kafka.existingSecret)" -}}
{{- end -}}
{{- if and (or .Values.tempo.enabled .Values.compactor.enabled) (not .Values.objectStore.url) -}}
{{- fail "objectStore.url is required for the Tempo sink and the compactor (s3://bucket, gs://bucket, az://container), or set tempo.enabled=false and compactor.enabled=false" -}}
{{- end -}}
{{- $sinkModes := list "auto" "keda" "hpa" "none" -}}
{{- range $name := list "timescale" "tempo" -}}
{{- $mode := (index $.Values $name).autoscaling.mode -}}
{{- if not (has $mode $sinkModes) -}}
{{- fail (printf "%s.autoscaling.mode must be auto, keda, hpa or none; got %q" $name (toString $mode)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
How a sink is scaled: keda, hpa or none. `auto` is keda when the cluster
serves KEDA's API (keda.sh/v1alpha1), else none (fixed replicas).
(dict "root" $ "values" .Values.timescale)
*/}}
{{- define "llm-observatory.sinkScaling" -}}
{{- $mode := .values.autoscaling.mode -}}
{{- if eq $mode "auto" -}}
{{- if .root.Capabilities.APIVersions.Has "keda.sh/v1alpha1" -}}keda{{- else -}}none{{- end -}}
{{- else -}}
{{- $mode -}}
{{- end -}}
{{- end -}}

{{/* The DATABASE_URL without a password (DB_PASSWORD carries it). */}}
{{- define "llm-observatory.databaseUrl" -}}
{{- $db := .Values.database -}}
{{- printf "postgres://%s@%s:%v/%s" (urlquery $db.user) $db.host (int $db.port) (urlquery $db.name) -}}
{{- end -}}

{{/* REDIS_URL without a password (REDIS_PASSWORD carries it); empty without redis.host. */}}
{{- define "llm-observatory.redisUrl" -}}
{{- with .Values.redis -}}
{{- if .host -}}
{{- printf "%s://%s:%v" (ternary "rediss" "redis" (.tls | default false)) .host (int .port) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* librdkafka settings (k=v,...) of tls/sasl; empty when neither is on. */}}
{{- define "llm-observatory.kafkaClientConfig" -}}
{{- $k := .Values.kafka -}}
{{- $pairs := list -}}
{{- if $k.sasl.enabled -}}
{{- $pairs = append $pairs (printf "security.protocol=%s" (ternary "sasl_ssl" "sasl_plaintext" $k.tls.enabled)) -}}
{{- $pairs = append $pairs (printf "sasl.mechanism=%s" $k.sasl.mechanism) -}}
{{- $pairs = append $pairs (printf "sasl.username=%s" $k.sasl.username) -}}
{{- $pairs = append $pairs (printf "sasl.password=%s" $k.sasl.password) -}}
{{- else if $k.tls.enabled -}}
{{- $pairs = append $pairs "security.protocol=ssl" -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
The environment of the secrets a container reads, as env entries.
(dict "root" $ "needs" (list "database" "redis" "jwt" "ingest" "kafkaProducer" "kafkaConsumer"))
Each comes from the value's existingSecret when set, else from the chart's
Secret when the value was given, else it is left out (the binary's default).
*/}}
{{- define "llm-observatory.secretEnv" -}}
{{- $v := .root.Values -}}
{{- $own := include "llm-observatory.secretName" .root -}}
{{- $kafkaConfig := include "llm-observatory.kafkaClientConfig" .root -}}
{{- range $need := .needs -}}
{{- if eq $need "database" -}}
{{- if $v.database.existingSecret }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.database.existingSecret }}
      key: {{ $v.database.secretKeys.passwordKey }}
{{- else if $v.database.password }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $own }}
      key: database-password
{{- end -}}
{{- else if eq $need "redis" -}}
{{- if $v.redis.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.existingSecret }}
      key: {{ $v.redis.secretKeys.passwordKey }}
{{- else if $v.redis.password }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $own }}
      key: redis-password
{{- end -}}
{{- else if eq $need "jwt" }}
- name: JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $v.auth.existingSecret | default $own }}
      key: {{ ternary $v.auth.secretKeys.jwtSecretKey "jwt-secret" (not (empty $v.auth.existingSecret)) }}
{{- else if eq $need "ingest" -}}
{{- if $v.collector.apiKeys.existingSecret }}
- name: INGEST_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $v.collector.apiKeys.existingSecret }}
      key: {{ $v.collector.apiKeys.secretKey }}
{{- else if $v.collector.apiKeys.value }}
- name: INGEST_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $own }}
      key: ingest-api-keys
{{- end -}}
{{- else if or (eq $need "kafkaProducer") (eq $need "kafkaConsumer") -}}
{{- $var := ternary "KAFKA_PRODUCER_CONFIG" "KAFKA_CONSUMER_CONFIG" (eq $need "kafkaProducer") -}}
{{- if $v.kafka.existingSecret }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.existingSecret }}
      key: {{ ternary $v.kafka.secretKeys.producerConfigKey $v.kafka.secretKeys.consumerConfigKey (eq $need "kafkaProducer") }}
{{- else if $kafkaConfig }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $own }}
      key: kafka-client-config
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A map of settings as env entries, sorted by name: (dict "env" .Values.collector.env). */}}
{{- define "llm-observatory.envMap" -}}
{{- range $name := keys .env | sortAlpha }}
{{- $value := index $.env $name }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A pod's spec around its one container, the same for every workload:
(dict "root" $ "values" .Values.collector "serviceAccount" "default|storage"
      "grace" 30 "container" (include ... container yaml) "restartPolicy" "")
*/}}
{{- define "llm-observatory.podSpec" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $sa := ternary (printf "%s-storage" (include "llm-observatory.fullname" $root)) (include "llm-observatory.fullname" $root) (eq .serviceAccount "storage") -}}
serviceAccountName: {{ $sa }}
automountServiceAccountToken: false
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
{{- with .grace }}
terminationGracePeriodSeconds: {{ . }}
{{- end }}
{{- with $root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with ($v.nodeSelector | default $root.Values.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($v.tolerations | default $root.Values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($v.affinity | default $root.Values.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .spreadZones }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "llm-observatory.selectorLabels" (dict "root" $root "component" .component) | nindent 8 }}
{{- end }}
containers:
  - {{ .container | trim | indent 4 | trim }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- with .mounts }}
      {{- . | trim | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- with .volumes }}
  {{- . | trim | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The probes of an admin port: (dict "port" "admin" "readyPeriod" 5 "readyFailures" 2). */}}
{{- define "llm-observatory.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: {{ .readyPeriod }}
  timeoutSeconds: 3
  {{- with .readyFailures }}
  failureThreshold: {{ . }}
  {{- end }}
{{- end -}}

{{/* Pod metadata: labels and the Prometheus scrape annotations. */}}
{{- define "llm-observatory.podMetadata" -}}
labels:
  {{- include "llm-observatory.selectorLabels" (dict "root" .root "component" .component) | nindent 2 }}
  app.kubernetes.io/component: {{ .role }}
  {{- range .clients }}
  llm-observatory.io/{{ . }}-client: "true"
  {{- end }}
  {{- with .values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if .storage }}
  {{- with .root.Values.serviceAccount.storagePodLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- end }}
annotations:
  {{- if .metricsPort }}
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .metricsPort | quote }}
  prometheus.io/path: /metrics
  {{- end }}
  checksum/config: {{ include (print .root.Template.BasePath "/configmaps.yaml") .root | sha256sum }}
  {{- with .values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The volume and mount of database.sslRootCert, for PostgreSQL clients. */}}
{{- define "llm-observatory.dbCaMount" -}}
{{- if .Values.database.sslRootCert -}}
- name: database-ca
  mountPath: /etc/observatory/db
  readOnly: true
{{- end -}}
{{- end -}}
{{- define "llm-observatory.dbCaVolume" -}}
{{- if .Values.database.sslRootCert -}}
- name: database-ca
  configMap:
    name: {{ include "llm-observatory.fullname" . }}-database-ca
{{- end -}}
{{- end -}}
