#!/usr/bin/env python3
"""Structure check for src/: what the architecture promises and a reader relies on.

- No import cycle between the top-level modules of the crate (`crate::a` -> `crate::b` -> ... ->
  `crate::a`), nor between sibling submodules inside one module (`crate::store::x` <->
  `crate::store::y`). A child naming its own parent is not a cycle: the parent declares it.
- No source file over MAX_FILE lines (test modules at the end of a file and `tests.rs` files
  are not counted).
- No function over MAX_FN lines (outside tests).

Reads the files as text: Rust's grammar is approximated (strings, chars and comments are blanked
before braces are matched), which is enough for rustfmt-formatted code. Exit 1 on a violation,
with one line per problem; `--report` prints the numbers without failing.
"""

import re
import sys
from pathlib import Path

MAX_FILE = 600
MAX_FN = 80
ROOT = Path(__file__).resolve().parent.parent / "src"

STRIP = re.compile(
    r'//[^\n]*|/\*.*?\*/|b?r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|b?\'(?:\\.|[^\'\\])\'', re.S
)


def blank(text: str) -> str:
    """Replace comments and literals by spaces, keeping line breaks (so line numbers hold)."""
    return STRIP.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def module_path(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def code_lines(text: str) -> list[str]:
    """The file's lines up to its `#[cfg(test)]` module, if any."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            return lines[:i]
    return lines


def functions(text: str):
    """(name, first line, length) of each `fn` with a body, by brace matching."""
    clean = blank(text)
    for m in re.finditer(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)", clean):
        start = m.start()
        depth, i, body = 0, m.end(), None
        # Find the body's opening brace before any `;` at depth 0 (a declaration has none).
        paren = 0
        while i < len(clean):
            c = clean[i]
            if c in "(<[":
                paren += 1
            elif c in ")>]":
                paren -= 1
            elif c == ";" and paren <= 0:
                break
            elif c == "{" and paren <= 0:
                body = i
                break
            i += 1
        if body is None:
            continue
        depth = 0
        for j in range(body, len(clean)):
            if clean[j] == "{":
                depth += 1
            elif clean[j] == "}":
                depth -= 1
                if depth == 0:
                    first = clean.count("\n", 0, start) + 1
                    last = clean.count("\n", 0, j) + 1
                    yield m.group(1), first, last - first + 1
                    break


def uses(text: str, own: list[str]):
    """Module paths this file names, made absolute (`crate::`, `super::`)."""
    clean = blank(text)
    found = set()
    for m in re.finditer(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)", clean):
        segs = m.group(2).split("::")[1:]
        if m.group(1) == "crate":
            found.add(tuple(segs))
        else:
            found.add(tuple(own[:-1] + segs))
    # `use crate::x::{a, b::c}`: the names inside braces are submodules too (or items).
    for m in re.finditer(r"\buse\s+crate::([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?::\{([^;]*)\}", clean):
        for name in re.findall(r"(?:^|[{,\s])([a-z_][a-z0-9_]*)\s*(?:::|,|}|$)", m.group(3)):
            found.add(tuple(x for x in (m.group(1), m.group(2), name) if x))
    return found


def find_cycle(graph: dict):
    seen, stack, on = set(), [], set()

    def visit(n):
        seen.add(n)
        stack.append(n)
        on.add(n)
        for m in sorted(graph.get(n, ())):
            if m in on:
                return stack[stack.index(m):] + [m]
            if m not in seen:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        on.discard(n)
        return None

    for n in sorted(graph):
        if n not in seen:
            c = visit(n)
            if c:
                return c
    return None


def main() -> int:
    report = "--report" in sys.argv
    files = sorted(p for p in ROOT.rglob("*.rs"))
    modules = {tuple(module_path(p)) for p in files}
    problems, sizes, longest = [], [], []
    top: dict = {}
    siblings: dict = {}
    for p in files:
        text = p.read_text()
        own = module_path(p)
        rel = p.relative_to(ROOT.parent)
        is_test = p.name == "tests.rs"
        if not is_test:
            lines = code_lines(text)
            sizes.append((len(lines), str(rel)))
            if len(lines) > MAX_FILE:
                problems.append(f"{rel}: {len(lines)} lines (most {MAX_FILE})")
            for name, first, n in functions("\n".join(lines)):
                longest.append((n, f"{rel}:{first} {name}"))
                if n > MAX_FN:
                    problems.append(f"{rel}:{first}: fn {name} is {n} lines (most {MAX_FN})")
        if not own:
            continue
        for target in uses(text, own):
            # The longest prefix of the path that is a module of the crate.
            mod = next((target[:k] for k in range(len(target), 0, -1) if target[:k] in modules), None)
            if not mod:
                continue
            if mod[0] != own[0]:
                top.setdefault(own[0], set()).add(mod[0])
            elif len(own) >= 2 and len(mod) >= 2 and mod[1] != own[1]:
                siblings.setdefault(own[0], {}).setdefault(own[1], set()).add(mod[1])
    cycle = find_cycle(top)
    if cycle:
        problems.append("import cycle between modules: " + " -> ".join(cycle))
    for parent, graph in sorted(siblings.items()):
        cycle = find_cycle(graph)
        if cycle:
            problems.append(f"import cycle inside {parent}: " + " -> ".join(cycle))
    if report:
        print("largest files:")
        for n, f in sorted(sizes, reverse=True)[:10]:
            print(f"  {n:5} {f}")
        print("longest functions:")
        for n, f in sorted(longest, reverse=True)[:10]:
            print(f"  {n:5} {f}")
        print("module dependencies:")
        for m in sorted(top):
            print(f"  {m} -> {' '.join(sorted(top[m]))}")
    for p in problems:
        print(p)
    if problems and not report:
        return 1
    if not problems:
        print("structure: no import cycle, no file over", MAX_FILE, "lines, no function over", MAX_FN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
