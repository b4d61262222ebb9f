#!/usr/bin/env python3
"""Splits a server's CPU per call into named parts, from `perf script` output.

Each sample's call stack is read from its leaf towards its root; the first
frame that belongs to a part names the part (so the allocator, memcpy, a
system call or a general-purpose crate such as serde_json, url or chrono
count for whoever called them). A frame's owner is its
function's path without generic arguments (`<A<B> as T>::f` is owned by
`A`), so that a frame generic over the gateway's types is not mistaken for
the gateway's own code.

Usage: account.py NAME=SCRIPT:CALLS [NAME=SCRIPT:CALLS ...] [--json OUT]
                  [--folded STACKS]

SCRIPT is `perf script --no-inline -F comm,tid,period,ip,sym` output of one
server, CALLS how many calls it served while perf recorded. Prints, for each
part, the microseconds of CPU per call of each server, and when two or more
are given, the difference of the last from the first (gateway minus
forwarder). --folded writes the last server's samples as folded stacks
(`part;root;…;leaf count`), for bench/flamegraph.py.
"""

import json
import sys

# (part, prefixes of owners), in the order ties are broken: a frame that
# matches several parts' prefixes takes the first part's.
PARTS = [
    ("decision: Cedar evaluation", ["cedar_policy"]),
    ("decision log line (format, queue, write)", [
        "ecs_gateway::policy::log", "ecs_gateway::telemetry::json_line",
        "ecs_gateway::telemetry::log_writer", "tracing_subscriber::fmt",
        "tracing_appender", "tracing_serde",
    ]),
    ("decision: the gateway's part (context, entities, index)", ["ecs_gateway::policy"]),
    ("spans (registry, filters, fields)", [
        "tracing_subscriber", "tracing_core", "tracing::span", "tracing::instrument",
        "sharded_slab", "tracing::",
    ]),
    ("metrics", ["prometheus_client", "ecs_gateway::telemetry::metrics"]),
    ("trace layer (server span, W3C context)", [
        "ecs_gateway::telemetry", "opentelemetry", "tracing_opentelemetry",
    ]),
    ("identity layer (x-forwarded-client-cert)", ["ecs_gateway::identity", "x509_parser"]),
    ("admission layer", ["ecs_gateway::admission", "governor"]),
    ("validation", ["ecs_gateway::validate"]),
    ("signing", ["ecs_gateway::sign", "ecs_gateway::credentials"]),
    ("error mapping", ["ecs_gateway::error", "tonic_types"]),
    ("upstream call (request, breaker, retry, answer)", [
        "ecs_gateway::upstream", "reqwest", "hyper::client", "hyper::proto::h1",
        "hyper_util::client", "loadtest::forward",
    ]),
    ("handler (the gateway's own steps, task, uuid)", [
        "ecs_gateway::server", "ecs_gateway::lookup", "loadtest", "ecs_gateway::",
    ]),
    ("gRPC server (tonic, h2, prost)", [
        "tonic", "h2::", "hyper::proto::h2", "hyper::", "hyper_util", "tower", "prost",
        "http::", "http_body", "bytes::", "axum",
    ]),
    ("socket reads and writes (system calls)", [
        "tokio::runtime::io::registration::Registration::poll_io",
        "tokio::net::tcp::stream::TcpStream::poll_read_priv",
    ]),
    ("Tokio runtime (scheduler, tasks, timers, channels)", ["tokio::", "mio::"]),
]

OTHER = "other (kernel, libc, std with no owner above)"


def owner(symbol):
    """A frame's function path without generic arguments."""
    symbol = symbol.strip()
    if symbol.startswith("<"):
        # `<Type<..> as Trait<..>>::method` or `<Type<..>>::method`: the type.
        depth = 0
        for i, c in enumerate(symbol):
            if c == "<":
                depth += 1
            elif c == ">":
                depth -= 1
                if depth == 0:
                    inner = symbol[1:i]
                    break
            elif depth == 1 and symbol.startswith(" as ", i):
                inner = symbol[1:i]
                break
        else:
            inner = symbol[1:]
        return owner(inner) if inner.startswith("<") else inner.split("<", 1)[0]
    return symbol.split("<", 1)[0]


def clean(symbol):
    """A frame's function without generic arguments, for folded stacks:
    `<A<B> as T<C>>::f` becomes `<A as T>::f`."""
    out, i = [], 0
    while i < len(symbol):
        c = symbol[i]
        if c == "<" and i > 0 and (symbol[i - 1].isalnum() or symbol[i - 1] in "_:"):
            depth = 0
            while i < len(symbol):
                depth += {"<": 1, ">": -1}.get(symbol[i], 0)
                i += 1
                if depth == 0:
                    break
            continue
        out.append(c)
        i += 1
    return "".join(out).replace(";", ",")


def part_of(frames):
    for frame in frames:
        path = owner(frame)
        for part, prefixes in PARTS:
            if any(path.startswith(p) for p in prefixes):
                return part
    return OTHER


def samples(path):
    """(period in ns, [symbols, leaf first]) for each sample."""
    period, frames = None, []
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if period is not None:
                    yield period, frames
                period, frames = None, []
            elif not line[0].isspace():
                if period is not None:
                    yield period, frames
                fields = line.split()
                period, frames = int(fields[-1]), []
            else:
                # `addr symbol+off`: keep the symbol.
                parts = line.strip().split(" ", 1)
                if len(parts) == 2:
                    frames.append(parts[1].rsplit("+0x", 1)[0])
    if period is not None:
        yield period, frames


def account(path, calls, folded=None):
    totals, stacks = {}, {}
    for period, frames in samples(path):
        part = part_of(frames)
        totals[part] = totals.get(part, 0) + period
        if folded is not None:
            names = [clean(f) for f in reversed(frames) if f and f != "[unknown]"]
            # The part first, so that a flame graph groups by part.
            stack = ";".join([part] + [n for j, n in enumerate(names) if j == 0 or n != names[j - 1]])
            stacks[stack] = stacks.get(stack, 0) + 1
    if folded is not None:
        with open(folded, "w") as f:
            for stack, count in sorted(stacks.items()):
                f.write(f"{stack} {count}\n")
    return {part: ns / 1000.0 / calls for part, ns in totals.items()}


def main(argv):
    options = {}
    for option in ("--json", "--folded"):
        if option in argv:
            i = argv.index(option)
            options[option] = argv[i + 1]
            argv = argv[:i] + argv[i + 2:]
    out = options.get("--json")
    servers = []
    for n, arg in enumerate(argv):
        name, rest = arg.split("=", 1)
        script, calls = rest.rsplit(":", 1)
        # The folded stacks are the last server's (the gateway's).
        folded = options.get("--folded") if n == len(argv) - 1 else None
        servers.append((name, account(script, float(calls), folded)))
    names = [n for n, _ in servers]
    order = [p for p, _ in PARTS] + [OTHER]
    head = "| part | " + " | ".join(f"{n} µs/call" for n in names)
    diff = len(servers) >= 2
    if diff:
        head += f" | {names[-1]} − {names[0]} | share of the difference"
    print(head + " |")
    print("|---" * (len(names) + 1 + 2 * diff) + "|")
    total = {n: sum(a.values()) for n, a in servers}
    difference = total[names[-1]] - total[names[0]] if diff else 0
    for part in order:
        values = [a.get(part, 0.0) for _, a in servers]
        if not any(v >= 0.05 for v in values):
            continue
        row = f"| {part} | " + " | ".join(f"{v:.1f}" for v in values)
        if diff:
            d = values[-1] - values[0]
            row += f" | {d:+.1f} | {100 * d / difference:.0f} %"
        print(row + " |")
    row = "| **total** | " + " | ".join(f"**{total[n]:.1f}**" for n in names)
    if diff:
        row += f" | **{difference:+.1f}** | 100 %"
    print(row + " |")
    if out:
        with open(out, "w") as f:
            json.dump({n: a for n, a in servers}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
