#!/usr/bin/env python3
"""Fails on an import cycle between edgeproxy's modules, or on a source file too long to read.

The module tree comes from the files under src/ (src/a.rs and src/a/mod.rs are `a`,
src/a/b.rs is `a::b`; src/bin/ holds other crates and is left out). Every `crate::` and
`super::` path in a file, in `use` items and in expressions alike, is an edge from the file's
module to the deepest module the path names. An edge counts between the two siblings under the
modules' nearest common ancestor: `a::x` naming `b::y` is an edge a → b among the crate's top
modules, `a::x` naming `a::y` an edge x → y among a's children. A module naming its own
ancestors' items, or its descendants, adds no edge: a parent is its children's facade.

At each level the siblings' graph must be acyclic; each cycle found is printed with one
reference per edge (file:line). Test code is left out: files named tests.rs, and everything
from a `#[cfg(test)]` attribute on.

A file of src/ may have at most MAX_LINES lines before its tests (its first `#[cfg(test)]`);
files named tests.rs hold only tests.

Usage: scripts/check-layers.py [--graph]   (--graph prints each level's edges)
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 400


def module_of(path):
    """The module path of a source file, as a tuple of names."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def code_of(text):
    """The file's non-test code, without comments and string literals."""
    cut = re.search(r"^\s*#\[cfg\(test\)\]", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand_use(tree):
    """The paths of a use tree such as `crate::{a::{b, c}, d}`, as lists of names."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, rest):
        if not rest.startswith("{"):
            name = rest.split(" as ")[0]
            out.append(prefix + [p for p in name.split("::") if p])
            return
        depth, start, inner = 0, 1, rest[1:-1]
        items, start = [], 0
        for i, ch in enumerate(inner):
            depth += ch == "{"
            depth -= ch == "}"
            if ch == "," and depth == 0:
                items.append(inner[start:i])
                start = i + 1
        items.append(inner[start:])
        for item in filter(None, items):
            head, sep, tail = item.partition("::{")
            if sep:
                walk(prefix + head.split("::"), "{" + tail)
            else:
                walk(prefix, item)

    head, sep, tail = tree.partition("::{")
    if sep:
        walk(head.split("::"), "{" + tail)
    else:
        walk([], tree)
    return out


def references(code):
    """(line, path) of every crate:: or super:: path in the code."""
    refs = []
    for m in re.finditer(r"\buse\s+((?:crate|super)\b[^;]*);", code):
        line = code.count("\n", 0, m.start()) + 1
        refs += [(line, p) for p in expand_use(m.group(1))]
    body = re.sub(r"\buse\s+(?:crate|super)\b[^;]*;", lambda m: "\n" * m.group(0).count("\n"), code)
    for m in re.finditer(r"\b((?:crate|super)(?:\s*::\s*(?:super|[A-Za-z_]\w*))+)", body):
        line = body.count("\n", 0, m.start()) + 1
        refs.append((line, re.sub(r"\s+", "", m.group(1)).split("::")))
    return refs


def resolve(source, path, modules):
    """The deepest module a path from `source` names, or None."""
    if path[0] == "crate":
        base, rest = (), path[1:]
    else:
        base, rest = source, path
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    target = base
    for name in rest:
        if target + (name,) in modules:
            target += (name,)
        else:
            break
    return target


def main():
    files = [p for p in SRC.rglob("*.rs") if "bin" not in p.relative_to(SRC).parts]
    modules = {module_of(p) for p in files}
    # level (a module) → sibling → sibling → first reference seen
    edges = defaultdict(lambda: defaultdict(dict))
    for path in sorted(files):
        if path.name == "tests.rs":
            continue
        source = module_of(path)
        for line, ref in references(code_of(path.read_text())):
            target = resolve(source, ref, modules)
            common = 0
            while common < min(len(source), len(target)) and source[common] == target[common]:
                common += 1
            if common == len(source) or common == len(target):
                continue  # an ancestor's items, or a descendant
            level, a, b = source[:common], source[common], target[common]
            edges[level][a].setdefault(b, f"{path.relative_to(SRC.parent)}:{line}")

    cycles = []
    for level, graph in sorted(edges.items()):
        if "--graph" in sys.argv:
            name = "::".join(level) or "crate"
            for a in sorted(graph):
                print(f"{name}: {a} -> {', '.join(sorted(graph[a]))}")
        cycles += [(level, c, graph) for c in strongly_connected(graph) if len(c) > 1]
    for level, component, graph in cycles:
        name = "::".join(level) or "the crate"
        print(f"check-layers: import cycle among {name}'s modules: {', '.join(sorted(component))}")
        for a in sorted(component):
            for b, where in sorted(graph[a].items()):
                if b in component:
                    print(f"  {a} -> {b}  ({where})")
    if cycles:
        print("check-layers: move the shared item down to a module both can import", file=sys.stderr)
    long = too_long(SRC.rglob("*.rs"))
    for path, lines in long:
        print(f"check-layers: {path.relative_to(SRC.parent)} has {lines} lines before its tests, over {MAX_LINES}; split it by job")
    return 1 if cycles or long else 0


def too_long(files):
    """(path, lines) of each file with more than MAX_LINES lines before its tests."""
    out = []
    for path in sorted(files):
        if path.name == "tests.rs":
            continue
        text = path.read_text()
        cut = re.search(r"^\s*#\[cfg\(test\)\]", text, re.M)
        lines = text[: cut.start() if cut else len(text)].count("\n")
        if lines > MAX_LINES:
            out.append((path, lines))
    return out


def strongly_connected(graph):
    """Tarjan's strongly connected components of a graph given as node → successors."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    nodes = set(graph) | {b for succ in graph.values() for b in succ}

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            out.append(component)

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
