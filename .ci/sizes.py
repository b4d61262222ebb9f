#!/usr/bin/env python3
"""Checks the sizes a newcomer can read: no function outside tests over
MAX_FN lines, and no source file over MAX_FILE non-blank lines outside
tests, unless the file says why at its top (a line of its module doc
starting `Long because:` within its first 20 lines: a data table may be
long).

Functions are found by their `fn` line and brace matching, with strings,
chars and comments blanked first; `#[cfg(test)] mod` blocks and files named
tests.rs are left out.
Usage: .ci/sizes.py [SRC_DIR] [--report]   (--report: print the largest, exit 0)
"""
import pathlib
import re
import sys

MAX_FN = 100
MAX_FILE = 600
def strip(src):
    # remove comments and strings roughly, keep newlines
    out=[];i=0;n=len(src)
    while i<n:
        c=src[i]
        if src.startswith('//',i):
            j=src.find('\n',i); j=n if j<0 else j; out.append(' '*(j-i)); i=j; continue
        if src.startswith('/*',i):
            j=src.find('*/',i+2); j=n if j<0 else j+2; out.append(re.sub(r'[^\n]',' ',src[i:j])); i=j; continue
        m=re.match(r'r(#*)"',src[i:i+10])
        if m and (i==0 or not (src[i-1].isalnum() or src[i-1]=='_')):
            end='"'+m.group(1); j=src.find(end,i+len(m.group(0))); j=n if j<0 else j+len(end)
            out.append(re.sub(r'[^\n]',' ',src[i:j])); i=j; continue
        if c=='"':
            j=i+1
            while j<n and src[j]!='"':
                j+=2 if src[j]=='\\' else 1
            j+=1; out.append(re.sub(r'[^\n]',' ',src[i:j])); i=j; continue
        if c=="'":
            m=re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'",src[i:i+12])
            if m: out.append(' '*len(m.group(0))); i+=len(m.group(0)); continue
        out.append(c); i+=1
    return ''.join(out)
def match(s,i):
    d=0
    for j in range(i,len(s)):
        if s[j]=='{': d+=1
        elif s[j]=='}':
            d-=1
            if d==0: return j
    return len(s)-1


fnre = re.compile(r'^[ \t]*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)', re.M)

def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    report = "--report" in sys.argv
    root = pathlib.Path(args[0] if args else "src")
    functions, files, excused = [], [], set()
    for p in sorted(root.rglob("*.rs")):
        if p.name == "tests.rs":
            continue
        src = p.read_text()
        if any(l.lstrip("/! ").startswith("Long because:") for l in src.split("\n")[:20]):
            excused.add(str(p))
        s = strip(src)
        tests = []
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", s):
            b = s.index("{", m.start())
            tests.append((m.start(), match(s, b)))
        in_test = lambda k: any(a <= k <= b for a, b in tests)
        offset, non_blank = 0, 0
        for line in src.split("\n"):
            if line.strip() and not in_test(offset):
                non_blank += 1
            offset += len(line) + 1
        files.append((non_blank, str(p)))
        for m in fnre.finditer(s):
            if in_test(m.start()):
                continue
            b = s.find("{", m.end())
            semi = s.find(";", m.end())
            if b < 0 or (0 <= semi < b):
                continue
            lines = s.count("\n", m.start(), match(s, b)) + 1
            functions.append((lines, f"{p}::{m.group(6)}"))
    functions.sort(reverse=True)
    files.sort(reverse=True)
    if report:
        print(f"functions over {MAX_FN} lines: {sum(1 for n, _ in functions if n > MAX_FN)}")
        for n, name in functions[:10]:
            print(f"  {n:5} {name}")
        print(f"files over {MAX_FILE} non-blank lines: {sum(1 for n, _ in files if n > MAX_FILE)}")
        for n, name in files[:10]:
            print(f"  {n:5} {name}{'  (Long because: ...)' if name in excused else ''}")
        return 0
    long_fns = [(n, f) for n, f in functions if n > MAX_FN]
    long_files = [(n, f) for n, f in files if n > MAX_FILE and f not in excused]
    for n, f in long_fns:
        print(f"{f}: {n} lines (at most {MAX_FN}): split it into named steps")
    for n, f in long_files:
        print(f"{f}: {n} non-blank lines (at most {MAX_FILE}): split it, or say why at its top (`//! Long because: ...`)")
    if long_fns or long_files:
        return 1
    print(f"sizes: every function at most {MAX_FN} lines, every file at most {MAX_FILE} non-blank lines or said why")
    return 0


sys.exit(main())
