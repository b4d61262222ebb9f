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
  - the pod runs as non-root, read-only, with no capability, and no secret
    in its environment; terminationGracePeriodSeconds exceeds the gateway's
    shutdown grace.
With the default values, the effective settings must equal the gateway's own
defaults (`serve --check` on an empty settings file), but for what the chart
sets on purpose. Values that break the schema (a wrong type, an unknown key, a
missing account) and missing credentials must fail.
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
CHART_OWNED = {"policy.dir", "policy.account_id", "credentials", "credentials.file"}
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


def serve_check(config_text):
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(config_text)
        f.flush()
        # --settings-only: the files the settings name are the pod's.
        run = subprocess.run([BINARY, "serve", "--check", "--settings-only", "--config", f.name],
                             capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"})
    # `key = "value"`, then `  # from SOURCE` when not a default.
    settings = dict(line.split("  # from ", 1)[0].split(" = ", 1)
                    for line in run.stdout.splitlines() if " = " in line)
    return run.returncode, settings, run.stderr.strip()


def check_gateway_reads_it(case, rendered, values):
    config = find(rendered, "ConfigMap", "ecs-gateway") or find(rendered, "ConfigMap")
    code, settings, stderr = serve_check(config["data"]["config.toml"])
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
    env = json.dumps(container.get("env", []))
    if SECRET in env or "ACCESS_KEY" in env:
        fail(case, "a credential is in the pod's environment")


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
