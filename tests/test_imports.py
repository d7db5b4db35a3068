"""The package's import graph: no cycles, and dependencies point one way (cli -> commands -> the work
-> its parts -> core helpers). Read from the source, so imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import theris_cli

PACKAGE = Path(theris_cli.__file__).resolve().parent

# Layers from the top; a module may import its own layer or any below it, never one above.
LAYERS = [
    ("cli", ["theris_cli.cli", "theris_cli.__main__"]),
    ("commands", ["theris_cli.commands"]),
    ("work", ["theris_cli.demo", "theris_cli.preview", "theris_cli.batch", "theris_cli.train", "theris_cli.eval",
              "theris_cli.protocol", "theris_cli.splits",
              "theris_cli.engine"]),
    ("parts", ["theris_cli.model", "theris_cli.video", "theris_cli.weights", "theris_cli.engine.windows",
               "theris_cli.engine.stitch", "theris_cli._shipped_weights"]),
    ("core", ["theris_cli.errors", "theris_cli.humanize", "theris_cli.devices", "theris_cli.outputs",
              "theris_cli.ops", "theris_cli.engine.hugepages", "theris_cli"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "_shipped_weights" in path.parts:
            continue
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """theris_cli modules that `name` imports anywhere in its source (TYPE_CHECKING blocks included)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer(name: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (rank, len(p))
    assert best is not None, f"{name} is in no layer of LAYERS: add it where it belongs"
    return best[0]


def test_no_import_cycle():
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert cycles == [], f"import cycles: {cycles}"


def test_dependencies_point_down():
    g = graph()
    upward = sorted(f"{a} -> {b}" for a, deps in g.items() for b in deps if layer(b) < layer(a))
    assert upward == [], "imports against the direction cli -> commands -> work -> parts -> core:\n" + "\n".join(upward)


def test_training_and_evaluation_do_not_import_each_other():
    g = graph()
    crossing = sorted(f"{a} -> {b}" for a, deps in g.items() for b in deps
                      if {(a.split(".") + [""])[1], (b.split(".") + [""])[1]} == {"train", "eval"})
    assert crossing == [], crossing


def test_the_cli_starts_without_torch():
    # `theris --help` and `--version` stay instant: torch, numpy and PyAV load when a command runs
    import subprocess
    import sys

    code = "import sys, theris_cli.cli; print(sorted(m for m in ('torch', 'numpy', 'av') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
