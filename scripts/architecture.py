"""Draw ``docs/architecture.png``: the layers of ``src/tinyformers`` and the imports between them, read from the code.

    python scripts/architecture.py                 # writes docs/architecture.png and prints every layer edge
    python scripts/architecture.py --out x.png     # somewhere else

Every ``.py`` file of the package is parsed with :mod:`ast` (nothing is imported, so it takes no time and needs
no torch). An import is *module-level* when it sits outside every function and class (inside ``if`` or ``try``
at the top it still runs on import); one inside a function is *lazy*: it runs when the function does (the
CLI's per-command imports, heavy optional packages). Each arrow joins two layers and counts the distinct
``(importing module, imported module)`` pairs; lazy pairs are counted apart. An arrow that points up a layer
or sideways between siblings is drawn red and listed, and the script exits with status 1:
``lint-imports`` (``make test``) is what enforces the direction, this only draws it.
"""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "tinyformers"


@dataclass(frozen=True)
class Layer:
    """A box of the picture: the modules whose names start with one of ``prefixes``, drawn in row ``row``
    (0 = top) between ``left`` and ``right`` (inches)."""

    name: str
    title: str
    prefixes: tuple[str, ...]
    row: int
    left: float
    right: float
    color: str


WIDTH = 12.0  # the boxes; the lanes of the long arrows are to their right
LAYERS = (
    Layer("apps", "apps/  the commands, for people", ("tinyformers.apps", f"{PACKAGE}.__main__"), 0, 0, WIDTH, "C0"),
    Layer("tasks", "tasks/  one plug-in per task (+ the registry)", ("tinyformers.tasks",), 1, 0, WIDTH, "C1"),
    Layer("engine", "engine/  runs a task", ("tinyformers.engine",), 2, 0, 3.9, "C2"),
    Layer("data", "data/  loaders, users' files", ("tinyformers.data",), 2, 4.05, 7.95, "C4"),
    Layer("viz", "viz/  figures", ("tinyformers.viz",), 2, 8.1, WIDTH, "C6"),
    Layer("core", "core/  the transformer", ("tinyformers.core",), 3, 0, WIDTH, "C3"),
    Layer(
        "base",
        "io.py · errors.py · __init__.py  under every layer",
        ("tinyformers.io", "tinyformers.errors", "tinyformers"),
        4,
        0,
        WIDTH,
        "C7",
    ),
)
BY_NAME = {layer.name: layer for layer in LAYERS}


def module_files() -> dict[str, Path]:
    """``{"tinyformers.engine.task": path, ...}``; a package is its ``__init__.py``."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer_of(module: str) -> Layer:
    """The layer with the longest prefix of ``module`` (``tinyformers`` alone is the package's ``__init__``)."""
    matches = [
        (len(p), layer)
        for layer in LAYERS
        for p in layer.prefixes
        if module == p or (module.startswith(p + ".") and p != PACKAGE)
    ]
    if not matches:
        raise SystemExit(f"{module}: in no layer; add its package to LAYERS in scripts/architecture.py")
    return max(matches, key=lambda m: m[0])[1]


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its nearest enclosing module of the package (``a.b.func`` -> ``a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """The package's modules that ``module`` imports, each with whether the import is lazy (in a function)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef)
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the package, up level - 1 packages
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                names = [f"{base}.{alias.name}" for alias in child.names]  # a submodule, or a name in base
            else:
                visit(child, inner)
                continue
            for name in names:
                target = _known(name, modules) if name.split(".")[0] == PACKAGE else None
                if target and target != module:
                    found.append((target, lazy))

    visit(tree, False)
    return found


def layer_edges(modules: dict[str, Path]) -> tuple[Counter, Counter]:
    """``(module-level, lazy)`` counts of distinct module pairs per ``(from layer, to layer)``, between layers."""
    eager: set[tuple[str, str]] = set()
    lazy: set[tuple[str, str]] = set()
    for module, path in modules.items():
        for target, is_lazy in imports_of(module, path, modules):
            (lazy if is_lazy else eager).add((module, target))
    lazy -= eager  # imported at module level too: the lazy import changes nothing

    def count(pairs: set[tuple[str, str]]) -> Counter:
        return Counter((layer_of(a).name, layer_of(b).name) for a, b in pairs if layer_of(a).name != layer_of(b).name)

    return count(eager), count(lazy)


def allowed(source: Layer, target: Layer) -> bool:
    """Down only: a lower row (siblings of one row never import each other)."""
    return target.row > source.row


def box_lines(layer: Layer, modules: dict[str, Path]) -> list[str]:
    """The layer's modules, ``models/: base, decoder`` for a subpackage, wrapped to the box."""
    names: dict[str, list[str]] = {"": []}  # subpackage ("" = none) -> its modules
    for module in modules:
        if layer_of(module) is not layer:
            continue
        prefix = max((p for p in layer.prefixes if module == p or module.startswith(p + ".")), key=len)
        rest = module[len(prefix) + 1 :]
        if layer.name == "base":
            names[""].append(module.rpartition(".")[2] if module != PACKAGE else "__init__ (__version__)")
        elif module == f"{PACKAGE}.__main__":
            names[""].append("../__main__")
        elif "." in rest:
            head, _, tail = rest.partition(".")
            names.setdefault(head, []).append(tail)
        elif rest and modules[module].name == "__init__.py":
            names.setdefault(rest, [])
        elif rest:  # (a layer's own __init__ is said by the title)
            names[""].append(rest)
    items = sorted(names.pop("", []))
    items += [f"{sub}/: " + ", ".join(sorted(subs)) for sub, subs in sorted(names.items())]
    width = int((layer.right - layer.left) / 0.075)  # characters of 8.5 pt that fit the box
    return textwrap.wrap("  ·  ".join(items), width=width, break_on_hyphens=False)


def draw(modules: dict[str, Path], out: Path) -> list[str]:
    """Write the picture; return the edges that break the layering (drawn red).

    An arrow between neighbouring rows is a straight line. A longer one (or a wrong-way one) leaves its box at the
    bottom, runs in the gap below to a lane right of the boxes, down the lane, and in the gap above its target
    back left: lanes nearer the boxes for targets higher up, ports ordered so that few lines cross.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    eager, lazy = layer_edges(modules)
    edges = sorted(set(eager) | set(lazy))
    lines = {layer.name: box_lines(layer, modules) for layer in LAYERS}
    rows = max(layer.row for layer in LAYERS) + 1

    def ends(edge: tuple[str, str]) -> tuple[Layer, Layer]:
        return BY_NAME[edge[0]], BY_NAME[edge[1]]

    straight = [e for e in edges if ends(e)[1].row - ends(e)[0].row == 1]
    lanes = sorted(
        (e for e in edges if e not in straight), key=lambda e: (ends(e)[1].row, -ends(e)[0].row, ends(e)[0].left)
    )
    # the gap below row r: first the lines leaving row r for their lanes, then those coming in to row r + 1
    outs = {r: [e for e in lanes if ends(e)[0].row == r] for r in range(rows)}
    ins = {r: [e for e in lanes if ends(e)[1].row == r + 1] for r in range(rows)}
    step, line_h, head_h = 0.16, 0.2, 0.42
    heights = [max(head_h + line_h * len(lines[la.name]) + 0.15 for la in LAYERS if la.row == r) for r in range(rows)]
    gaps = [0.75 + step * (len(outs[r]) + len(ins[r])) for r in range(rows)]
    top, y = {}, 0.0
    for r in range(rows):
        top[r] = -y
        y += heights[r] + gaps[r]
    bottom = -(y - gaps[-1])

    fig_w = WIDTH + 0.6 + 0.3 * len(lanes) + 0.3
    fig = plt.figure(figsize=(fig_w, -bottom + 1.3))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.3, fig_w - 0.3)
    ax.set_ylim(bottom - 0.9, 0.4)
    ax.axis("off")
    for la in LAYERS:
        t, h = top[la.row], heights[la.row]
        face = matplotlib.colors.to_rgba(la.color, 0.12)
        box = FancyBboxPatch((la.left, t - h), la.right - la.left, h, boxstyle="round,pad=0,rounding_size=0.08")
        box.set(facecolor=face, edgecolor=la.color, linewidth=1.5)
        ax.add_patch(box)
        ax.text(la.left + 0.12, t - 0.12, la.title, fontsize=11, fontweight="bold", va="top", color=la.color)
        for i, text in enumerate(lines[la.name]):
            ax.text(la.left + 0.12, t - head_h - i * line_h, text, fontsize=8.5, va="top", family="monospace")

    def spread(lo: float, hi: float, i: int, n: int) -> float:
        return lo + (hi - lo) * (i + 1) / (n + 1)

    def straight_x(edge: tuple[str, str]) -> float:
        """A straight arrow's x: spread over the narrower of its two boxes, among that box's straight arrows."""
        src, dst = ends(edge)
        side, box = (0, src) if src.right - src.left <= dst.right - dst.left else (1, dst)
        mine = sorted((e for e in straight if e[side] == box.name), key=lambda e: ends(e)[1 - side].left)
        return spread(box.left, box.right, mine.index(edge), len(mine))

    def lane_port(layer: Layer, edge: tuple[str, str], side: int) -> float:
        """Where a lane arrow leaves (side 0) or enters (side 1) ``layer``: right of its straight arrows, the
        innermost lane leftmost."""
        lo = max([layer.left, *(straight_x(e) for e in straight if e[side] == layer.name)])
        mine = [e for e in lanes if e[side] == layer.name]
        return spread(lo, layer.right, mine.index(edge), len(mine))

    bad = []
    for edge in edges:
        src, dst = ends(edge)
        ok = allowed(src, dst)
        if not ok:
            bad.append(f"{edge[0]} -> {edge[1]}")
        color = src.color if ok else "red"
        style = "-" if eager.get(edge) else "--"
        y_s, y_t = top[src.row] - heights[src.row], top[dst.row]
        if edge in straight:
            x_t = straight_x(edge)
            start = (x_t, y_s)
            label_y = y_t + 0.22  # below the lanes' channels of this gap
        else:
            x_s, x_t = lane_port(src, edge, 0), lane_port(dst, edge, 1)
            lane_x = WIDTH + 0.45 + 0.3 * lanes.index(edge)
            n_out = len(outs[src.row])
            y_out = y_s - 0.3 - step * (n_out - 1 - outs[src.row].index(edge))  # inner lanes lowest
            g = dst.row - 1  # the gap above the target (below the source for a wrong-way edge)
            y_in = top[g] - heights[g] - 0.3 - step * (len(outs[g]) + ins[g].index(edge)) if g >= 0 else y_t + 0.3
            path = [(x_s, y_s), (x_s, y_out), (lane_x, y_out), (lane_x, y_in), (x_t, y_in)]
            ax.plot(*zip(*path, strict=True), color=color, linestyle=style, linewidth=1.4)
            start = (x_t, y_in)
            label_y = y_in
        arrow = {"arrowstyle": "-|>", "color": color, "linestyle": style, "linewidth": 1.4, "mutation_scale": 14}
        ax.annotate("", xy=(x_t, y_t), xytext=start, arrowprops={**arrow, "shrinkA": 0, "shrinkB": 0})
        n, m = eager.get(edge, 0), lazy.get(edge, 0)
        text = " + ".join([*([str(n)] if n else []), *([f"{m} lazy"] if m else [])])
        bbox = {"facecolor": "white", "edgecolor": "none", "pad": 0.5}
        ax.text(x_t + 0.07, label_y, text, fontsize=8.5, color=color, va="center", ha="left", bbox=bbox)

    ax.text(
        0,
        bottom - 0.35,
        "Arrows: imports between layers, counted as distinct (module, module) pairs from the code; 'lazy' = "
        "inside a function (run when it runs);\ndashed = lazy only. Drawn by scripts/architecture.py; "
        "enforced by the import-linter contract in pyproject.toml (lint-imports, in make test).",
        fontsize=8.5,
        va="top",
        color="0.3",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.png")
    args = parser.parse_args(argv)
    modules = module_files()
    eager, lazy = layer_edges(modules)
    for s, d in sorted(set(eager) | set(lazy)):
        print(f"{s:>6} -> {d:<6} {eager.get((s, d), 0):3d} module-level, {lazy.get((s, d), 0):3d} lazy")
    bad = draw(modules, args.out)
    print(f"wrote {args.out}")
    for edge in bad:
        print(f"against the layers: {edge}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
