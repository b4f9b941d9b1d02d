{{/*
Names and labels, as `helm create` makes them.
*/}}

{{/*
The chart's name, or nameOverride.
*/}}
{{- define "negotiate-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects. Kubernetes limits some name fields to 63 characters, so it is cut
there. A release name that already holds the chart name is used as it is.
*/}}
{{- define "negotiate-sidecar.fullname" -}}
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

{{/*
The chart's name and version, for the helm.sh/chart label.
*/}}
{{- define "negotiate-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "negotiate-sidecar.labels" -}}
helm.sh/chart: {{ include "negotiate-sidecar.chart" . }}
{{ include "negotiate-sidecar.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the pods.
*/}}
{{- define "negotiate-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "negotiate-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount of the pods.
*/}}
{{- define "negotiate-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "negotiate-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Annotations of the ServiceAccount the chart creates: serviceAccount.annotations, and the identity of
azureWorkloadIdentity, which the workload identity webhook reads when it admits a pod of this ServiceAccount.
*/}}
{{- define "negotiate-sidecar.serviceAccountAnnotations" -}}
{{- $annotations := deepCopy (.Values.serviceAccount.annotations | default dict) }}
{{- $wi := .Values.azureWorkloadIdentity }}
{{- if $wi.enabled }}
{{- with $wi.clientId }}
{{- $_ := set $annotations "azure.workload.identity/client-id" . }}
{{- end }}
{{- with $wi.tenantId }}
{{- $_ := set $annotations "azure.workload.identity/tenant-id" . }}
{{- end }}
{{- end }}
{{- with $annotations }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the pods beyond the chart's own: podLabels, and with azureWorkloadIdentity the label the workload
identity webhook selects pods by. The webhook adds the token volume, its mount and the AZURE_* variables to
every container of the pod, init containers too, unless the pod's azure.workload.identity/skip-containers
annotation names it: the app and the sidecar both sign in as the identity.
*/}}
{{- define "negotiate-sidecar.podLabels" -}}
{{- $labels := deepCopy (.Values.podLabels | default dict) }}
{{- if .Values.azureWorkloadIdentity.enabled }}
{{- $_ := set $labels "azure.workload.identity/use" "true" }}
{{- end }}
{{- with $labels }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
"true" when the chart creates the Secret holding the connection string: no existing Secret, no identity-based
settings, and connectionString.inSecret not false.
*/}}
{{- define "negotiate-sidecar.createsSecret" -}}
{{- $cs := .Values.connectionString }}
{{- if not (or $cs.existingSecret $cs.identity (eq $cs.inSecret false)) -}}
true
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the connection string: the existing one, or the one the chart creates.
*/}}
{{- define "negotiate-sidecar.secretName" -}}
{{- if .Values.connectionString.existingSecret }}
{{- .Values.connectionString.existingSecret }}
{{- else }}
{{- printf "%s-signalr" (include "negotiate-sidecar.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Name of the ConfigMap holding the sidecar's configuration file.
*/}}
{{- define "negotiate-sidecar.configMapName" -}}
{{- printf "%s-config" (include "negotiate-sidecar.fullname" .) }}
{{- end }}

{{/*
Name of the Service that exposes only the admin port, for the ServiceMonitor. A Service name is at most 63
characters.
*/}}
{{- define "negotiate-sidecar.metricsServiceName" -}}
{{- printf "%s-metrics" (include "negotiate-sidecar.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
An image reference from a map with repository, tag and digest; the digest wins over the tag.
Called with (list <image map> <default tag> <what, for the error message>).
*/}}
{{- define "negotiate-sidecar.imageRef" -}}
{{- $image := index . 0 }}
{{- $tag := default (index . 1) $image.tag }}
{{- $repository := required (printf "%s.repository is required" (index . 2)) $image.repository }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (required (printf "%s.tag or %s.digest is required" (index . 2) (index . 2)) $tag) }}
{{- end }}
{{- end }}

{{/*
Directory and file of the sidecar's configuration file, when `config` is set.
*/}}
{{- define "negotiate-sidecar.configDir" -}}
/etc/negotiate-sidecar
{{- end }}

{{/*
The sidecar's arguments, as a YAML list. Only the addresses and the upstream are always passed; every other
flag only when its value is set, so that a configuration file can hold it instead.
*/}}
{{- define "negotiate-sidecar.args" -}}
{{- $v := .Values }}
{{- $args := list
  (printf "--listen=:%d" (int $v.sidecar.port))
  (printf "--admin-listen=:%d" (int $v.sidecar.adminPort))
  (printf "--upstream=http://127.0.0.1:%d" (int $v.functions.port)) }}
{{- if eq $v.sidecar.service "webpubsub" }}
{{- $args = append $args "--service=webpubsub" }}
{{- end }}
{{- with $v.auth.issuer }}
{{- $args = append $args (printf "--issuer=%s" .) }}
{{- end }}
{{- range $v.auth.jwksUrls }}
{{- $args = append $args (printf "--jwks-url=%s" .) }}
{{- end }}
{{- range $v.auth.audiences }}
{{- $args = append $args (printf "--audience=%s" .) }}
{{- end }}
{{- with $v.auth.userClaim }}
{{- $args = append $args (printf "--user-claim=%s" .) }}
{{- end }}
{{- with $v.auth.algorithms }}
{{- $args = append $args (printf "--algorithms=%s" (join "," .)) }}
{{- end }}
{{- with $v.auth.leeway }}
{{- $args = append $args (printf "--leeway=%s" .) }}
{{- end }}
{{- if $v.auth.insecureHttp }}
{{- $args = append $args "--insecure-http" }}
{{- end }}
{{- range $v.sidecar.negotiatePaths }}
{{- $args = append $args (printf "--negotiate-path=%s" .) }}
{{- end }}
{{- with $v.sidecar.logLevel }}
{{- $args = append $args (printf "--log-level=%s" .) }}
{{- end }}
{{- with $v.sidecar.logFormat }}
{{- $args = append $args (printf "--log-format=%s" .) }}
{{- end }}
{{- with $v.sidecar.shutdownDelay }}
{{- $args = append $args (printf "--shutdown-delay=%s" .) }}
{{- end }}
{{- with $v.sidecar.shutdownTimeout }}
{{- $args = append $args (printf "--shutdown-timeout=%s" .) }}
{{- end }}
{{- with $v.sidecar.maxConnections }}
{{- $args = append $args (printf "--max-connections=%d" (int .)) }}
{{- end }}
{{- if $v.config }}
{{- $args = append $args (printf "--config=%s/config.yaml" (include "negotiate-sidecar.configDir" $)) }}
{{- end }}
{{- range $v.sidecar.extraArgs }}
{{- $args = append $args . }}
{{- end }}
{{- toYaml $args }}
{{- end }}

{{/*
Checks of values that the schema cannot express. They fail the rendering with a message that says what to set.
*/}}
{{- define "negotiate-sidecar.validate" -}}
{{- $v := .Values }}
{{- if and (not $v.auth.issuer) (not $v.config) }}
{{- fail "set auth.issuer and auth.audiences (your identity provider), or name the providers in config" }}
{{- end }}
{{- if and $v.auth.issuer (not $v.auth.audiences) }}
{{- fail "auth.audiences is required with auth.issuer: the aud values your callers' tokens carry" }}
{{- end }}
{{- include "negotiate-sidecar.validateWorkloadIdentity" . }}
{{- include "negotiate-sidecar.validateConnection" . }}
{{- if and $v.sidecar.shutdownTimeout (regexMatch "^(0+(\\.0+)?(ns|us|µs|ms|s|m|h))+$" $v.sidecar.shutdownTimeout) }}
{{- fail "sidecar.shutdownTimeout must be positive: it is how long in-flight requests may take to finish" }}
{{- end }}
{{- if eq (int $v.sidecar.port) (int $v.sidecar.adminPort) }}
{{- fail (printf "sidecar.port and sidecar.adminPort must differ (both are %d)" (int $v.sidecar.port)) }}
{{- end }}
{{- if or (eq (int $v.functions.port) (int $v.sidecar.port)) (eq (int $v.functions.port) (int $v.sidecar.adminPort)) }}
{{- fail (printf "functions.port %d is also a port of the sidecar, and the containers share the pod's network: change sidecar.port or sidecar.adminPort" (int $v.functions.port)) }}
{{- end }}
{{- end }}

{{/*
Checks of connectionString: one way to connect, and no secret outside a Secret.
*/}}
{{- define "negotiate-sidecar.validateConnection" -}}
{{- $cs := .Values.connectionString }}
{{- if $cs.identity }}
{{- if or $cs.existingSecret $cs.value }}
{{- fail "set connectionString.identity or a connection string (connectionString.existingSecret or connectionString.value), not both: the Functions host reads one and ignores the other" }}
{{- end }}
{{- if not $cs.identity.serviceUri }}
{{- fail "connectionString.identity.serviceUri is required: the endpoint of your Azure SignalR Service, such as https://<name>.service.signalr.net" }}
{{- end }}
{{- else if and (not $cs.existingSecret) (not $cs.value) }}
{{- fail "set connectionString.existingSecret (the name of a Secret holding the Azure SignalR connection string), connectionString.value, or connectionString.identity (identity-based settings)" }}
{{- end }}
{{- if eq $cs.inSecret false }}
{{- if $cs.existingSecret }}
{{- fail "connectionString.inSecret is false, but connectionString.existingSecret names a Secret: leave one of them" }}
{{- end }}
{{- if regexMatch "(?i)(^|;)\\s*(AccessKey|ClientSecret)\\s*=" $cs.value }}
{{- fail "connectionString.value holds an AccessKey or a ClientSecret: keep it in a Secret (connectionString.inSecret: true, or connectionString.existingSecret)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Checks of azureWorkloadIdentity. The webhook finds the identity only on the pod's ServiceAccount, so the chart
must be able to annotate it, or be told that it carries the annotation already.
*/}}
{{- define "negotiate-sidecar.validateWorkloadIdentity" -}}
{{- $v := .Values }}
{{- $wi := $v.azureWorkloadIdentity }}
{{- if $wi.enabled }}
{{- $clientIdKey := "azure.workload.identity/client-id" }}
{{- $tenantIdKey := "azure.workload.identity/tenant-id" }}
{{- if not $v.workload.enabled }}
{{- fail (printf "azureWorkloadIdentity.enabled needs the chart's workload (workload.enabled=true); with your own pod template, label it azure.workload.identity/use: \"true\" and annotate its ServiceAccount with %s" $clientIdKey) }}
{{- end }}
{{- $sa := include "negotiate-sidecar.serviceAccountName" . }}
{{- if $v.serviceAccount.create }}
{{- $annotations := $v.serviceAccount.annotations | default dict }}
{{- if not (or $wi.clientId (get $annotations $clientIdKey)) }}
{{- fail "azureWorkloadIdentity.clientId is required: the client id of the managed identity (or app registration) whose federated credential trusts this ServiceAccount" }}
{{- end }}
{{- range $key, $value := dict $clientIdKey $wi.clientId $tenantIdKey $wi.tenantId }}
{{- $other := get $annotations $key }}
{{- if and $value $other (ne $value $other) }}
{{- fail (printf "serviceAccount.annotations sets %s to %s, azureWorkloadIdentity to %s: keep one" $key $other $value) }}
{{- end }}
{{- end }}
{{- else }}
{{- if or $wi.clientId $wi.tenantId }}
{{- fail (printf "azureWorkloadIdentity.clientId and tenantId annotate a ServiceAccount the chart creates; with serviceAccount.create=false, annotate ServiceAccount %s with %s yourself, leave them empty and set azureWorkloadIdentity.serviceAccountAnnotated=true" $sa $clientIdKey) }}
{{- end }}
{{- if not $wi.serviceAccountAnnotated }}
{{- fail (printf "serviceAccount.create is false, so the chart cannot annotate ServiceAccount %s for workload identity: annotate it with %s and set azureWorkloadIdentity.serviceAccountAnnotated=true, or set serviceAccount.create=true and azureWorkloadIdentity.clientId" $sa $clientIdKey) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The sidecar container, as one item of a container list. Other charts add it to their pods with

  containers:
    {{- include "negotiate-sidecar.container" (index .Subcharts "negotiate-sidecar") | nindent 4 }}

(under initContainers when nativeSidecar is true), together with "negotiate-sidecar.volumes" in the pod's
volumes and "negotiate-sidecar.connectionStringEnv" in the app container's env.
*/}}
{{- define "negotiate-sidecar.container" -}}
{{- include "negotiate-sidecar.validate" . -}}
- name: {{ .Values.sidecar.name }}
  image: {{ include "negotiate-sidecar.imageRef" (list .Values.sidecar.image .Chart.AppVersion "sidecar.image") | quote }}
  imagePullPolicy: {{ .Values.sidecar.image.pullPolicy }}
  {{- if .Values.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  args:
    {{- include "negotiate-sidecar.args" . | nindent 4 }}
  env:
    {{- include "negotiate-sidecar.connectionEnvNamed" (list . (ternary "WebPubSubConnectionString" "AzureSignalRConnectionString" (eq .Values.sidecar.service "webpubsub"))) | nindent 4 }}
    {{- with .Values.sidecar.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: {{ .Values.sidecar.port }}
      protocol: TCP
    - name: admin
      containerPort: {{ .Values.sidecar.adminPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: admin
    {{- with .Values.sidecar.startupProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    {{- with .Values.sidecar.livenessProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    {{- with .Values.sidecar.readinessProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.sidecar.securityContext | nindent 4 }}
  {{- if or .Values.config .Values.sidecar.volumeMounts }}
  volumeMounts:
    {{- if .Values.config }}
    - name: negotiate-sidecar-config
      mountPath: {{ include "negotiate-sidecar.configDir" . }}
      readOnly: true
    {{- end }}
    {{- with .Values.sidecar.volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}

{{/*
The pod volumes the sidecar container needs, as list items; nothing when it needs none.
*/}}
{{- define "negotiate-sidecar.volumes" -}}
{{- if .Values.config -}}
- name: negotiate-sidecar-config
  configMap:
    name: {{ include "negotiate-sidecar.configMapName" . }}
{{- end }}
{{- end }}

{{/*
The environment variables that give the app container the same connection as the sidecar, as list items:
the connection string under connectionString.appSetting, or the identity-based settings under
<appSetting>__<key>.
*/}}
{{- define "negotiate-sidecar.connectionStringEnv" -}}
{{- include "negotiate-sidecar.connectionEnvNamed" (list . .Values.connectionString.appSetting) }}
{{- end }}

{{/*
The connection as environment variables named after a setting, as list items. Called with (list <context>
<setting name>). Identity-based settings are <name>__<key>, as the Functions host reads a configuration
section from the environment, in a fixed order; a connection string is <name>, from the Secret or, with
connectionString.inSecret false, as it is.
*/}}
{{- define "negotiate-sidecar.connectionEnvNamed" -}}
{{- $ := index . 0 }}
{{- $name := index . 1 }}
{{- $cs := $.Values.connectionString }}
{{- if $cs.identity }}
{{- range $key := list "serviceUri" "credential" "clientId" "tenantId" "clientSecret" "serverEndpoint" "clientEndpoint" }}
{{- $setting := get $cs.identity $key }}
{{- if kindIs "map" $setting }}
- name: {{ printf "%s__%s" $name $key }}
  valueFrom:
    {{- toYaml $setting | nindent 4 }}
{{- else if $setting }}
- name: {{ printf "%s__%s" $name $key }}
  value: {{ $setting | quote }}
{{- end }}
{{- end }}
{{- else if eq $cs.inSecret false }}
- name: {{ $name }}
  value: {{ $cs.value | quote }}
{{- else }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "negotiate-sidecar.secretName" $ }}
      key: {{ $cs.key }}
{{- end }}
{{- end }}

{{/*
Pod annotations that change when the sidecar's configuration file, the created Secret or the workload
identity annotations of the ServiceAccount change, so that an upgrade restarts the pods; nothing when none is
rendered.
*/}}
{{- define "negotiate-sidecar.podAnnotations" -}}
{{- $annotations := dict }}
{{- if .Values.config }}
{{- $_ := set $annotations "checksum/negotiate-sidecar-config" (toYaml .Values.config | sha256sum) }}
{{- end }}
{{- if include "negotiate-sidecar.createsSecret" . }}
{{- $_ := set $annotations "checksum/negotiate-sidecar-secret" (.Values.connectionString.value | sha256sum) }}
{{- end }}
{{- /* The webhook reads the ServiceAccount only when it admits a pod. */}}
{{- if and .Values.azureWorkloadIdentity.enabled .Values.serviceAccount.create }}
{{- $_ := set $annotations "checksum/negotiate-sidecar-workload-identity" (include "negotiate-sidecar.serviceAccountAnnotations" . | sha256sum) }}
{{- end }}
{{- with $annotations }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Whole seconds, rounded up, of a Go duration such as 1m30s or 500ms.
*/}}
{{- define "negotiate-sidecar.seconds" -}}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" (toString .) -1 }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . }}
{{- $unit := trimPrefix $number . }}
{{- $scale := get (dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit }}
{{- $total = addf $total (mulf (float64 $number) $scale) }}
{{- end }}
{{- ceil $total | int }}
{{- end }}

{{/*
The sidecar's shutdown delay and timeout in seconds, as it will use them: the value, else the configuration
file's key, else the sidecar's default (5s and 15s). Settings passed in sidecar.extraArgs or sidecar.extraEnv
are not seen here.
*/}}
{{- define "negotiate-sidecar.shutdownDelaySeconds" -}}
{{- $config := .Values.config | default dict }}
{{- include "negotiate-sidecar.seconds" (.Values.sidecar.shutdownDelay | default $config.shutdown_delay | default "5s") }}
{{- end }}

{{- define "negotiate-sidecar.shutdownTimeoutSeconds" -}}
{{- $config := .Values.config | default dict }}
{{- include "negotiate-sidecar.seconds" (.Values.sidecar.shutdownTimeout | default $config.shutdown_timeout | default "15s") }}
{{- end }}

{{/*
How long the app container's preStop hook waits. Next to a regular sidecar, both containers get SIGTERM at
once, so the app waits out the sidecar's whole shutdown (delay and timeout) and answers every request the
sidecar still forwards. A native sidecar is stopped only after the app has exited, so the app waits out the
delay alone, while Kubernetes takes the pod out of the endpoints and the sidecar still forwards to it.
*/}}
{{- define "negotiate-sidecar.preStopSeconds" -}}
{{- $delay := include "negotiate-sidecar.shutdownDelaySeconds" . | int }}
{{- if .Values.nativeSidecar }}
{{- $delay }}
{{- else }}
{{- add $delay (include "negotiate-sidecar.shutdownTimeoutSeconds" . | int) }}
{{- end }}
{{- end }}

{{/*
The lifecycle of the app container, as YAML; nothing when functions.lifecycle is null. Other charts add it
to their app container with

  {{- with include "negotiate-sidecar.appLifecycle" (index .Subcharts "negotiate-sidecar") }}
  lifecycle:
    {{- . | nindent 4 }}
  {{- end }}
*/}}
{{- define "negotiate-sidecar.appLifecycle" -}}
{{- $lifecycle := .Values.functions.lifecycle }}
{{- if kindIs "map" $lifecycle }}
{{- if $lifecycle }}
{{- toYaml $lifecycle }}
{{- else -}}
preStop:
  exec:
    command:
      - /bin/sh
      - -c
      - sleep {{ include "negotiate-sidecar.preStopSeconds" . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The pod's termination grace period: terminationGracePeriodSeconds when set, which must leave the sidecar time
for its whole shutdown, else enough for the app container's preStop wait, 10 seconds for the app to stop
and, for a native sidecar, which Kubernetes stops only then, the sidecar's own delay and timeout.
*/}}
{{- define "negotiate-sidecar.terminationGracePeriodSeconds" -}}
{{- $delay := include "negotiate-sidecar.shutdownDelaySeconds" . | int }}
{{- $timeout := include "negotiate-sidecar.shutdownTimeoutSeconds" . | int }}
{{- $need := add $delay $timeout }}
{{- $why := printf "the shutdown delay %ds plus the timeout %ds" $delay $timeout }}
{{- if .Values.nativeSidecar }}
{{- $need = add $need $delay }}
{{- $why = printf "the app's wait of the shutdown delay %ds, then the sidecar's delay %ds and timeout %ds" $delay $delay $timeout }}
{{- end }}
{{- $set := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $set }}
{{- $preStop := include "negotiate-sidecar.preStopSeconds" . | int }}
{{- if .Values.nativeSidecar }}
{{- add $preStop 10 $delay $timeout }}
{{- else }}
{{- add $preStop 10 }}
{{- end }}
{{- else if lt (int $set) $need }}
{{- fail (printf "terminationGracePeriodSeconds %d is shorter than the shutdown needs, %ds (%s); raise it, or set it to null to have the chart compute it" (int $set) $need $why) }}
{{- else }}
{{- int $set }}
{{- end }}
{{- end }}
