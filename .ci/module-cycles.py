#!/usr/bin/env python3
"""Checks that the crate's modules import one another one way.

A node is a module, that is a file: src/identity/mod.rs is `identity`,
src/identity/jwt.rs is `identity::jwt`, src/error/catalogue.rs is
`error::catalogue`. An edge A -> B is any path in A's code (in `use` items or
inline, `{a, b}` groups included) that names B or an item in it: `crate::`,
`super::`, `self::` and child-module paths are resolved to the deepest module
they reach. A parent reaches its submodules (it declares them and
re-exports from them), so parent -> child is an edge; a child's paths to its
ancestors (`super::`) are not, as a child is part of its parent. Test code (`#[cfg(test)]` modules and files named tests.rs) is
left out: tests may reach anywhere. The crate roots (lib.rs, main.rs) only
declare modules and are not nodes.

The same check runs again with every file folded into its top-level module
(`identity::jwt` into `identity`), so that no stage reaches into another's
submodule to get around it.

Prints the edges, then each cycle found (as the set of modules that reach
one another); exits 1 when there is one.
Usage: .ci/module-cycles.py [SRC_DIR]
"""

import pathlib
import re
import sys

SRC = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")


def ident_before(text, i):
    """Whether an identifier character precedes position i (a `b` prefix of a
    byte string, as in br"…", does not count)."""
    j = i - 1 if i and text[i - 1] == "b" else i
    return j > 0 and (text[j - 1].isalnum() or text[j - 1] == "_")


def strip(text):
    """Blanks comments and string and char literals, by a left-to-right scan."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', text[i:]) and not ident_before(text, i):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            j = text.find('"' + hashes, i + len(hashes) + 2)
            i = n if j < 0 else j + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.[^']*|[^'\\])'", text[i:]):
            i += len(re.match(r"'(\\.[^']*|[^'\\])'", text[i:]).group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text, j):
    """The index just past the `}` that closes the `{` ending at j."""
    depth = 1
    while depth and j < len(text):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return j


def without_test_modules(text):
    """Drops `#[cfg(test)] mod name { ... }` blocks by brace matching."""
    out, i = [], 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s+\w+\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i : m.start()])
        i = matching_brace(text, m.end())


def paths(code):
    """Every path `a::b::c` in the code, `{…}` groups expanded."""
    out = []

    def expand(prefix, body):
        depth, part, parts = 0, "", []
        for ch in body:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if ch == "," and depth == 0:
                parts.append(part)
                part = ""
            else:
                part += ch
        parts.append(part)
        for piece in parts:
            piece = re.sub(r"\s+", "", re.split(r"\s+as\s+", piece)[0])
            if not piece:
                continue
            m = re.match(r"^([\w:]*?)::\{(.*)\}$", piece)
            if m:
                expand(prefix + m.group(1).split("::"), m.group(2))
            else:
                out.append(prefix + piece.split("::"))

    for m in re.finditer(r"\b((?:\w+::)+)(\{)?", code):
        segments = m.group(1).rstrip(":").split("::")
        if m.group(2):
            j = matching_brace(code, m.end())
            expand(segments, code[m.end() : j - 1])
        else:
            rest = re.match(r"\w+", code[m.end() :])
            out.append(segments + ([rest.group(0)] if rest else []))
    return out


def main():
    modules = {}
    for file in sorted(SRC.rglob("*.rs")):
        rel = file.relative_to(SRC)
        if file.name == "tests.rs" or rel.parts[0] in ("lib.rs", "main.rs", "bin"):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "mod":
            parts.pop()
        modules[tuple(parts)] = without_test_modules(strip(file.read_text()))

    def resolve(current, segments):
        if segments[0] == "crate":
            base, rest = (), segments[1:]
        elif segments[0] == "super":
            base, rest = current, segments
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif segments[0] == "self":
            base, rest = current, segments[1:]
        elif current + (segments[0],) in modules:
            base, rest = current, segments
        else:
            return None
        best = None
        for i in range(len(rest) + 1):
            if base + tuple(rest[:i]) in modules:
                best = base + tuple(rest[:i])
        return best

    def related(a, b):
        return a[: len(b)] == b or b[: len(a)] == a

    edges = {}
    for module, code in modules.items():
        targets = set()
        for segments in paths(code):
            target = resolve(module, segments)
            if target and not related(module, target):
                targets.add(target)
        targets.update(m for m in modules if len(m) == len(module) + 1 and m[:-1] == module)
        edges[module] = sorted(targets)
    for a in sorted(edges):
        print(f"{name(a)} -> {', '.join(map(name, edges[a])) or '(nothing)'}")

    files = knots(edges)
    # The same graph with every file folded into its top-level module
    # (src/identity/jwt.rs is `identity`): a stage must not reach into
    # another's submodule to get around the file-level check.
    top = {}
    for a, targets in edges.items():
        top.setdefault(a[:1], set()).update(t[:1] for t in targets if t[:1] != a[:1])
    tops = knots({a: sorted(t) for a, t in top.items()})
    for level, found in (("files", files), ("top-level modules", tops)):
        if found:
            print(f"\n{len(found)} import cycle(s) among {level}, as sets of modules that reach one another:")
            for knot in found:
                print(f"  {len(knot)} modules: " + ", ".join(map(name, knot)))
    if files or tops:
        return 1
    print(f"\nno import cycle among the {len(modules)} modules under {SRC}/, nor among the {len(top)} top-level ones")
    return 0


def knots(edges):
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def name(module):
    return "::".join(module)


if __name__ == "__main__":
    sys.exit(main())
