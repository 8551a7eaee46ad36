#!/usr/bin/env python3
"""Prints every cycle between the source files of each crate and exits 1 if there is one.

A crate's module tree comes from its `mod` declarations (with `#[path]`); an arrow A -> B
is a `crate::`, `super::` or `self::` path in A (in a `use` or in code) that names a
module of file B or an item that B's module re-exports (`pub use`). Test modules
(`#[cfg(test)]`) are left out: a test may compare a kernel against its neighbour's
reference. A child naming its parent's items (`use super::X`) is not a cycle by itself:
`mod` declarations are not arrows.

    python3 scripts/check_module_cycles.py [CRATE_DIR ...]   (default: crates/*)
"""

import re
import sys
from pathlib import Path

MOD_DECL = re.compile(
    r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*([;{])"
)
PATH_ATTR = re.compile(r'#\[path\s*=\s*"([^"]+)"\]')
USE_STMT = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")
CHAR_LITERAL = re.compile(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'")
CODE_PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def strip_comments_and_strings(text):
    """The code with comments, strings and chars blanked (line breaks kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and CHAR_LITERAL.match(text, i):
            out.append("' '")
            i = CHAR_LITERAL.match(text, i).end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text, open_index):
    depth = 0
    for j in range(open_index, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = {}  # module path (tuple) -> file
        self.code = {}  # file -> [(module path, code)] outside test modules
        self.reexports = {}  # module path -> {name: target path tuple}

    def load(self, file, module, directory):
        text = strip_comments_and_strings(file.read_text(encoding="utf-8"))
        self.files.setdefault(module, file)
        self.scan(text, file, module, directory)

    def scan(self, text, file, module, directory):
        """Registers the code of `module` (in `file`) and loads its child modules."""
        pieces, position = [], 0
        for match in MOD_DECL.finditer(text):
            if match.start() < position:
                continue
            attributes, name, kind = match.group(1), match.group(2), match.group(3)
            is_test = "cfg(test)" in attributes.replace(" ", "")
            child = module + (name,)
            pieces.append(text[position:match.start()])
            if kind == "{":
                end = matching_brace(text, match.end() - 1)
                if not is_test:
                    self.scan(text[match.end():end], file, child, directory / name)
                position = end + 1
                continue
            position = match.end()
            if is_test:
                continue
            path = PATH_ATTR.search(attributes)
            if path:
                target = directory / path.group(1)
            elif (directory / f"{name}.rs").is_file():
                target = directory / f"{name}.rs"
            else:
                target = directory / name / "mod.rs"
            if target.is_file():
                self.load(target, child, target.parent if target.name == "mod.rs" or path else directory / name)
        pieces.append(text[position:])
        code = "".join(pieces)
        self.code.setdefault(file, []).append((module, code))
        for use in USE_STMT.finditer(code):
            if use.group(1):
                for path in expand_use(use.group(2)):
                    absolute = absolute_path(module, path)
                    if absolute is not None and absolute:
                        self.reexports.setdefault(module, {})[absolute[-1] if path[-1] != "*" else "*"] = absolute

    def file_of(self, path, seen=()):
        """The file that defines what `path` (absolute, from the crate root) names."""
        for length in range(len(path), -1, -1):
            prefix = path[:length]
            if prefix in self.files:
                rest = path[length:]
                if rest and prefix in self.reexports and rest[0] in self.reexports[prefix] and prefix not in seen:
                    target = self.reexports[prefix][rest[0]]
                    return self.file_of(target + rest[1:], seen + (prefix,))
                return self.files[prefix]
        return None

    def arrows(self):
        arrows = {}
        for file, parts in self.code.items():
            for module, code in parts:
                paths = []
                for use in USE_STMT.finditer(code):
                    paths += expand_use(use.group(2))
                for match in CODE_PATH.finditer(USE_STMT.sub("", code)):
                    paths.append([match.group(1)] + match.group(2).split("::")[1:])
                for path in paths:
                    absolute = absolute_path(module, [p for p in path if p != "*"])
                    if absolute is None:
                        continue
                    target = self.file_of(absolute)
                    if target is not None and target != file:
                        arrows.setdefault(file, set()).add(target)
        return arrows


def expand_use(tree):
    """`a::{b, c::d}` -> [[a, b], [a, c, d]]; `x as y` keeps x."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+[A-Za-z_0-9]+", "", tree))
    if "{" not in tree:
        return [tree.split("::")] if tree else []
    head, _, rest = tree.partition("{")
    inner = rest[: rest.rfind("}")]
    items, depth, current = [], 0, ""
    for c in inner:
        if c == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        depth += c == "{"
        depth -= c == "}"
        current += c
    items.append(current)
    prefix = [p for p in head.split("::") if p]
    paths = []
    for item in items:
        if item:
            for path in expand_use(item):
                paths.append(prefix + [p for p in path if p and p != "self"] if path != ["self"] else prefix)
    return paths


def absolute_path(module, path):
    """A `crate::`/`super::`/`self::` path from `module` as a tuple from the root."""
    if not path:
        return None
    if path[0] == "crate":
        return tuple(path[1:])
    if path[0] in ("super", "self"):
        base = list(module)
        while path and path[0] in ("super", "self"):
            if path[0] == "super":
                if not base:
                    return None
                base.pop()
            path = path[1:]
        return tuple(base + path)
    return None


def cycles(arrows):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    nodes = sorted(set(arrows) | {t for ts in arrows.values() for t in ts})

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(arrows.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in nodes:
        if node not in index:
            visit(node)
    return found


def main(arguments):
    root = Path(__file__).resolve().parent.parent
    crates = [Path(a) for a in arguments] or sorted(p for p in (root / "crates").iterdir() if (p / "src").is_dir())
    failed = False
    for crate_dir in crates:
        src = crate_dir / "src"
        roots = [r for r in (src / "lib.rs", src / "main.rs") if r.is_file()]
        for crate_root in roots:
            crate = Crate(src)
            crate.load(crate_root, (), src)
            arrows = crate.arrows()
            for component in cycles(arrows):
                failed = True
                members = set(component)
                print(f"cycle in {crate_dir.name}: " + ", ".join(str(f.relative_to(root)) for f in component))
                for file in component:
                    for target in sorted(arrows.get(file, ())):
                        if target in members:
                            print(f"  {file.relative_to(root)} -> {target.relative_to(root)}")
    if not failed:
        print("no module cycles")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
