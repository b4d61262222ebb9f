"""Checks the Helm chart with the real Helm engine (helm-python-sdk, Helm's Go
SDK) and the Kubernetes schemas (kubernetes-validate), and what it renders
with the gateway itself.

For every values file in helm/ecs-gateway/ci/ and a policy bundle given in
values:
  - strict `helm lint`;
  - render, then validate every manifest against the Kubernetes schemas of
    the newest version kubernetes-validate ships (strict: unknown fields
    fail); the Prometheus Operator's kinds and Istio's EnvoyFilter are
    checked for their required fields;
  - the rendered settings file must pass `ecs-gateway serve --check`, and
    the rendered policy bundle `ecs-gateway policy validate`;
  - the pod runs as non-root, read-only, with no capability, without a
    Kubernetes API token, and no secret in its environment (the only
    ALIBABA_CLOUD_* variables it may carry are RRSA's role and OIDC provider
    ARNs and token path); terminationGracePeriodSeconds exceeds the gateway's
    shutdown grace;
  - the credentials mode's pieces, and only those, render: the chart's Secret
    in accessKey mode only, a mounted credentials file in accessKey and
    existingSecret modes (an existingSecret under the default accessKey mode,
    as charts before `credentials.mode` said, is existingSecret mode); in rrsa
    mode the ServiceAccount's role-name annotation and the pod's injection
    label (ACK's webhook; with the variables it injects, `serve --check`
    reads RRSA), or without it a projected token for
    sts.aliyuncs.com mounted read-only and RRSA's three variables pointing at
    it; the NetworkPolicy lets HTTPS (ECS, STS) out in every mode, and the
    metadata server (100.100.100.200:80) only in ecsRamRole mode; the
    gateway's settings turn the metadata server off in every other mode, and
    `accounts` reach `serve --check`'s `accounts`.
With the default values, the effective settings must equal the gateway's own
defaults (`serve --check` on an empty settings file), but for what the chart
sets on purpose. Values that break the schema (a wrong type, an unknown key, a
missing account), missing credentials, an unknown credentials mode, a mode
without what it needs, another mode's values, and malformed or inconsistent
accounts must fail.
The NetworkPolicy admits one namespace, not the cluster, to the admin port by
default. Behind Istio, the EnvoyFilter overwrites a header on the gateway's
pods and the rendered settings read callers' addresses from it; mesh mode
without it is said by `serve --check`.

Usage: python check.py ECS_GATEWAY_BINARY   (run by helm/check.sh)
"""

import contextlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import helm_python as helm
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
CHART = HERE / "ecs-gateway"
ROOT = HERE.parent
BINARY = sys.argv[1]
KUBERNETES = kubernetes_validate.latest_version()
ACCOUNT = "1234567890123456"
SECRET = "chart-test-secret-value"
# Settings the chart sets on purpose (mount paths, the account, the secret).
CHART_OWNED = {"policy.dir", "policy.account_id", "credentials", "credentials.file",
               "credentials.ecs_metadata_disabled"}
# The credentials modes, and the ALIBABA_CLOUD_* variables the pod may carry:
# RRSA's, without ACK's webhook (ARNs and a path, no secret).
MODES = ("accessKey", "existingSecret", "rrsa", "ecsRamRole")
NON_SECRET_ENV = {"ALIBABA_CLOUD_ROLE_ARN", "ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "ALIBABA_CLOUD_OIDC_TOKEN_FILE"}
RRSA_TOKEN_DIR = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens"
RRSA_AUDIENCE = "sts.aliyuncs.com"
ROLE_ANNOTATION = "pod-identity.alibabacloud.com/role-name"
INJECTION_LABEL = "pod-identity.alibabacloud.com/injection"
METADATA_SERVER = "100.100.100.200/32"
# The header the chart's Istio EnvoyFilter overwrites, and what with: the
# address of the peer the sidecar accepted the connection from. (Without
# use_remote_address, as on Istio's inbound sidecar, Envoy infers
# DOWNSTREAM_REMOTE_ADDRESS from x-forwarded-for: the caller's choice.)
SOURCE_HEADER = "x-ecs-gateway-source-address"
SOURCE_VALUE = "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"
MESH_WARNING = "warning: identity.trust_forwarded_client_cert is on"
# Custom resources: kubernetes-validate has no schema for them; their required
# fields are checked instead.
CRD_REQUIRED = {
    "ServiceMonitor": ("selector", "endpoints"),
    "PrometheusRule": ("groups",),
    "EnvoyFilter": ("workloadSelector", "configPatches"),
}
CRD_API_VERSIONS = {"ServiceMonitor": "monitoring.coreos.com/v1", "PrometheusRule": "monitoring.coreos.com/v1",
                    "EnvoyFilter": "networking.istio.io/v1alpha3"}

failures = []


def fail(case, message):
    failures.append(f"{case}: {message}")
    print(f"  FAIL {message}")


def values_of(name):
    return yaml.safe_load((CHART / "ci" / name).read_text()) or {}


def policy_bundle():
    """A bundle given in values: the shipped schema, principals and entities,
    one guardrail of the operator's own and the shipped identity policies."""
    policies = ROOT / "policies"
    files = {
        "schema.cedarschema": (policies / "schema.cedarschema").read_text(),
        "principals.toml": (policies / "principals.toml").read_text(),
        "entities.json": (policies / "entities.json").read_text(),
        "control/baseline.cedar": '@id("control.baseline")\npermit (principal, action, resource);\n'
        '@id("control.only-hangzhou")\nforbid (principal, action, resource)\n'
        'unless { resource.region == "cn-hangzhou" };\n',
    }
    for path in sorted((policies / "identity").glob("*.cedar")):
        files[f"identity/{path.name}"] = path.read_text()
    return {
        "config": {"policy": {"account_id": ACCOUNT}},
        "credentials": {"existingSecret": "ecs-credentials"},
        "policies": {"files": files},
    }


def documents(rendered):
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield path, doc


def validate_manifests(case, rendered):
    kinds = []
    for path, doc in documents(rendered):
        kinds.append(doc["kind"])
        if doc["kind"] in CRD_REQUIRED:
            if doc["apiVersion"] != CRD_API_VERSIONS[doc["kind"]]:
                fail(case, f"{path}: {doc['kind']} is {doc['apiVersion']}, not {CRD_API_VERSIONS[doc['kind']]}")
            if not {"name", "namespace"} <= doc.get("metadata", {}).keys():
                fail(case, f"{path}: {doc['kind']} lacks metadata.name or metadata.namespace")
            missing = [k for k in CRD_REQUIRED[doc["kind"]] if k not in doc.get("spec", {})]
            if missing:
                fail(case, f"{path}: {doc['kind']} lacks spec.{missing}")
            for group in doc.get("spec", {}).get("groups", []):
                for rule in group["rules"]:
                    if not {"alert", "expr"} <= rule.keys():
                        fail(case, f"{path}: a rule lacks alert or expr: {rule}")
            for patch in doc.get("spec", {}).get("configPatches", []):
                if not ({"applyTo", "match", "patch"} <= patch.keys() and {"operation", "value"} <= patch["patch"].keys()):
                    fail(case, f"{path}: a config patch lacks applyTo, match or patch.operation/value: {patch}")
            continue
        if doc["apiVersion"].startswith(("monitoring.coreos.com/", "networking.istio.io/")):
            fail(case, f"{path}: {doc['kind']} ({doc['apiVersion']}) is a custom resource check.py does not know")
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(case, f"{path}: {doc['kind']} is not valid Kubernetes {KUBERNETES}: {e.message} at {list(e.path)}")
    return kinds


def find(rendered, kind, suffix=""):
    for _, doc in documents(rendered):
        if doc["kind"] == kind and doc["metadata"]["name"].endswith(suffix):
            return doc
    return None


def admin_peers(rendered):
    """The peers the NetworkPolicy admits to the admin port; None when a rule
    for it has no `from` (everyone)."""
    peers = []
    for rule in find(rendered, "NetworkPolicy")["spec"].get("ingress") or []:
        if any(port.get("port") == "admin" for port in rule.get("ports", [])):
            if not rule.get("from"):
                return None
            peers += rule["from"]
    return peers


def every_namespace(peer):
    """Whether a NetworkPolicyPeer admits pods of every namespace (an empty
    namespaceSelector) or any address (an ipBlock)."""
    selector = peer.get("namespaceSelector")
    if selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return True
    return "ipBlock" in peer


def namespaces_named(peers):
    return [p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") for p in peers]


def check_envoy_filter(case, rendered):
    """The EnvoyFilter selects exactly the gateway's pods and overwrites the
    source header on their inbound virtual hosts."""
    envoy_filter = find(rendered, "EnvoyFilter")
    if envoy_filter is None:
        fail(case, "no EnvoyFilter rendered")
        return
    deployment = find(rendered, "Deployment")["spec"]
    selector = envoy_filter["spec"]["workloadSelector"]["labels"]
    pod_labels = deployment["template"]["metadata"]["labels"]
    if selector != deployment["selector"]["matchLabels"] or not selector.items() <= pod_labels.items():
        fail(case, f"the EnvoyFilter's workloadSelector {selector} is not the gateway's pods' selector")
    expected = {
        "applyTo": "VIRTUAL_HOST",
        "match": {"context": "SIDECAR_INBOUND"},
        "patch": {"operation": "MERGE", "value": {"request_headers_to_add": [{
            "header": {"key": SOURCE_HEADER, "value": SOURCE_VALUE},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }]}},
    }
    if envoy_filter["spec"]["configPatches"] != [expected]:
        fail(case, f"the EnvoyFilter's patches are not {expected}: {envoy_filter['spec']['configPatches']}")
    else:
        print(f"  EnvoyFilter: the inbound sidecar of {selector} overwrites {SOURCE_HEADER} with {SOURCE_VALUE}")


def serve_check(config_text, env=None):
    """`serve --check --settings-only` on a settings file, with the gateway's
    variables of `env` (the pod's, for RRSA's)."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(config_text)
        f.flush()
        # --settings-only: the files the settings name are the pod's.
        run = subprocess.run([BINARY, "serve", "--check", "--settings-only", "--config", f.name],
                             capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", **(env or {})})
    # `key = "value"`, then `  # from SOURCE` when not a default.
    settings = dict(line.split("  # from ", 1)[0].split(" = ", 1)
                    for line in run.stdout.splitlines() if " = " in line)
    return run.returncode, settings, run.stderr.strip()


def pod_credentials_env(rendered):
    """The pod's literal ALIBABA_CLOUD_* variables (RRSA's, without the webhook)."""
    container = find(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", [])
            if e["name"].startswith("ALIBABA_CLOUD_") and "value" in e}


def check_gateway_reads_it(case, rendered, values):
    config = find(rendered, "ConfigMap", "ecs-gateway") or find(rendered, "ConfigMap")
    code, settings, stderr = serve_check(config["data"]["config.toml"], pod_credentials_env(rendered))
    if code != 0:
        fail(case, f"the rendered config.toml is refused by the gateway: {stderr}")
        return settings
    grace = int(settings["server.shutdown_grace"].strip('"').rstrip("s"))
    pod = find(rendered, "Deployment")["spec"]["template"]["spec"]
    if pod["terminationGracePeriodSeconds"] <= grace:
        fail(case, f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} <= shutdown_grace {grace}")
    policies = find(rendered, "ConfigMap", "-policies")
    if policies is not None:
        with tempfile.TemporaryDirectory() as tmp:
            for key, text in policies["data"].items():
                (pathlib.Path(tmp) / key).write_text(text)
            run = subprocess.run([BINARY, "policy", "validate", "--policies", tmp], capture_output=True, text=True)
            if run.returncode != 0:
                fail(case, f"the rendered policies do not validate: {run.stdout}{run.stderr}")
            else:
                print(f"  policies: {run.stdout.strip()}")
    return settings


def check_pod_is_locked_down(case, rendered):
    pod = find(rendered, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    sc = container["securityContext"]
    expectations = {
        "runAsNonRoot": pod["securityContext"].get("runAsNonRoot") and sc.get("runAsNonRoot"),
        "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem"),
        "no privilege escalation": sc.get("allowPrivilegeEscalation") is False,
        "all capabilities dropped": sc.get("capabilities", {}).get("drop") == ["ALL"],
        "seccomp RuntimeDefault": pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "a checksum annotation": "checksum/config" in find(rendered, "Deployment")["spec"]["template"]["metadata"]["annotations"],
    }
    for what, ok in expectations.items():
        if not ok:
            fail(case, f"the pod lacks {what}")
    if pod.get("automountServiceAccountToken") is not False:
        fail(case, f"the pod mounts a Kubernetes API token (automountServiceAccountToken: "
                   f"{pod.get('automountServiceAccountToken')})")
    account = find(rendered, "ServiceAccount")
    if account is not None and account.get("automountServiceAccountToken") is not False:
        fail(case, "the ServiceAccount mounts a Kubernetes API token")
    env = container.get("env", [])
    text = json.dumps(env)
    if SECRET in text or "ACCESS_KEY" in text or "SECURITY_TOKEN" in text or "secretKeyRef" in text \
            or "envFrom" in container:
        fail(case, "a credential is in the pod's environment")
    others = sorted(e["name"] for e in env if e["name"].startswith("ALIBABA_CLOUD_") and e["name"] not in NON_SECRET_ENV)
    if others:
        fail(case, f"the pod's environment has credentials variables beyond RRSA's ARNs and token path: {others}")


def merged(defaults, values):
    """values over the chart's defaults, as Helm merges them."""
    out = dict(defaults)
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def credentials_mode(values):
    """The mode the chart must render: credentials.mode, but an existingSecret
    under the default accessKey mode (charts before `mode`) is existingSecret."""
    c = merged(yaml.safe_load((CHART / "values.yaml").read_text()), values)["credentials"]
    mode = c.get("mode") or "accessKey"
    return ("existingSecret" if mode == "accessKey" and c.get("existingSecret") else mode), c


def egress_rules(rendered):
    policy = find(rendered, "NetworkPolicy")
    return None if policy is None else policy["spec"].get("egress") or []


def allows(rule, port, cidr=None):
    """Whether an egress rule lets TCP `port` out to `cidr` (None: to any
    address, a rule without `to`)."""
    ports = rule.get("ports")
    if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports):
        return False
    peers = rule.get("to")
    if cidr is None:
        return not peers
    return not peers or any(p.get("ipBlock", {}).get("cidr") == cidr for p in peers)


def check_credentials(case, rendered, values, settings):
    """The mode's pieces render, and only those; the gateway reads the mode
    the values chose; `accounts` reach `serve --check`."""
    mode, c = credentials_mode(values)
    rrsa = c["rrsa"]
    deployment = find(rendered, "Deployment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    labels = pod["metadata"].get("labels", {})
    account = find(rendered, "ServiceAccount")
    annotations = (account or {}).get("metadata", {}).get("annotations") or {}
    problems = []

    chart_secret = find(rendered, "Secret", "-credentials")
    if (chart_secret is not None) != (mode == "accessKey"):
        problems.append(f"the chart's credentials Secret {'renders' if chart_secret else 'is missing'} in {mode} mode")
    from_secret = mode in ("accessKey", "existingSecret")
    if ("credentials" in volumes) != from_secret or ("credentials" in mounts) != from_secret:
        problems.append(f"a credentials file is {'missing' if from_secret else 'mounted'} in {mode} mode")
    elif mode == "existingSecret" and volumes["credentials"]["secret"]["secretName"] != c["existingSecret"]:
        problems.append(f"the credentials file is not from {c['existingSecret']}: {volumes['credentials']}")

    webhook = mode == "rrsa" and rrsa["webhook"]
    projected = mode == "rrsa" and not rrsa["webhook"]
    if webhook:
        if annotations.get(ROLE_ANNOTATION) != rrsa["roleName"]:
            problems.append(f"the ServiceAccount's {ROLE_ANNOTATION} is {annotations.get(ROLE_ANNOTATION)!r}, "
                            f"not {rrsa['roleName']!r}")
        if labels.get(INJECTION_LABEL) != "on":
            problems.append(f"the pod lacks the label {INJECTION_LABEL}: \"on\"")
    elif ROLE_ANNOTATION in annotations or INJECTION_LABEL in labels:
        problems.append(f"the webhook's annotation or label renders in {mode} mode{'' if mode != 'rrsa' else ' without the webhook'}")
    token = volumes.get("rrsa-oidc-token")
    if projected:
        sources = (token or {}).get("projected", {}).get("sources", [])
        expected = {"audience": RRSA_AUDIENCE, "expirationSeconds": rrsa["tokenExpirationSeconds"], "path": "token"}
        mount = mounts.get("rrsa-oidc-token", {})
        if [s.get("serviceAccountToken") for s in sources] != [expected]:
            problems.append(f"the projected token is not {expected}: {sources}")
        if mount.get("mountPath") != RRSA_TOKEN_DIR or mount.get("readOnly") is not True:
            problems.append(f"the token is not mounted read-only at {RRSA_TOKEN_DIR}: {mount}")
        want = {"ALIBABA_CLOUD_ROLE_ARN": rrsa["roleArn"], "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": rrsa["oidcProviderArn"],
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE": f"{RRSA_TOKEN_DIR}/token"}
        got = {k: env.get(k) for k in want}
        if got != want:
            problems.append(f"RRSA's variables are not {want}: {got}")
    else:
        if token is not None or "rrsa-oidc-token" in mounts:
            problems.append(f"a projected RRSA token renders in {mode} mode{' with the webhook' if webhook else ''}")
        if NON_SECRET_ENV & env.keys():
            problems.append(f"RRSA's variables render in {mode} mode{' with the webhook' if webhook else ''}")

    egress = egress_rules(rendered)
    if egress is not None:
        if not any(allows(r, 443) for r in egress):
            problems.append(f"the NetworkPolicy does not let HTTPS (ECS, STS) out: {egress}")
        metadata = [r for r in egress if allows(r, 80, METADATA_SERVER)]
        if mode == "ecsRamRole" and not metadata:
            problems.append(f"the NetworkPolicy does not let the pod reach the metadata server {METADATA_SERVER}:80")
        if mode != "ecsRamRole" and metadata:
            problems.append(f"the NetworkPolicy lets the pod reach the metadata server in {mode} mode: {metadata}")

    if settings:
        off = settings.get("credentials.ecs_metadata_disabled", "").strip('"')
        if (off == "true") == (mode == "ecsRamRole"):
            problems.append(f"credentials.ecs_metadata_disabled is {off} in {mode} mode")
        if mode == "ecsRamRole":
            role = settings.get("credentials.ecs_ram_role", "").strip('"')
            imdsv1 = settings.get("credentials.imdsv1_disabled", "").strip('"')
            if role != c["ecsRamRole"]["roleName"] or imdsv1 != str(c["ecsRamRole"]["imdsv1Disabled"]).lower():
                problems.append(f"the gateway reads ecs_ram_role {role!r}, imdsv1_disabled {imdsv1}")
        ids = [str(a["id"]) for a in values.get("accounts", [])]
        read = re.findall(r"[0-9]+", settings.get("accounts", ""))
        if read != ids:
            problems.append(f"serve --check reads accounts = {settings.get('accounts')}, not {ids}")
    if settings and webhook:
        # What the webhook injects: the gateway must then read RRSA, not the
        # node's role or nothing.
        account_id = merged(yaml.safe_load((CHART / "values.yaml").read_text()), values)["config"]["policy"]["account_id"]
        role = f"acs:ram::{account_id}:role/{rrsa['roleName']}"
        injected = {"ALIBABA_CLOUD_ROLE_ARN": role,
                    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": f"acs:ram::{account_id}:oidc-provider/ack-rrsa-c0123",
                    "ALIBABA_CLOUD_OIDC_TOKEN_FILE": f"{RRSA_TOKEN_DIR}/token"}
        config = find(rendered, "ConfigMap", "ecs-gateway")["data"]["config.toml"]
        code, injected_settings, stderr = serve_check(config, injected)
        if code != 0 or not injected_settings.get("credentials", "").startswith(f'"RRSA: role {role} '):
            problems.append(f"with the webhook's variables, serve --check reads credentials = "
                            f"{injected_settings.get('credentials')} {stderr}")
        else:
            settings = {**settings, "credentials": injected_settings["credentials"]}
    for problem in problems:
        fail(case, problem)
    if not problems:
        what = {"accessKey": "the chart's Secret as the credentials file",
                "existingSecret": f"the credentials file from the Secret {c['existingSecret']}",
                "rrsa": "ACK's webhook (ServiceAccount annotation, pod label)" if webhook
                else f"a projected token for {RRSA_AUDIENCE} and RRSA's variables",
                "ecsRamRole": f"the metadata server, reachable on port 80"}[mode]
        print(f"  credentials ({mode}): {what}; serve --check{' with what it injects' if webhook else ''}: "
              f"credentials = {settings.get('credentials')}"
              + (f", accounts = {settings.get('accounts')}" if values.get("accounts") else ""))


@contextlib.contextmanager
def quiet_helm():
    """Helm's Go logger writes to the process's stderr (a line per symlinked
    policy file, which the chart uses on purpose): silence it during a call."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def render(chart, values, case):
    with quiet_helm():
        lint = helm.lint(str(CHART), values, strict=True)
    problems = [m for m in lint["messages"] if m["severity"] >= 2] + [{"error": e} for e in lint["errors"]]
    if problems:
        fail(case, f"helm lint --strict: {problems}")
    with quiet_helm():
        return chart.render(values, name="gw", namespace="ecs", is_install=True)


def check_schema_keys_are_settings(schema):
    """Every key the schema allows under `config` is a setting the gateway
    reads (`serve --check` prints every one, by file key)."""
    _, defaults, _ = serve_check("")
    keys, pending = [], [("", schema["properties"]["config"])]
    while pending:
        prefix, node = pending.pop()
        for name, child in node.get("properties", {}).items():
            if child.get("type") == "object" and "properties" in child:
                pending.append((f"{prefix}{name}.", child))
            else:
                keys.append(prefix + name)
    unknown = sorted(k for k in keys if k not in defaults)
    if unknown:
        fail("schema", f"values.schema.json allows config keys the gateway does not read: {unknown}")
    else:
        print(f"schema: its {len(keys)} config keys are all settings of the gateway")


def main():
    helm.disable_logging()
    generated = subprocess.run([sys.executable, str(HERE / "gen-schema.py")], capture_output=True, text=True, check=True).stdout
    if json.loads(generated) != json.loads((CHART / "values.schema.json").read_text()):
        fail("schema", "values.schema.json differs from helm/gen-schema.py's output: regenerate it")
    print(f"Helm SDK {helm.helm_sdk_version()}; Kubernetes schemas {KUBERNETES} (strict)")
    check_schema_keys_are_settings(json.loads(generated))
    cases = {p.name: values_of(p.name) for p in sorted((CHART / "ci").glob("*.yaml"))}
    cases["policy bundle in values"] = policy_bundle()
    with quiet_helm():
        chart = helm.Chart.load(str(CHART))
    with chart:
        for case, values in cases.items():
            print(f"{case}:")
            try:
                rendered = render(chart, values, case)
            except helm.HelmError as e:
                fail(case, f"does not render: {e}")
                continue
            if case == "default-values.yaml":
                rendered_default = rendered
            kinds = validate_manifests(case, rendered)
            print(f"  {len(kinds)} manifests valid: {', '.join(sorted(kinds))}")
            check_pod_is_locked_down(case, rendered)
            settings = check_gateway_reads_it(case, rendered, values)
            check_credentials(case, rendered, values, settings)
            if case == "default-values.yaml" and settings:
                _, defaults, _ = serve_check("")
                differ = {k: (settings.get(k), v) for k, v in defaults.items()
                          if k not in CHART_OWNED and settings.get(k) != v}
                if differ:
                    fail(case, f"chart defaults differ from the gateway's (chart, gateway): {differ}")
                else:
                    print(f"  effective settings equal the gateway's defaults ({len(defaults) - len(CHART_OWNED & defaults.keys())} compared)")

        base = cases["default-values.yaml"]
        print("NetworkPolicy and mesh checks:")
        with quiet_helm():
            closed = chart.render({**base, "networkPolicy": {"grpcFrom": [], "adminFrom": []}}, name="gw", namespace="ecs")
        rules = find(closed, "NetworkPolicy")["spec"].get("ingress") or []
        if rules:
            fail("empty grpcFrom", f"an empty peer list must admit no one, got {rules}")
        else:
            print("  empty grpcFrom/adminFrom: no ingress rule (admits no one)")
        with quiet_helm():
            mesh = chart.render(values_of("existing-secret-values.yaml"), name="gw", namespace="ecs")
        env = {e["name"]: e for e in find(mesh, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
        if env.get("ECS_GATEWAY_LISTEN", {}).get("value") != "$(POD_IP):50051":
            fail("mesh", f"behind a mesh the gateway must listen on the pod IP only: {env.get('ECS_GATEWAY_LISTEN')}")
        else:
            print("  mesh: listens on $(POD_IP) only")
        code, settings, stderr = serve_check(find(mesh, "ConfigMap", "ecs-gateway")["data"]["config.toml"])
        if code != 0 or settings.get("identity.source_address_header") != '"x-forwarded-for"' or MESH_WARNING not in stderr:
            fail("mesh without the EnvoyFilter", f"serve --check must read x-forwarded-for and warn: "
                                                 f"{settings.get('identity.source_address_header')}, {stderr!r}")
        elif find(mesh, "EnvoyFilter") is not None:
            fail("mesh without the EnvoyFilter", "an EnvoyFilter rendered, though mesh.istio.sourceAddressFilter is off")
        else:
            print(f"  mesh without the EnvoyFilter: serve --check reads x-forwarded-for and warns ({MESH_WARNING} ...)")
        with quiet_helm():
            istio = chart.render(values_of("istio-values.yaml"), name="gw", namespace="ecs")
        check_envoy_filter("istio", istio)
        code, settings, stderr = serve_check(find(istio, "ConfigMap", "ecs-gateway")["data"]["config.toml"])
        if code != 0 or settings.get("identity.source_address_header") != f'"{SOURCE_HEADER}"' or "warning" in stderr:
            fail("istio", f"serve --check must read {SOURCE_HEADER} without a warning: "
                          f"{settings.get('identity.source_address_header')}, {stderr!r}")
        else:
            print(f"  istio: serve --check reads identity.source_address_header = \"{SOURCE_HEADER}\", no warning")
        own = values_of("istio-values.yaml")
        own["config"]["identity"]["source_address_header"] = "x-mesh-peer-address"
        with quiet_helm():
            chosen = chart.render(own, name="gw", namespace="ecs")
        code, settings, stderr = serve_check(find(chosen, "ConfigMap", "ecs-gateway")["data"]["config.toml"])
        if code != 0 or settings.get("identity.source_address_header") != '"x-mesh-peer-address"':
            fail("istio, a header of one's own", f"the user's header must win: {settings.get('identity.source_address_header')} {stderr}")
        else:
            print("  istio with config.identity.source_address_header set: the user's header is read")

        peers = admin_peers(rendered_default)
        if peers is None or not peers or any(every_namespace(p) for p in peers) or namespaces_named(peers) != ["ecs"]:
            fail("admin port", f"by default only the release's namespace may reach the admin port, got {peers}")
        else:
            print("  admin port by default: the release's namespace only (kubernetes.io/metadata.name: ecs)")
        with quiet_helm():
            monitored = chart.render({**base, "networkPolicy": {"monitoringNamespace": "monitoring"}}, name="gw", namespace="ecs")
        peers = admin_peers(monitored)
        if peers is None or namespaces_named(peers) != ["monitoring"]:
            fail("admin port", f"with monitoringNamespace only that namespace may reach the admin port, got {peers}")
        else:
            print("  admin port with networkPolicy.monitoringNamespace: that namespace only")
        anyone = [{"namespaceSelector": {}}]
        with quiet_helm():
            overridden = chart.render({**base, "networkPolicy": {"monitoringNamespace": "monitoring", "adminFrom": anyone}},
                                      name="gw", namespace="ecs")
        if admin_peers(overridden) != anyone:
            fail("admin port", f"an explicit adminFrom must replace the default, got {admin_peers(overridden)}")
        else:
            print("  admin port with an explicit adminFrom: exactly those peers")
        with quiet_helm():
            shadowed = chart.render({**base, "policies": {**base.get("policies", {}), "shadowConfigMap": "candidate"}},
                                    name="gw", namespace="ecs")
        code, settings, stderr = serve_check(find(shadowed, "ConfigMap", "ecs-gateway")["data"]["config.toml"])
        pod = find(shadowed, "Deployment")["spec"]["template"]["spec"]
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v.get("configMap", {}).get("name") for v in pod["volumes"]}
        if code != 0 or volumes.get("shadow-policies") != "candidate" or \
                settings.get("policy.shadow_dir", "").strip('"') != mounts.get("shadow-policies"):
            fail("shadow", f"policy.shadow_dir {settings.get('policy.shadow_dir')} must be the mounted ConfigMap "
                           f"{mounts.get('shadow-policies')} ({volumes.get('shadow-policies')}): {stderr}")
        else:
            print(f"  shadow mode: ConfigMap candidate mounted at {mounts['shadow-policies']} and read as policy.shadow_dir")
        broken = {
            "a wrong type": {**base, "replicaCount": "two"},
            "an unknown key": {**base, "replicas": 3},
            "a misspelt setting": {**base, "config": {"policy": {"account_id": ACCOUNT}, "upstream": {"timout": "5s"}}},
            "no account": {**base, "config": {"policy": {"account_id": ""}}},
            "no credentials": {k: v for k, v in base.items() if k != "credentials"},
            "TLS without its secret": {**base, "tls": {"enabled": True}},
            "TLS and a trusted forwarded certificate": {
                **base,
                "config": {"policy": {"account_id": ACCOUNT}, "identity": {"trust_forwarded_client_cert": True}},
                "tls": {"enabled": True, "secretName": "tls"},
            },
            "a credential in extraEnv": {**base, "extraEnv": [{"name": "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "value": "x"}]},
            "no policies of one's own": {**base, "policies": {}},
            "alert rules without the scrape they select": {**base, "prometheusRule": {"enabled": True}},
            "a malformed Secret key": {**base, "credentials": {**base["credentials"], "existingSecretKey": "a b: c"}},
            "the EnvoyFilter outside mesh mode": {**base, "mesh": {"istio": {"sourceAddressFilter": True}}},
            "the EnvoyFilter with x-forwarded-for read": {
                **base, "mesh": {"istio": {"sourceAddressFilter": True}},
                "config": {"policy": {"account_id": ACCOUNT},
                           "identity": {"trust_forwarded_client_cert": True, "source_address_header": "X-Forwarded-For"}},
            },
            "a source header that is no header name": {
                **base, "config": {"policy": {"account_id": ACCOUNT}, "identity": {"source_address_header": "x source: 1"}}},
            "a monitoring namespace that is no name": {**base, "networkPolicy": {"monitoringNamespace": "Monitoring NS"}},
            "an unknown credentials mode": {**base, "credentials": {"mode": "oidc"}},
            "existingSecret mode without its Secret": {**base, "credentials": {"mode": "existingSecret"}},
            "rrsa with the webhook and no role name": {**base, "credentials": {"mode": "rrsa"}},
            "rrsa without the webhook and no role ARN": {**base, "credentials": {"mode": "rrsa", "rrsa": {
                "webhook": False, "oidcProviderArn": "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c01"}}},
            "rrsa without the webhook and no OIDC provider": {**base, "credentials": {"mode": "rrsa", "rrsa": {
                "webhook": False, "roleArn": "acs:ram::1234567890123456:role/ecs-gateway"}}},
            "an RRSA role ARN that is no RAM role": {**base, "credentials": {"mode": "rrsa", "rrsa": {
                "webhook": False, "roleArn": "arn:aws:iam::123456789012:role/x",
                "oidcProviderArn": "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c01"}}},
            "an AccessKey left in values under rrsa": {**base, "credentials": {
                "mode": "rrsa", "rrsa": {"roleName": "ecs-gateway"}, "accessKeyId": "LTAI5tChartTestKey",
                "accessKeySecret": SECRET}},
            "an existing Secret left in values under ecsRamRole": {**base, "credentials": {
                "mode": "ecsRamRole", "existingSecret": "ecs-gateway-credentials"}},
            "an RRSA role under ecsRamRole mode": {**base, "credentials": {
                "mode": "ecsRamRole", "rrsa": {"roleName": "ecs-gateway"}}},
            "an instance role name under rrsa mode": {**base, "credentials": {
                "mode": "rrsa", "rrsa": {"roleName": "ecs-gateway"}, "ecsRamRole": {"roleName": "worker"}}},
            "the STS VPC endpoint without a region": {**base, "credentials": {
                **base["credentials"], "sts": {"vpcEndpoint": True}}},
            "an account ID that is no number": {**base, "accounts": [
                {"id": "prod", "roleArn": "acs:ram::2234567890123456:role/ecs-gateway"}]},
            "an account ID given as a number": {**base, "accounts": [
                {"id": 2234567890123456, "roleArn": "acs:ram::2234567890123456:role/ecs-gateway"}]},
            "an account without its role": {**base, "accounts": [{"id": "2234567890123456"}]},
            "an account role that is no RAM role ARN": {**base, "accounts": [
                {"id": "2234567890123456", "roleArn": "acs:ram::2234567890123456:user/ecs-gateway"}]},
            "an account role in another account": {**base, "accounts": [
                {"id": "2234567890123456", "roleArn": "acs:ram::3234567890123456:role/ecs-gateway"}]},
            "an account listed twice": {**base, "accounts": [
                {"id": "2234567890123456", "roleArn": "acs:ram::2234567890123456:role/a"},
                {"id": "2234567890123456", "roleArn": "acs:ram::2234567890123456:role/b"}]},
            "the gateway's own account in accounts": {**base, "accounts": [
                {"id": ACCOUNT, "roleArn": f"acs:ram::{ACCOUNT}:role/ecs-gateway"}]},
            "an account key the gateway does not read": {**base, "accounts": [
                {"id": "2234567890123456", "roleArn": "acs:ram::2234567890123456:role/ecs-gateway", "region": "cn-hangzhou"}]},
        }
        print("values that must fail:")
        for what, values in broken.items():
            try:
                with quiet_helm():
                    chart.render(values, name="gw", namespace="ecs")
                fail(what, "rendered, but must fail")
            except helm.HelmError as e:
                print(f"  {what}: refused ({type(e).__name__}: {str(e).splitlines()[-1].strip()})")
    if failures:
        print(f"\n{len(failures)} failure(s):")
        for f in failures:
            print(f"  {f}")
        return 1
    print("\nHelm chart: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
