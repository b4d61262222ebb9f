{{/* The chart's name. */}}
{{- define "ecs-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the name of every object. */}}
{{- define "ecs-gateway.fullname" -}}
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

{{/* The standard labels. */}}
{{- define "ecs-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ecs-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: ecs-gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels that select the pods. */}}
{{- define "ecs-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecs-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ecs-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecs-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The credentials Secret: the user's, or the chart's. */}}
{{- define "ecs-gateway.credentialsSecret" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else }}
{{- printf "%s-credentials" (include "ecs-gateway.fullname" .) }}
{{- end }}
{{- end }}

{{/* The policies ConfigMap: the user's, or the chart's. */}}
{{- define "ecs-gateway.policiesConfigMap" -}}
{{- if .Values.policies.existingConfigMap }}
{{- .Values.policies.existingConfigMap }}
{{- else }}
{{- printf "%s-policies" (include "ecs-gateway.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The policy files by path: values' policies.files, else the chart's sample
bundle under files/policies/.
*/}}
{{- define "ecs-gateway.policyFiles" -}}
{{- $files := dict }}
{{- if .Values.policies.files }}
{{- $files = .Values.policies.files }}
{{- else if not .Values.policies.sample }}
{{- fail "policies: give your policies (policies.files or policies.existingConfigMap); policies.sample=true installs the demo's sample bundle, whose principals are the demo's" }}
{{- else }}
{{- range $path, $_ := .Files.Glob "files/policies/**" }}
{{- $_ := set $files (trimPrefix "files/policies/" $path) ($.Files.Get $path) }}
{{- end }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/* The header the chart's Istio EnvoyFilter (mesh.istio.sourceAddressFilter)
sets on every request to the caller's address, overwriting any the caller
sent. */}}
{{- define "ecs-gateway.istioSourceAddressHeader" -}}x-ecs-gateway-source-address{{- end }}

{{/* The mount paths. */}}
{{- define "ecs-gateway.configDir" -}}/etc/ecs-gateway{{- end }}

{{/* The settings file: values' config plus what the chart decides. */}}
{{- define "ecs-gateway.configToml" -}}
{{- $dir := include "ecs-gateway.configDir" . }}
{{- $config := deepCopy .Values.config }}
{{- $_ := set $config "listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- $_ := set $config "admin_listen" (printf "0.0.0.0:%d" (int .Values.ports.admin)) }}
{{- /* YAML numbers arrive as floats; the settings file wants integers, and
every number in it is one (counts and limits: the schema says integer). */}}
{{- $upstream := get $config "upstream" }}
{{- $server := get $config "server" }}
{{- range $section := list $upstream $server }}
{{- range $key, $value := $section }}
{{- if kindIs "float64" $value }}
{{- $_ := set $section $key (int64 $value) }}
{{- end }}
{{- end }}
{{- end }}
{{- $_ := set $server "shutdown_grace" (printf "%ds" (int .Values.shutdownGraceSeconds)) }}
{{- $policy := get $config "policy" }}
{{- $_ := set $policy "dir" (printf "%s/policies" $dir) }}
{{- if .Values.policies.shadowConfigMap }}
{{- $_ := set $policy "shadow_dir" (printf "%s/shadow-policies" $dir) }}
{{- end }}
{{- /* Where the caller's address is read behind the sidecar: the user's
header; else, with the chart's Istio EnvoyFilter, the header it overwrites;
else (empty) the gateway's default, x-forwarded-for. */}}
{{- $identity := get $config "identity" | default dict }}
{{- if not (get $identity "source_address_header") }}
{{- $_ := unset $identity "source_address_header" }}
{{- if .Values.mesh.istio.sourceAddressFilter }}
{{- $_ := set $identity "source_address_header" (include "ecs-gateway.istioSourceAddressHeader" .) }}
{{- end }}
{{- end }}
{{- $_ := set $config "identity" $identity }}
{{- $_ := set $config "credentials" (dict "file" (printf "%s/credentials/credentials" $dir) "profile" .Values.credentials.profile) }}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert" (printf "%s/tls/tls.crt" $dir) "key" (printf "%s/tls/tls.key" $dir) "require_client_cert" .Values.tls.requireClientCert }}
{{- if .Values.tls.clientCa }}
{{- $_ := set $tls "client_ca" (printf "%s/tls/ca.crt" $dir) }}
{{- end }}
{{- $_ := set $config "tls" $tls }}
{{- end }}
{{- toToml $config }}
{{- end }}
