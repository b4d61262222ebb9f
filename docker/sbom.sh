#!/usr/bin/env bash
# The image's software bill of materials: a CycloneDX JSON document of the
# Rust crates in the gateway, as docker/build-binary.sh builds it (the
# default features, every transitive dependency but build tools, the host's
# target), by cargo-cyclonedx. It is built once into ECS_GATEWAY_TOOLS (default
# /tmp/ecs-gateway-tools), outside the clone, as .ci/deny.sh builds
# cargo-deny. The document is checked before it is written to OUT: it
# describes ecs-gateway at Cargo.toml's version, lists each of its
# dependencies, and every crate it lists is in Cargo.lock at that version.
# CI writes it next to the image's archive and hands it to
# docker/build-image.sh, which puts it in the image at
# /usr/share/doc/ecs-gateway/sbom.cdx.json.
# Usage: docker/sbom.sh OUT
set -euo pipefail
out="$(realpath -m "${1:?usage: docker/sbom.sh OUT}")"
cd "$(dirname "$0")/.."
tools="${ECS_GATEWAY_TOOLS:-/tmp/ecs-gateway-tools}"
version="0.5.9"
bin="$tools/cargo-cyclonedx-$version/bin"
if [ ! -x "$bin/cargo-cyclonedx" ]; then
    CARGO_TARGET_DIR="$tools/cargo-cyclonedx-build" \
        cargo install --quiet --locked "cargo-cyclonedx@$version" --root "$tools/cargo-cyclonedx-$version"
    rm -rf "$tools/cargo-cyclonedx-build"
fi

# cargo-cyclonedx writes beside Cargo.toml; the name is this run's own, and
# the file leaves the clone at once.
name="sbom-$$"
trap 'rm -f "$name.json"' EXIT
# --all: every transitive crate; --no-build-deps: not build.rs's tools, which
# the binary does not carry; the target is the host's by default.
PATH="$bin:$PATH" cargo cyclonedx --quiet --format json --spec-version 1.5 \
    --all --no-build-deps --override-filename "$name"
if [ ! -f "$name.json" ]; then
    echo "sbom: cargo-cyclonedx $version wrote no $name.json beside Cargo.toml" >&2
    exit 1
fi
python3 - "$name.json" << 'EOF'
import json, sys, tomllib

with open(sys.argv[1], encoding="utf-8") as f:
    bom = json.load(f)
with open("Cargo.toml", "rb") as f:
    manifest = tomllib.load(f)
with open("Cargo.lock", "rb") as f:
    locked = {(p["name"], p["version"]) for p in tomllib.load(f)["package"]}
package = manifest["package"]
root = bom.get("metadata", {}).get("component", {})
components = {(c.get("name"), c.get("version")) for c in bom.get("components", [])}
default = set(manifest.get("features", {}).get("default", []))
enabled = {f[len("dep:"):] for name in default
           for f in manifest["features"].get(name, []) if f.startswith("dep:")}
wanted = {name for name, spec in manifest["dependencies"].items()
          if not (isinstance(spec, dict) and spec.get("optional")) or name in enabled}
problems = []
if bom.get("bomFormat") != "CycloneDX":
    problems.append(f"bomFormat is {bom.get('bomFormat')!r}")
if (root.get("name"), root.get("version")) != (package["name"], package["version"]):
    problems.append(f"it describes {root.get('name')} {root.get('version')}")
names = {name for name, _ in components}
missing = sorted(wanted - names)
if missing:
    problems.append(f"dependencies missing: {', '.join(missing)}")
unlocked = sorted(f"{n} {v}" for n, v in components - locked)
if unlocked:
    problems.append(f"crates not in Cargo.lock at that version: {', '.join(unlocked[:10])}")
if problems:
    sys.exit("sbom: " + "; ".join(problems))
print(f"sbom: CycloneDX {bom.get('specVersion')}, {package['name']} {package['version']}, "
      f"{len(components)} crates, all in Cargo.lock; the {len(wanted)} direct dependencies among them")
EOF
mkdir -p "$(dirname "$out")"
mv "$name.json" "$out"
echo "sbom: $out"
