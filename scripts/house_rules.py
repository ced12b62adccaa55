#!/usr/bin/env python3
"""The house rules a reviewer would otherwise check by hand, checked by a script.

Two rules, over every crate's production code (test files and `#[cfg(test)]` blocks are
left out):

* no function longer than `--max-fn-lines` lines (signature to closing brace);
* no import circle inside a crate: no module that uses one that uses it back, directly or
  around a loop. A use of `crate::a::b::C` is a use of module `a::b` (the longest prefix
  that is a module file), `super::C` a use of the parent module, `child::C` a use of the
  declared child. Inline modules count as part of their file.

It prints what breaks a rule and exits 1, or prints the figures and exits 0. `--report`
prints the longest functions and line counts per folder whatever the outcome.

    python3 scripts/house_rules.py [--max-fn-lines 100] [--report]
"""

import argparse
import collections
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = ["proto", "coordinator", "worker", "cli", "sample"]
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(text):
    """Blank out comments, string and char literals, keeping line breaks and braces' places."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not re.match(r"[A-Za-z0-9_]", text[i - 1] if i else " "):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(code, open_at):
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def drop_test_blocks(code):
    """Blank `#[cfg(test)]` items (inline test modules and test-only functions)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", code)
        if not m:
            return code
        brace = code.find("{", m.end())
        semi = code.find(";", m.end())
        end = semi if semi >= 0 and (brace < 0 or semi < brace) else matching_brace(code, brace)
        code = code[:m.start()] + re.sub(r"[^\n]", " ", code[m.start():end + 1]) + code[end + 1:]


def crate_files(crate):
    src = ROOT / crate / "src"
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if rel.parts[0] == "bin" or path.name == "tests.rs" or path.stem.endswith("_test"):
            continue
        yield path, rel


def module_path(rel):
    parts = list(rel.with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def test_only_children(code):
    return set(re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code))


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+as\s+" + IDENT, "", tree)
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    items, depth, start = [], 0, 0
    for k, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:k])
            start = k + 1
    items.append(inner[start:])
    return [p for item in items if item for p in expand_use(prefix + item)]


def referenced_paths(code, me, children):
    """Absolute module-path guesses (tuples) of everything this file names."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        for p in expand_use(m.group(1)):
            paths.append(p)
    for m in re.finditer(r"(?<![A-Za-z0-9_:])((?:crate|super|self)(?:::" + IDENT + ")+)", code):
        paths.append(m.group(1))
    for child in children:
        for m in re.finditer(r"(?<![A-Za-z0-9_:])(" + child + r"(?:::" + IDENT + ")+)", code):
            paths.append(m.group(1))
    resolved = []
    for p in paths:
        segs = [s for s in p.split("::") if s]
        if not segs:
            continue
        if segs[0] == "crate":
            base, segs = [], segs[1:]
        elif segs[0] in ("super", "self"):
            base = list(me)
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
        elif segs[0] in children:
            base = list(me)
        else:
            continue
        resolved.append(tuple(base + segs))
    return resolved


def import_circles(crate):
    files = list(crate_files(crate))
    modules, codes, test_children = {}, {}, set()
    for path, rel in files:
        raw = strip_code(path.read_text())
        me = module_path(rel)
        test_children |= {me + (c,) for c in test_only_children(raw)}
        codes[me] = drop_test_blocks(raw)
        modules[me] = rel
    for t in list(test_children):
        modules.pop(t, None)
        codes.pop(t, None)
    edges = collections.defaultdict(set)
    for me, code in codes.items():
        children = {m[-1] for m in modules if m[:-1] == me and len(m) == len(me) + 1}
        for target in referenced_paths(code, me, children):
            for k in range(len(target), -1, -1):
                if target[:k] in modules:
                    if target[:k] != me:
                        edges[me].add(target[:k])
                    break
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(codes):
        if v not in index:
            visit(v)
    named = lambda m: "::".join(m) or "(crate root)"
    return [
        sorted(f"{named(a)} -> {named(b)}" for a in comp for b in edges[a] if b in comp)
        for comp in sccs
    ]


def long_functions(crate):
    found = []
    for path, rel in crate_files(crate):
        code = drop_test_blocks(strip_code(path.read_text()))
        for m in re.finditer(r"(?m)^[ \t]*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(" + IDENT + ")", code):
            brace = code.find("{", m.end())
            semi = code.find(";", m.end())
            if brace < 0 or (0 <= semi < brace and "(" not in code[m.end():semi] + "("):
                continue
            # A trait method without a body ends at `;` before any `{`.
            sig = code[m.end():brace]
            if ";" in sig:
                continue
            end = matching_brace(code, brace)
            lines = code.count("\n", m.start(), end) + 1
            found.append((lines, f"{crate}/src/{rel}", m.group(1), code.count("\n", 0, m.start()) + 1))
    return found


def folder_lines():
    counts = collections.Counter()
    for crate in CRATES:
        for path, rel in crate_files(crate):
            folder = f"{crate}/src/" + ("/".join(rel.parts[:-1]) + "/" if len(rel.parts) > 1 else "")
            counts[folder] += len(path.read_text().splitlines())
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-fn-lines", type=int, default=100)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    broken = False
    functions = sorted((f for c in CRATES for f in long_functions(c)), reverse=True)
    for lines, file, name, line in functions:
        if lines > args.max_fn_lines:
            print(f"function over {args.max_fn_lines} lines: {file}:{line} {name} ({lines} lines)")
            broken = True
    for crate in CRATES:
        for circle in import_circles(crate):
            print(f"import circle in {crate}: " + "; ".join(circle))
            broken = True
    if args.report:
        print("longest functions:")
        for lines, file, name, line in functions[:15]:
            print(f"  {lines:4} {file}:{line} {name}")
        print("lines per folder (production files):")
        for folder, n in sorted(folder_lines().items()):
            print(f"  {n:6} {folder}")
    if not broken:
        print(f"house rules hold: no function over {args.max_fn_lines} lines, no import circle")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
