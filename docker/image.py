#!/usr/bin/env python3
"""The container image, read from the Dockerfile and from a built archive.

The Dockerfile is the one source of truth for the image's settings:
docker/build-image.sh builds its final stage FROM scratch with buildah
(`containerfile`), and docker/check-image.sh compares what was built with
what the Dockerfile declares (`compare`), checks the image's contents
(`inspect`), and that a run wrote nothing to its root (`unchanged`).

  image.py containerfile DOCKERFILE CONTEXT       write CONTEXT/Containerfile, copy its sources
  image.py list ARCHIVE                           the files of an oci-archive's image, as JSON
  image.py snapshot DIR                           the files under DIR, as JSON
  image.py compare DOCKERFILE CONFIG LISTING [--arg K=V]... [--cargo-toml PATH]
  image.py inspect CONFIG LISTING ARCHIVE [--max-mib N]
  image.py unchanged IMAGE_LISTING BEFORE AFTER [--diff PODMAN_DIFF]

Only the Python standard library: CI runs it without a venv.
"""

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import sys
import tarfile
import tomllib

# The PATH every image gets from its builder (buildah here, the distroless
# base under Docker), unless the Dockerfile sets one.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Programs that would give a shell to whoever gets code execution inside.
SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish",
          "busybox", "toybox", "python", "python3", "perl"}
SHARED_OBJECT = re.compile(r"\.so(\.[0-9]+)*$")
# Instructions the final stage may hold; anything else fails loudly, so that
# a new kind of instruction is taught to both the build and the comparison.
FINAL_STAGE = {"ARG", "LABEL", "COPY", "USER", "EXPOSE", "ENV", "WORKDIR", "ENTRYPOINT", "CMD"}


class Failure(Exception):
    """A check failed or the input cannot be read; the message says which."""


# ---------------------------------------------------------------- Dockerfile


def instructions(text):
    """The Dockerfile's instructions as (line, KEYWORD, arguments), with
    continuation lines joined and comments (parser directives too) dropped."""
    out, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        out.append((start, keyword.upper(), rest.strip()))
        pending = ""
    if pending:
        raise Failure(f"Dockerfile: line {start} ends in a continuation")
    return out


def final_stage(text):
    """The instructions after the last FROM, and that FROM's line."""
    stage, base = None, None
    for line, keyword, rest in instructions(text):
        if keyword == "FROM":
            stage, base = [], (line, rest)
        elif stage is not None:
            stage.append((line, keyword, rest))
    if stage is None:
        raise Failure("Dockerfile: no FROM")
    for line, keyword, _ in stage:
        if keyword not in FINAL_STAGE:
            raise Failure(f"Dockerfile:{line}: {keyword} in the final stage: docker/image.py "
                          "neither builds nor compares it (teach it both)")
    return base, stage


def substitute(value, variables, where):
    """$NAME and ${NAME} replaced; any other form, or an unknown name, fails."""
    def one(match):
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise Failure(f"{where}: ${name} is neither an ARG nor an ENV of the final stage")
        return variables[name]
    result = re.sub(r"\$(?:\{(\w+)\}|(\w+))", one, value)
    if "${" in result:
        raise Failure(f"{where}: only $NAME and ${{NAME}} are understood: {value}")
    return result


def pairs(rest, where):
    """KEY=VALUE words (LABEL, ENV) in order; ENV's old `ENV KEY VALUE` too."""
    words = shlex.split(rest)
    if words and "=" not in words[0]:
        if len(words) < 2:
            raise Failure(f"{where}: expected KEY=VALUE or KEY VALUE: {rest}")
        return [(words[0], rest.split(None, 1)[1])]
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise Failure(f"{where}: expected KEY=VALUE: {word}")
        out.append((key, value))
    return out


def exec_form(rest, where):
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Failure(f"{where}: use the exec form [\"…\"]: the shell form needs a shell, "
                      "and the image has none")
    return value


def copy_args(rest, where):
    """(from-stage or None, sources, destination) of a COPY."""
    words = exec_form(rest, where) if rest.startswith("[") else shlex.split(rest)
    source_stage = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            source_stage = flag[len("--from="):]
        else:
            raise Failure(f"{where}: COPY {flag} is neither built nor compared by docker/image.py")
    if len(words) < 2:
        raise Failure(f"{where}: COPY needs a source and a destination")
    return source_stage, words[:-1], words[-1]


def declared(dockerfile, build_args):
    """What the Dockerfile's final stage declares, with ARGs and ENVs resolved."""
    with open(dockerfile, encoding="utf-8") as f:
        _, stage = final_stage(f.read())
    variables, args = {}, {}
    image = {"User": "", "WorkingDir": "", "Entrypoint": None, "Cmd": None,
             "Env": {}, "ExposedPorts": set(), "Labels": {}, "Copies": []}
    for line, keyword, rest in stage:
        where = f"{dockerfile}:{line}"
        if keyword == "ARG":
            name, sep, default = rest.partition("=")
            args[name] = default if sep else None
            value = build_args.get(name, default if sep else None)
            if value is None:
                raise Failure(f"{where}: ARG {name} has no default and no --arg")
            variables[name] = value
        elif keyword == "LABEL":
            for key, value in pairs(rest, where):
                image["Labels"][key] = substitute(value, variables, where)
        elif keyword == "ENV":
            for key, value in pairs(rest, where):
                value = substitute(value, variables, where)
                image["Env"][key] = value
                variables[key] = value
        elif keyword == "EXPOSE":
            for port in substitute(rest, variables, where).split():
                image["ExposedPorts"].add(port if "/" in port else f"{port}/tcp")
        elif keyword == "USER":
            image["User"] = substitute(rest, variables, where)
        elif keyword == "WORKDIR":
            image["WorkingDir"] = substitute(rest, variables, where)
        elif keyword in ("ENTRYPOINT", "CMD"):
            image["Entrypoint" if keyword == "ENTRYPOINT" else "Cmd"] = exec_form(rest, where)
        elif keyword == "COPY":
            source_stage, sources, dest = copy_args(rest, where)
            image["Copies"].append((source_stage, sources, substitute(dest, variables, where)))
    image["Args"] = args
    return image


def containerfile(args):
    """The final stage FROM scratch: the base layer (loader, libraries, CA
    bundle, users; assembled by build-image.sh as CONTEXT/base.tar) first, then
    the stage's own instructions, COPY --from=STAGE SRC reading
    CONTEXT/from-STAGE/SRC. Plain COPY sources are copied into CONTEXT."""
    root = os.path.dirname(os.path.abspath(args.dockerfile))
    with open(args.dockerfile, encoding="utf-8") as f:
        (line, base), stage = final_stage(f.read())
    out = [f"# Generated from {os.path.basename(args.dockerfile)} by docker/image.py: its final stage",
           f"# (line {line}: FROM {base}) FROM scratch, the base's files from base.tar.",
           "FROM scratch",
           # ADD, not COPY: a local tar keeps its owners (/home/nonroot is 65532's).
           "ADD base.tar /"]
    for line, keyword, rest in stage:
        where = f"{args.dockerfile}:{line}"
        if keyword == "COPY":
            source_stage, sources, dest = copy_args(rest, where)
            if source_stage:
                sources = [f"from-{source_stage}/{s.lstrip('/')}" for s in sources]
                for s in sources:
                    if not os.path.exists(os.path.join(args.context, s)):
                        raise Failure(f"{where}: COPY --from={source_stage}: {s} is not in the "
                                      "build context: docker/build-image.sh must put it there")
            else:
                for s in sources:
                    if os.path.isabs(s) or ".." in s.split("/") or any(c in s for c in "*?["):
                        raise Failure(f"{where}: COPY source {s}: a plain relative path, please")
                    src, dst = os.path.join(root, s), os.path.join(args.context, s)
                    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
                    if os.path.isdir(src):
                        shutil.copytree(src, dst, symlinks=True)
                    else:
                        shutil.copy2(src, dst)
            out.append("COPY " + json.dumps(sources + [dest]))
        else:
            out.append(f"{keyword} {rest}")
    with open(os.path.join(args.context, "Containerfile"), "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


# ------------------------------------------------------------------ listings


def entry(kind, mode, uid, gid, size=0, digest=None, target=None):
    record = {"type": kind, "mode": f"{stat.S_IMODE(mode):04o}", "uid": uid, "gid": gid}
    if kind == "file":
        record.update(size=size, sha256=digest)
    if target is not None:
        record["target"] = target
    return record


def list_archive(path):
    """The files of the image in an oci-archive, its layers applied in order
    (whiteouts included), with the manifest's compressed layer sizes."""
    files, sizes = {}, []
    for layer, tar in layers(path):
        sizes.append(layer["size"])
        for member in tar:
            name = member_path(member)
            parent, base = os.path.split(name)
            if base == ".wh..wh..opq":
                for key in [k for k in files if k.startswith(parent.rstrip("/") + "/")]:
                    del files[key]
                continue
            if base.startswith(".wh."):
                gone = os.path.join(parent, base[len(".wh."):])
                for key in [k for k in files if k == gone or k.startswith(gone + "/")]:
                    del files[key]
                continue
            if member.isfile():
                digest = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
                files[name] = entry("file", member.mode, member.uid, member.gid,
                                    member.size, digest)
            elif member.isdir():
                files[name] = entry("dir", member.mode, member.uid, member.gid)
            elif member.issym():
                files[name] = entry("symlink", member.mode, member.uid, member.gid,
                                    target=member.linkname)
            elif member.islnk():
                linked = dict(files["/" + member.linkname.lstrip("/")])
                linked["hardlink"] = "/" + member.linkname.lstrip("/")
                files[name] = linked
            else:
                files[name] = entry("special", member.mode, member.uid, member.gid)
    files.pop("/", None)
    return {"files": dict(sorted(files.items())), "layers": sizes}


def layers(path):
    """(descriptor, open tar) of each layer of the one image in an
    oci-archive, bottom first."""
    with tarfile.open(path) as archive:
        def blob(digest):
            return archive.extractfile("blobs/" + digest.replace(":", "/"))
        index = json.load(archive.extractfile("index.json"))
        if len(index["manifests"]) != 1:
            raise Failure(f"{path}: expected one image, found {len(index['manifests'])}")
        manifest = json.load(blob(index["manifests"][0]["digest"]))
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=blob(layer["digest"]), mode="r:*") as tar:
                yield layer, tar


def member_path(member):
    """A layer entry's absolute path: "./etc/passwd" and "etc/passwd" are "/etc/passwd"."""
    name = os.path.normpath("/" + member.name)
    return "/" + name.lstrip("/")


def snapshot(root):
    """The files under ROOT (a container's root filesystem), as list_archive
    lists an image's."""
    files = {}
    for top, dirs, names in os.walk(root):
        for name in sorted(dirs + names):
            path = os.path.join(top, name)
            info = os.lstat(path)
            key = "/" + os.path.relpath(path, root)
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
                files[key] = entry("file", info.st_mode, info.st_uid, info.st_gid,
                                   info.st_size, digest)
            elif stat.S_ISDIR(info.st_mode):
                files[key] = entry("dir", info.st_mode, info.st_uid, info.st_gid)
            elif stat.S_ISLNK(info.st_mode):
                files[key] = entry("symlink", info.st_mode, info.st_uid, info.st_gid,
                                   target=os.readlink(path))
            else:
                files[key] = entry("special", info.st_mode, info.st_uid, info.st_gid)
    return {"files": dict(sorted(files.items()))}


# ------------------------------------------------------------------- checks


def report(rows):
    """Prints one line per check; fails when any did."""
    width = max(len(what) for what, _, _ in rows)
    failed = [what for what, ok, _ in rows if not ok]
    for what, ok, detail in rows:
        print(f"  {'ok  ' if ok else 'FAIL'} {what:<{width}}  {detail}")
    if failed:
        raise Failure(f"{len(failed)} of {len(rows)} checks failed: {', '.join(failed)}")


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def compare(args):
    """The built image's settings against the Dockerfile's final stage."""
    build_args = dict(a.split("=", 1) for a in args.arg)
    want = declared(args.dockerfile, build_args)
    got = load(args.config).get("config", {})
    files = load(args.listing)["files"]
    root = os.path.dirname(os.path.abspath(args.dockerfile))
    rows = []

    def same(what, expected, actual):
        if expected == actual:
            shown = ", ".join(f"{k}={v}" for k, v in actual.items()) \
                if isinstance(actual, dict) else repr(actual)
            rows.append((what, True, shown))
        elif isinstance(expected, dict) and isinstance(actual, dict):
            keys = sorted(k for k in expected.keys() | actual.keys()
                          if expected.get(k) != actual.get(k))
            rows.append((what, False, "; ".join(
                f"{k}: Dockerfile {expected.get(k)!r}, image {actual.get(k)!r}" for k in keys)))
        else:
            rows.append((what, False, f"Dockerfile {expected!r}, image {actual!r}"))

    same("USER", want["User"], got.get("User", ""))
    same("WORKDIR", want["WorkingDir"], got.get("WorkingDir", ""))
    same("ENTRYPOINT", want["Entrypoint"], got.get("Entrypoint"))
    same("CMD", want["Cmd"], got.get("Cmd"))
    same("EXPOSE", sorted(want["ExposedPorts"]), sorted(got.get("ExposedPorts") or {}))
    env = dict(want["Env"])
    env.setdefault("PATH", DEFAULT_PATH)
    same("ENV", env, dict(e.split("=", 1) for e in got.get("Env") or []))
    same("LABEL", want["Labels"], got.get("Labels") or {})
    for source_stage, sources, dest in want["Copies"]:
        for source in sources:
            rows.append(copied(files, root, source_stage, source, dest, len(sources) > 1))
    with open(args.cargo_toml, "rb") as f:
        package = tomllib.load(f)["package"]
    for arg, label, key in (("VERSION", "version", "version"), (None, "licenses", "license")):
        if arg:
            same(f"ARG {arg} default = Cargo.toml {key}", package[key], want["Args"].get(arg))
        same(f"label {label} = Cargo.toml {key}", package[key],
             want["Labels"].get(f"org.opencontainers.image.{label}"))
    report(rows)


def copied(files, root, source_stage, source, dest, many):
    """One COPY source against the image: a build artifact must be an
    executable file at its destination; a file or directory of the
    repository must be there with the same contents."""
    what = f"COPY {'--from=' + source_stage + ' ' if source_stage else ''}{source} {dest}"
    local = os.path.join(root, source)
    # A file lands in a destination directory under its own name; a
    # directory's contents land in the destination.
    if (dest.endswith("/") or many) and (source_stage or not os.path.isdir(local)):
        dest = os.path.join(dest, os.path.basename(source.rstrip("/")))
    if source_stage:
        found = files.get(dest)
        ok = bool(found) and found["type"] == "file" and int(found["mode"], 8) & 0o111 != 0
        return what, ok, f"{dest}: {'executable file' if ok else found or 'missing'}"
    expected = {}
    if os.path.isdir(local):
        for path, meta in snapshot(local)["files"].items():
            if meta["type"] == "file":
                expected[dest.rstrip("/") + path] = meta["sha256"]
    else:
        expected[dest] = snapshot_file(local)
    differ = [p for p, digest in expected.items() if files.get(p, {}).get("sha256") != digest]
    extra = [p for p, meta in files.items() if p.startswith(dest.rstrip("/") + "/")
             and meta["type"] == "file" and p not in expected]
    ok = not differ and not extra and bool(expected)
    detail = f"{len(expected)} files as in the repository" if ok else \
        f"differ or missing: {differ[:5]}; not in the repository: {extra[:5]}"
    return what, ok, detail


def snapshot_file(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def inspect(args):
    """The image as the chart runs it: non-root, an entrypoint, no shell or
    other program, nothing writable or setuid, root-owned, within a size."""
    config = load(args.config).get("config", {})
    listing = load(args.listing)
    files = listing["files"]
    rows = []
    user, _, group = config.get("User", "").partition(":")
    rows.append(("user 65532", user == "65532" and group in ("", "65532"),
                 f"User {config.get('User')!r}"))
    passwd = [line for line in read_text(args.archive, files, "/etc/passwd").splitlines()
              if line.split(":")[2:3] == ["65532"]]
    groups = [line for line in read_text(args.archive, files, "/etc/group").splitlines()
              if line.split(":")[2:3] == ["65532"]]
    rows.append(("/etc/passwd, /etc/group name 65532", bool(passwd and groups),
                 f"{passwd} {groups}"))
    entrypoint = (config.get("Entrypoint") or [""])[0]
    found = files.get(entrypoint, {})
    ok = found.get("type") == "file" and int(found.get("mode", "0"), 8) & 0o111 != 0
    rows.append(("entrypoint", ok, f"{config.get('Entrypoint')} {config.get('Cmd')}: "
                 f"{'an executable file' if ok else 'missing or not executable'}"))
    shells = [p for p in files if os.path.basename(p) in SHELLS]
    rows.append(("no shell", not shells, f"{shells or 'no ' + ', '.join(sorted(SHELLS))}"))
    programs = [p for p, m in files.items() if m["type"] == "file" and int(m["mode"], 8) & 0o111
                and p != entrypoint and not SHARED_OBJECT.search(p)]
    rows.append(("no other program", not programs,
                 f"{programs or 'executables: the entrypoint and shared objects only'}"))
    home = passwd[0].split(":")[5] if passwd else None
    not_root = [p for p, m in files.items() if (m["uid"], m["gid"]) != (0, 0)
                and not (home and (p == home or p.startswith(home + "/")))]
    rows.append(("owned by root", not not_root, f"{not_root or 'all but ' + str(home)}"))
    loose = [p for p, m in files.items() if m["type"] != "symlink" and int(m["mode"], 8) & 0o7002]
    rows.append(("nothing world-writable, setuid or setgid", not loose, f"{loose or 'none'}"))
    ca = files.get("/etc/ssl/certs/ca-certificates.crt", {})
    rows.append(("CA bundle", ca.get("size", 0) > 0,
                 f"/etc/ssl/certs/ca-certificates.crt, {ca.get('size', 0)} bytes"))
    size = sum(m.get("size", 0) for m in files.values() if "hardlink" not in m)
    packed = sum(listing["layers"])
    mib = 1024 * 1024
    rows.append((f"size at most {args.max_mib} MiB", size <= args.max_mib * mib,
                 f"{size / mib:.1f} MiB in {len(files)} entries, {packed / mib:.1f} MiB in "
                 f"{len(listing['layers'])} compressed layers, archive "
                 f"{os.path.getsize(args.archive) / mib:.1f} MiB"))
    report(rows)
    biggest = sorted(((m.get("size", 0), p) for p, m in files.items()), reverse=True)[:5]
    print("  largest: " + ", ".join(f"{p} {s / mib:.1f} MiB" for s, p in biggest))


def read_text(archive, files, path):
    """A small file's text, from the image's layers (the last that has it)."""
    text = ""
    if files.get(path, {}).get("type") == "file":
        for _, tar in layers(archive):
            for member in tar:
                if member.isfile() and member_path(member) == path:
                    text = tar.extractfile(member).read().decode("utf-8")
    return text


def unchanged(args):
    """A run left the container's root as the runtime prepared it: BEFORE is
    the root after `podman init` (mount points made, the gateway not yet
    started), AFTER after it stopped. The runtime may add (mount points,
    /etc/mtab) but change none of the image's files; the gateway may change
    nothing at all. podman diff may name only what the runtime added, and
    the directories holding it."""
    image, before, after = (load(path)["files"] for path in (args.image, args.before, args.after))
    touched = [p for p, meta in image.items() if before.get(p) != meta]
    added = [p for p in before if p not in image]
    written = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    rows = [("the runtime kept the image's files", not touched,
             f"{touched[:10] or str(len(image)) + ' entries, same type, mode, owner, sha256'}"),
            ("the runtime added", True, ", ".join(added) or "nothing"),
            ("the gateway wrote nothing", not written,
             f"{written[:10] or str(len(after)) + ' entries as before it started'}")]
    if args.diff:
        with open(args.diff, encoding="utf-8") as f:
            changes = [line.split(None, 1) for line in f if line.strip()]
        odd = [" ".join(c) for c in changes if c[0] not in "AC" or not any(
            a == c[1].strip() or a.startswith(c[1].strip().rstrip("/") + "/") for a in added)]
        rows.append(("podman diff: the runtime's additions only", not odd,
                     f"{odd or ', '.join(' '.join(c).strip() for c in changes) or 'no change'}"))
    report(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("containerfile")
    p.add_argument("dockerfile")
    p.add_argument("context")
    p = sub.add_parser("list")
    p.add_argument("archive")
    p = sub.add_parser("snapshot")
    p.add_argument("root")
    p = sub.add_parser("compare")
    p.add_argument("dockerfile")
    p.add_argument("config")
    p.add_argument("listing")
    p.add_argument("--arg", action="append", default=[], help="a build argument, K=V")
    p.add_argument("--cargo-toml", default="Cargo.toml")
    p = sub.add_parser("inspect")
    p.add_argument("config")
    p.add_argument("listing")
    p.add_argument("archive")
    p.add_argument("--max-mib", type=int, default=48)
    p = sub.add_parser("unchanged")
    p.add_argument("image")
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--diff", help="podman diff's output for the container")
    args = parser.parse_args()
    try:
        if args.command == "containerfile":
            containerfile(args)
        elif args.command == "list":
            json.dump(list_archive(args.archive), sys.stdout, indent=1)
        elif args.command == "snapshot":
            json.dump(snapshot(args.root), sys.stdout, indent=1)
        elif args.command == "compare":
            compare(args)
        elif args.command == "inspect":
            inspect(args)
        else:
            unchanged(args)
    except Failure as failure:
        print(f"image.py {args.command}: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
