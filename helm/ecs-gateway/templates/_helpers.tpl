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

{{/*
The credentials mode in force: credentials.mode, except that an existingSecret
named under the default accessKey mode (values of charts before `mode`) is the
existingSecret mode.
*/}}
{{- define "ecs-gateway.credentialsMode" -}}
{{- $c := .Values.credentials }}
{{- $mode := $c.mode | default "accessKey" }}
{{- if and (eq $mode "accessKey") $c.existingSecret }}existingSecret{{ else }}{{ $mode }}{{ end }}
{{- end }}

{{/* Whether the credentials are a file mounted from a Secret. */}}
{{- define "ecs-gateway.credentialsFromSecret" -}}
{{- if has (include "ecs-gateway.credentialsMode" .) (list "accessKey" "existingSecret") }}true{{ end }}
{{- end }}

{{/* Where the projected service-account token is mounted (rrsa without the
webhook): the path ACK's webhook uses. */}}
{{- define "ecs-gateway.rrsaTokenDir" -}}/var/run/secrets/ack.alibabacloud.com/rrsa-tokens{{- end }}

{{/*
Refuses credentials values that do not make one mode: a mode's required
values, and no other mode's values (an AccessKey left in values while the pod
signs with a role, a role name under the wrong mode).
*/}}
{{- define "ecs-gateway.validateCredentials" -}}
{{- $c := .Values.credentials }}
{{- $mode := include "ecs-gateway.credentialsMode" . }}
{{- $modes := list "accessKey" "existingSecret" "rrsa" "ecsRamRole" }}
{{- if not (has $mode $modes) }}
{{- fail (printf "credentials.mode: %q is none of %s" $mode (join ", " $modes)) }}
{{- end }}
{{- if eq $mode "existingSecret" }}
{{- if not $c.existingSecret }}
{{- fail "credentials.mode=existingSecret needs credentials.existingSecret: a Secret holding an Alibaba Cloud credentials file under credentials.existingSecretKey" }}
{{- end }}
{{- else if eq $mode "accessKey" }}
{{- if or (not $c.accessKeyId) (not $c.accessKeySecret) }}
{{- fail "credentials: set credentials.accessKeyId and credentials.accessKeySecret, or credentials.existingSecret (a Secret holding an Alibaba Cloud credentials file), or another credentials.mode (rrsa, ecsRamRole: no key at all)" }}
{{- end }}
{{- else }}
{{- range $key := list "existingSecret" "accessKeyId" "accessKeySecret" "securityToken" }}
{{- if get $c $key }}
{{- fail (printf "credentials.%s is set, but credentials.mode=%s signs without an AccessKey: remove it" $key $mode) }}
{{- end }}
{{- end }}
{{- end }}
{{- $rrsa := $c.rrsa | default dict }}
{{- $ecs := $c.ecsRamRole | default dict }}
{{- if eq $mode "rrsa" }}
{{- if $rrsa.webhook }}
{{- if and .Values.serviceAccount.create (not $rrsa.roleName) }}
{{- fail "credentials.mode=rrsa with the webhook needs credentials.rrsa.roleName: the RAM role the ServiceAccount is annotated with (pod-identity.alibabacloud.com/role-name)" }}
{{- end }}
{{- if or $rrsa.roleArn $rrsa.oidcProviderArn }}
{{- fail "credentials.rrsa.roleArn and oidcProviderArn are for credentials.rrsa.webhook=false: with the webhook, it injects them from the ServiceAccount's role name" }}
{{- end }}
{{- else }}
{{- if or (not $rrsa.roleArn) (not $rrsa.oidcProviderArn) }}
{{- fail "credentials.mode=rrsa without the webhook needs credentials.rrsa.roleArn (acs:ram::<account>:role/<name>) and credentials.rrsa.oidcProviderArn (acs:ram::<account>:oidc-provider/ack-rrsa-<cluster ID>)" }}
{{- end }}
{{- end }}
{{- else if or $rrsa.roleName $rrsa.roleArn $rrsa.oidcProviderArn }}
{{- fail (printf "credentials.rrsa.* is set, but credentials.mode=%s: set credentials.mode=rrsa, or remove them" $mode) }}
{{- end }}
{{- if and (ne $mode "ecsRamRole") $ecs.roleName }}
{{- fail (printf "credentials.ecsRamRole.roleName is set, but credentials.mode=%s: set credentials.mode=ecsRamRole, or remove it" $mode) }}
{{- end }}
{{- $sts := $c.sts | default dict }}
{{- if and $sts.vpcEndpoint (not $sts.region) (not $sts.endpoint) }}
{{- fail "credentials.sts.vpcEndpoint needs credentials.sts.region: the VPC endpoint is sts-vpc.<region>.aliyuncs.com" }}
{{- end }}
{{- $seen := dict }}
{{- range $i, $account := .Values.accounts }}
{{- $id := toString $account.id }}
{{- if hasKey $seen $id }}
{{- fail (printf "accounts[%d]: account %s is listed twice" $i $id) }}
{{- end }}
{{- $_ := set $seen $id true }}
{{- if eq $id (toString $.Values.config.policy.account_id) }}
{{- fail (printf "accounts[%d]: %s is config.policy.account_id, the account the gateway's own credentials sign for: list only the other accounts" $i $id) }}
{{- end }}
{{- $owner := regexReplaceAll "^acs:ram::([0-9]+):role/.*$" $account.roleArn "${1}" }}
{{- if ne $owner $id }}
{{- fail (printf "accounts[%d]: the role %s is not in account %s: each account's role is its own" $i $account.roleArn $id) }}
{{- end }}
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
{{- /* The credentials: only the chosen mode's source. Every mode but
ecsRamRole turns the metadata server off, so that a pod whose own source is
missing (a webhook that did not inject) refuses to start ("no credentials")
rather than signing with its node's role. */}}
{{- include "ecs-gateway.validateCredentials" . }}
{{- $c := .Values.credentials }}
{{- $mode := include "ecs-gateway.credentialsMode" . }}
{{- $credentials := dict }}
{{- if include "ecs-gateway.credentialsFromSecret" . }}
{{- $_ := set $credentials "file" (printf "%s/credentials/credentials" $dir) }}
{{- $_ := set $credentials "profile" $c.profile }}
{{- end }}
{{- if eq $mode "ecsRamRole" }}
{{- with $c.ecsRamRole.roleName }}
{{- $_ := set $credentials "ecs_ram_role" . }}
{{- end }}
{{- $_ := set $credentials "imdsv1_disabled" $c.ecsRamRole.imdsv1Disabled }}
{{- else }}
{{- $_ := set $credentials "ecs_metadata_disabled" true }}
{{- end }}
{{- with $c.roleSessionName }}
{{- $_ := set $credentials "role_session_name" . }}
{{- end }}
{{- with $c.sessionDuration }}
{{- $_ := set $credentials "session_duration" . }}
{{- end }}
{{- with $c.sts }}
{{- if .region }}
{{- $_ := set $credentials "sts_region" .region }}
{{- end }}
{{- if .vpcEndpoint }}
{{- $_ := set $credentials "vpc_endpoint" true }}
{{- end }}
{{- if .endpoint }}
{{- $_ := set $credentials "sts_endpoint" .endpoint }}
{{- end }}
{{- end }}
{{- $_ := set $config "credentials" $credentials }}
{{- /* Other accounts: [[accounts]], in the settings file's keys. */}}
{{- with .Values.accounts }}
{{- $accounts := list }}
{{- range . }}
{{- $account := dict "id" (toString .id) "role_arn" .roleArn }}
{{- if .externalId }}
{{- $_ := set $account "external_id" .externalId }}
{{- end }}
{{- $accounts = append $accounts $account }}
{{- end }}
{{- $_ := set $config "accounts" $accounts }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert" (printf "%s/tls/tls.crt" $dir) "key" (printf "%s/tls/tls.key" $dir) "require_client_cert" .Values.tls.requireClientCert }}
{{- if .Values.tls.clientCa }}
{{- $_ := set $tls "client_ca" (printf "%s/tls/ca.crt" $dir) }}
{{- end }}
{{- $_ := set $config "tls" $tls }}
{{- end }}
{{- toToml $config }}
{{- end }}
