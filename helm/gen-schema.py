# Generates helm/ecs-gateway/values.schema.json (kept in git; regenerate by hand when values change).
import json
def obj(props, required=(), extra=False, desc=None):
    o = {"type": "object", "properties": props, "additionalProperties": extra}
    if required: o["required"] = list(required)
    if desc: o["description"] = desc
    return o
S = lambda desc=None, **kw: dict({"type": "string"}, **({"description": desc} if desc else {}), **kw)
I = lambda mn=None, mx=None, desc=None: dict({"type": "integer"}, **({"minimum": mn} if mn is not None else {}), **({"maximum": mx} if mx is not None else {}), **({"description": desc} if desc else {}))
B = lambda desc=None: dict({"type": "boolean"}, **({"description": desc} if desc else {}))
N = lambda mn=None, mx=None: dict({"type": "number"}, **({"minimum": mn} if mn is not None else {}), **({"maximum": mx} if mx is not None else {}))
DUR = {"type": "string", "pattern": r"^([0-9]+(ns|us|ms|s|m|h|d) ?)+$", "description": "a duration: 500ms, 10s, 5m"}
ANYOBJ = {"type": "object"}
LIST_OBJ = {"type": "array", "items": {"type": "object"}}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
ROLE_NAME = r"^[A-Za-z0-9._-]{0,64}$"
ROLE_ARN = r"acs:ram::[0-9]+:role/[A-Za-z0-9._-]{1,64}"
schema = {
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "ecs-gateway chart values",
  **obj({
    "image": obj({"repository": S(minLength=1), "tag": S(), "digest": S(pattern=r"^(sha256:[0-9a-f]{64})?$"), "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}, ["repository"]),
    "imagePullSecrets": {"type": "array", "items": obj({"name": S(minLength=1)}, ["name"])},
    "nameOverride": S(), "fullnameOverride": S(),
    "replicaCount": I(1),
    "config": obj({
      "upstream": obj({"endpoint": S(pattern=r"^https?://"), "timeout": DUR, "connect_timeout": DUR, "attempt_timeout": DUR, "max_attempts": I(1, 10), "breaker_failures": I(1), "breaker_open_for": DUR}),
      "server": obj({"max_concurrent_calls": I(1), "max_concurrent_calls_per_caller": I(1), "max_concurrent_calls_per_unmapped_caller": I(1), "receive_timeout": DUR, "request_timeout": DUR, "reflection": B(), "max_unauthenticated_streams": I(1), "max_unauthenticated_streams_per_connection": I(1), "unauthenticated_idle_timeout": DUR}),
      "identity": obj({"trust_forwarded_client_cert": B(), "source_address_header": S("behind the sidecar, the header holding the caller's address; empty: x-forwarded-for, or the chart's EnvoyFilter's with mesh.istio.sourceAddressFilter", pattern=r"^[-!#$%&'*+.^_`|~0-9A-Za-z]*$"), "jwt": obj({"issuer": S(minLength=1), "audience": S(minLength=1), "jwks_url": S(pattern="^https://"), "jwks_file": S(minLength=1), "leeway": DUR, "jwks_refresh": DUR, "jwks_max_age": DUR})}),
      "policy": obj({"account_id": S("the Alibaba Cloud account owning the instances", pattern=r"^[0-9]+$"), "dependent_actions": {"type": "array", "items": obj({"action": S(pattern=r"^ecs:[A-Za-z]+$"), "requires": S(pattern=r"^ecs:[A-Za-z]+$"), "when": {"enum": ["always", "allocates_public_ip"]}}, ["action", "requires"])}}, ["account_id"]),
    }, ["policy"], desc="the gateway's settings file, in its keys; the chart sets listen, admin_listen, policy.dir, credentials (from `credentials`), accounts (from `accounts`), tls and server.shutdown_grace"),
    "shutdownGraceSeconds": I(1, 3600), "terminationExtraSeconds": I(1, 600), "preStopSleepSeconds": I(0, 120),
    "ports": obj({"grpc": I(1, 65535), "admin": I(1, 65535)}, ["grpc", "admin"]),
    "credentials": obj({
      "mode": {"enum": ["accessKey", "existingSecret", "rrsa", "ecsRamRole"], "description": "accessKey: the chart's Secret from accessKeyId/accessKeySecret (or, with existingSecret set, that Secret, as charts before `mode` read it); existingSecret: a credentials file in your Secret; rrsa: ACK's RAM Roles for Service Accounts; ecsRamRole: the node's instance RAM role"},
      "existingSecret": S("accessKey/existingSecret: a Secret holding an Alibaba Cloud credentials file"), "existingSecretKey": S(pattern=r"^[-._a-zA-Z0-9]+$"), "accessKeyId": S(), "accessKeySecret": S(), "securityToken": S(), "profile": S(minLength=1, pattern=r"^[A-Za-z0-9_.-]+$"),
      "rrsa": obj({"webhook": B("ACK's ack-pod-identity-webhook injects the role: the chart annotates the ServiceAccount with roleName and labels the pod"), "roleName": S("with the webhook: the RAM role's name", pattern=ROLE_NAME), "roleArn": S("without the webhook: acs:ram::<account>:role/<name>", pattern=f"^({ROLE_ARN})?$"), "oidcProviderArn": S("without the webhook: acs:ram::<account>:oidc-provider/ack-rrsa-<cluster ID>", pattern=r"^(acs:ram::[0-9]+:oidc-provider/[A-Za-z0-9._-]+)?$"), "tokenExpirationSeconds": I(600, 86400, "without the webhook: the projected token's lifetime")}),
      "ecsRamRole": obj({"roleName": S("the instance's RAM role; empty: the one the metadata server names", pattern=ROLE_NAME), "imdsv1Disabled": B("hardened mode (a metadata token) only")}),
      "roleSessionName": S("the STS session name (credentials.role_session_name); empty: ecs-gateway", pattern=r"^([A-Za-z0-9._@-]{2,64})?$"),
      "sessionDuration": dict(DUR, pattern=r"^(([0-9]+(ns|us|ms|s|m|h|d) ?)+)?$", description="the STS session's lifetime (credentials.session_duration, 15m..12h); empty: 1h"),
      "sts": obj({"region": S("sts.<region>.aliyuncs.com", pattern=r"^([a-z]+(-[a-z0-9]+)+)?$"), "vpcEndpoint": B("sts-vpc.<region>.aliyuncs.com (needs region)"), "endpoint": S("an STS endpoint of your own; a host name means https", pattern=r"^[^\s]*$")}),
    }, desc="how the gateway gets the credentials it signs with (docs/credentials.md); the chart renders them as the settings file's credentials.*"),
    "accounts": {"type": "array", "description": "other accounts, each a RAM role there assumed with STS AssumeRole; the settings file's [[accounts]]", "items": obj({"id": S("the account's ID (digits; quote it)", pattern=r"^[0-9]+$"), "roleArn": S("acs:ram::<id>:role/<name>", pattern=f"^{ROLE_ARN}$"), "externalId": S("the ExternalId the role's trust policy requires (sts:ExternalId)", pattern=r"^([A-Za-z0-9_+=,.@:/-]{2,})?$", maxLength=1224)}, ["id", "roleArn"])},
    "tls": obj({"enabled": B(), "secretName": S(), "clientCa": B(), "requireClientCert": B()}),
    "policies": obj({"existingConfigMap": S(), "files": STRMAP, "sample": B("install the demo's sample bundle"), "shadowConfigMap": S("a ConfigMap of candidate policies decided beside those in force, never enforced (shadow mode)")}),
    "otel": obj({"endpoint": S(), "protocol": {"enum": ["grpc", "http/protobuf"]}, "serviceName": S(minLength=1), "sampler": {"enum": ["parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio", "always_on", "always_off", "traceidratio"]}, "samplerArg": S(), "resourceAttributes": S()}),
    "log": obj({"level": S(minLength=1), "format": {"enum": ["json", "text"]}}),
    "extraEnv": {"type": "array", "items": obj({"name": S(minLength=1), "value": S(), "valueFrom": ANYOBJ}, ["name"])},
    "extraVolumes": LIST_OBJ, "extraVolumeMounts": LIST_OBJ,
    "serviceAccount": obj({"create": B(), "name": S(), "annotations": STRMAP, "automountServiceAccountToken": B()}),
    "podAnnotations": STRMAP, "podLabels": STRMAP,
    "podSecurityContext": ANYOBJ, "securityContext": ANYOBJ,
    "resources": obj({"requests": obj({"cpu": {"type": ["string", "number"]}, "memory": S()}), "limits": obj({"cpu": {"type": ["string", "number"]}, "memory": S()})}),
    "service": obj({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, "annotations": STRMAP}),
    "autoscaling": obj({"enabled": B(), "minReplicas": I(1), "maxReplicas": I(1), "targetCPUUtilizationPercentage": I(1, 100)}),
    "podDisruptionBudget": obj({"enabled": B(), "maxUnavailable": {"type": ["integer", "string"]}}),
    "topologySpread": obj({"enabled": B()}),
    "topologySpreadConstraints": LIST_OBJ,
    "nodeSelector": STRMAP, "tolerations": LIST_OBJ, "affinity": ANYOBJ, "priorityClassName": S(),
    "networkPolicy": obj({"enabled": B(), "grpcFrom": LIST_OBJ, "adminFrom": {"type": ["array", "null"], "items": {"type": "object"}, "description": "who may reach the admin port; null: the release's namespace, or monitoringNamespace"}, "monitoringNamespace": S("the namespace admitted to the admin port while adminFrom is null", pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$", maxLength=63), "extraEgress": LIST_OBJ}),
    "mesh": obj({"istio": obj({"sourceAddressFilter": B("an Istio EnvoyFilter overwriting x-ecs-gateway-source-address with the caller's address, read by the gateway")})}),
    "serviceMonitor": obj({"enabled": B(), "interval": S(), "scrapeTimeout": S(), "labels": STRMAP}),
    "prometheusRule": obj({"enabled": B(), "labels": STRMAP, "errorRatio": N(0, 1), "p99LatencySeconds": N(0), "shedRatio": N(0, 1), "denialsPerSecond": N(0)}),
    "dashboard": obj({"enabled": B(), "labels": STRMAP, "annotations": STRMAP}),
  }, ["image", "config", "ports", "credentials", "policies"]),
}
print(json.dumps(schema, indent=2))
