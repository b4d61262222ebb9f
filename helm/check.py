"""Checks the Helm chart with the real Helm engine (helm-python-sdk, Helm's Go
SDK) and the Kubernetes schemas (kubernetes-validate), and what it renders
with the gateway itself.

For every values file in helm/ecs-gateway/ci/ and a policy bundle given in
values:
  - strict `helm lint`;
  - render, then validate every manifest against the Kubernetes schemas of
    the newest version kubernetes-validate ships (strict: unknown fields
    fail); the Prometheus Operator's kinds are checked for their required
    fields;
  - the rendered settings file must pass `ecs-gateway serve --check`, and
    the rendered policy bundle `ecs-gateway policy validate`;
  - the pod runs as non-root, read-only, with no capability, and no secret
    in its environment; terminationGracePeriodSeconds exceeds the gateway's
    shutdown grace.
With the default values, the effective settings must equal the gateway's own
defaults (`serve --check` on an empty settings file), but for what the chart
sets on purpose. Values that break the schema (a wrong type, an unknown key, a
missing account) and missing credentials must fail.

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
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            required = {"ServiceMonitor": ("selector", "endpoints"), "PrometheusRule": ("groups",)}
            missing = [k for k in required[doc["kind"]] if k not in doc.get("spec", {})]
            if missing:
                fail(case, f"{path}: {doc['kind']} lacks spec.{missing}")
            for group in doc.get("spec", {}).get("groups", []):
                for rule in group["rules"]:
                    if not {"alert", "expr"} <= rule.keys():
                        fail(case, f"{path}: a rule lacks alert or expr: {rule}")
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


def serve_check(config_text):
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(config_text)
        f.flush()
        run = subprocess.run([BINARY, "serve", "--check", "--config", f.name], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"})
    settings = dict(line.split(" = ", 1) for line in run.stdout.splitlines() if " = " in line)
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


def main():
    helm.disable_logging()
    generated = subprocess.run([sys.executable, str(HERE / "gen-schema.py")], capture_output=True, text=True, check=True).stdout
    if json.loads(generated) != json.loads((CHART / "values.schema.json").read_text()):
        fail("schema", "values.schema.json differs from helm/gen-schema.py's output: regenerate it")
    print(f"Helm SDK {helm.helm_sdk_version()}; Kubernetes schemas {KUBERNETES} (strict)")
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
