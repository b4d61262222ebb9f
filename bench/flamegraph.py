#!/usr/bin/env python3
"""Draws folded stacks (bench/account.py --folded) as an SVG flame graph.

Each box is a frame, as wide as the share of samples whose stack passes
through it, above its caller; the bottom row is the part bench/account.py
names. Frames under MIN_SHARE of the samples are left out so that the file
stays small; hovering a box shows its name, samples and share.

Usage: flamegraph.py FOLDED OUT.svg [TITLE]
"""

import html
import sys

MIN_SHARE = 0.002
WIDTH, ROW, FONT = 1200, 16, 11


def tree(path):
    root = {"n": 0, "kids": {}}
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            count = int(count)
            root["n"] += count
            node = root
            for frame in stack.split(";"):
                node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
                node["n"] += count
    return root


def colour(name):
    h = sum(map(ord, name)) % 60
    return f"rgb({205 + h // 2},{90 + h * 2},{50 + h // 3})"


def draw(root, title):
    total = root["n"]
    boxes, depth_max = [], 0

    def walk(node, name, x, depth):
        nonlocal depth_max
        width = node["n"] / total * WIDTH
        if node["n"] / total < MIN_SHARE:
            return
        depth_max = max(depth_max, depth)
        boxes.append((x, depth, width, name, node["n"]))
        for kid_name, kid in sorted(node["kids"].items(), key=lambda kv: -kv[1]["n"]):
            walk(kid, kid_name, x, depth + 1)
            x += kid["n"] / total * WIDTH

    x = 0.0
    for name, kid in sorted(root["kids"].items(), key=lambda kv: -kv[1]["n"]):
        walk(kid, name, x, 0)
        x += kid["n"] / total * WIDTH
    height = (depth_max + 1) * ROW + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="monospace" font-size="{FONT}">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="4" y="16" font-size="13">{html.escape(title)} ({total:,} samples)</text>',
    ]
    for x, depth, width, name, n in boxes:
        y = height - (depth + 1) * ROW - 4
        label = name if len(name) * 6.6 < width - 4 else name[: max(0, int((width - 4) / 6.6) - 2)] + ".."
        out.append(
            f'<g><title>{html.escape(name)}: {n:,} samples, {100 * n / total:.1f} %</title>'
            f'<rect x="{x:.1f}" y="{y}" width="{max(width - 0.5, 0.5):.1f}" height="{ROW - 1}" '
            f'fill="{colour(name)}"/>'
            + (f'<text x="{x + 2:.1f}" y="{y + ROW - 4}">{html.escape(label)}</text>' if width > 20 else "")
            + "</g>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    title = sys.argv[3] if len(sys.argv) > 3 else "ecs-gateway serve, CPU by call stack"
    with open(sys.argv[2], "w") as f:
        f.write(draw(tree(sys.argv[1]), title))
