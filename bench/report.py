"""Turns bench/side-by-side.sh's results into the table of docs/benchmarks.md
(with the ratios the targets are stated in) and an SVG plot of latency
against offered load.

Usage: python3 bench/report.py RESULTS.jsonl OUT_DIR
"""

import json
import math
import pathlib
import sys

results = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
out = pathlib.Path(sys.argv[2])
servers = ["echo", "forwarder", "gateway"]
traced = ["gateway, traces 1.0", "gateway, traces 0.1"]
closed = {r["server"]: r["run"] for r in results if "run" in r and r["run"]["mode"] == "closed"}
opened = {}
for r in results:
    if "run" in r and r["run"]["mode"] == "open":
        opened.setdefault(r["server"], {})[r["run"]["offered"]] = r["run"]
memory = {r["server"]: r["memory"] for r in results if "memory" in r}


def errors(run):
    return {code: n for code, n in run["codes"].items() if code != "OK"}


lines = []
lines.append("| server | calls/s, 64 in flight | vs forwarder | p50 / p99 at 1,000 calls/s (µs) | errors |")
lines.append("|---|---|---|---|---|")
for s in servers:
    c = closed.get(s)
    o = opened.get(s, {}).get(1000)
    if not c:
        continue
    ratio = c["calls_per_second"] / closed["forwarder"]["calls_per_second"]
    at1000 = f"{o['p50_us']} / {o['p99_us']}" if o else "–"
    errs = {**errors(c), **(errors(o) if o else {})}
    lines.append(f"| {s} | {c['calls_per_second']:,.0f} | {ratio:.0%} | {at1000} | {errs or 'none'} |")
for s, base in [("forwarder, varied", "forwarder, varied"), ("gateway, varied", "forwarder, varied")] + [
    (t, "forwarder") for t in traced
]:
    c, o = closed.get(s), opened.get(s, {}).get(1000)
    if c and base in closed:
        ratio = c["calls_per_second"] / closed[base]["calls_per_second"]
        at1000 = f"{o['p50_us']} / {o['p99_us']}" if o else "–"
        errs = {**errors(c), **(errors(o) if o else {})}
        lines.append(f"| {s} | {c['calls_per_second']:,.0f} | {ratio:.0%} | {at1000} | {errs or 'none'} |")
lines.append("")
if 1000 in opened.get("gateway", {}) and 1000 in opened.get("forwarder", {}):
    g, f = opened["gateway"][1000], opened["forwarder"][1000]
    lines.append(
        f"Added latency of the gateway over the forwarder at 1,000 calls/s: "
        f"p50 {g['p50_us'] - f['p50_us']} µs, p99 {g['p99_us'] - f['p99_us']} µs."
    )
if 1000 in opened.get("gateway, varied", {}) and 1000 in opened.get("forwarder, varied", {}):
    g, f = opened["gateway, varied"][1000], opened["forwarder, varied"][1000]
    lines.append(
        f"On the varied workload (10,000 instances; ratios above against the forwarder on it): "
        f"p50 {g['p50_us'] - f['p50_us']} µs, p99 {g['p99_us'] - f['p99_us']} µs added at 1,000 calls/s."
    )
for s, m in memory.items():
    per_call = (m["busy_kib"] - m["idle_kib"]) / m["in_flight"]
    lines.append(
        f"Memory, {s}: {m['idle_kib']:,} KiB idle, {m['busy_kib']:,} KiB with {m['in_flight']} calls in flight: "
        f"{per_call:.1f} KiB per call."
    )
if "forwarder" in memory and "gateway" in memory:
    f, g = memory["forwarder"], memory["gateway"]
    extra = (g["busy_kib"] - g["idle_kib"] - (f["busy_kib"] - f["idle_kib"])) / g["in_flight"]
    lines.append(f"The gateway holds {extra:.1f} KiB per call in flight more than the forwarder.")
lines.append("")
lines.append("Open loop, by offered rate (calls/s → achieved calls/s, p50 / p99 / p99.9 µs):")
lines.append("")
lines.append("| offered | " + " | ".join(servers) + " |")
lines.append("|---|" + "---|" * len(servers))
rates = sorted({rate for s in opened.values() for rate in s})
for rate in rates:
    cells = []
    for s in servers:
        run = opened.get(s, {}).get(rate)
        cells.append(
            f"{run['calls_per_second']:,.0f}: {run['p50_us']} / {run['p99_us']} / {run['p999_us']}" if run else "–"
        )
    lines.append(f"| {rate:,} | " + " | ".join(cells) + " |")
table = "\n".join(lines)
print(table)
(out / "results.md").write_text(table + "\n")

# The plot: p50 (solid) and p99 (dashed) latency against offered load, log
# scales, one colour per server.
W, H, L, B, R, T = 720, 440, 70, 50, 150, 20
colours = {"echo": "#4c78a8", "forwarder": "#f58518", "gateway": "#54a24b"}
values = [run[k] for s in opened.values() for run in s.values() for k in ("p50_us", "p99_us")]
if rates and values:
    x0, x1 = math.log10(min(rates)), math.log10(max(rates))
    y0, y1 = math.log10(max(min(values), 1)), math.log10(max(values))
    y0, y1 = math.floor(y0), math.ceil(y1)
    x1 = x1 if x1 > x0 else x0 + 1

    def px(rate):
        return L + (math.log10(rate) - x0) / (x1 - x0) * (W - L - R)

    def py(us):
        return H - B - (math.log10(max(us, 1)) - y0) / (y1 - y0) * (H - B - T)

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for rate in rates:
        svg.append(f'<text x="{px(rate):.0f}" y="{H - B + 16}" text-anchor="middle">{rate:,}</text>')
    for e in range(y0, y1 + 1):
        y = py(10 ** e)
        label = f"{10 ** e:,} µs" if e < 3 else f"{10 ** (e - 3):,} ms"
        svg.append(f'<line x1="{L}" y1="{y:.0f}" x2="{W - R}" y2="{y:.0f}" stroke="#ddd"/>')
        svg.append(f'<text x="{L - 6}" y="{y + 4:.0f}" text-anchor="end">{label}</text>')
    svg.append(f'<text x="{(L + W - R) / 2:.0f}" y="{H - 12}" text-anchor="middle">offered load, calls/s (open loop)</text>')
    for i, s in enumerate(servers):
        runs = opened.get(s, {})
        for key, dash in (("p50_us", ""), ("p99_us", ' stroke-dasharray="5,4"')):
            points = " ".join(f"{px(r):.1f},{py(runs[r][key]):.1f}" for r in sorted(runs))
            svg.append(f'<polyline points="{points}" fill="none" stroke="{colours[s]}" stroke-width="2"{dash}/>')
        svg.append(f'<text x="{W - R + 10}" y="{T + 20 + 18 * i}" fill="{colours[s]}">{s}</text>')
    svg.append(f'<text x="{W - R + 10}" y="{T + 90}">solid: p50</text>')
    svg.append(f'<text x="{W - R + 10}" y="{T + 108}">dashed: p99</text>')
    svg.append("</svg>")
    (out / "latency.svg").write_text("\n".join(svg) + "\n")
