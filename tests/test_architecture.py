"""The package's layering (docs/ARCHITECTURE.md): which module may import which, no import cycles, mlflow only
on the tracking side, the maths never importing training, and no file past the size one idea fits in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vibgan"

#: module -> the vibgan modules it may import (at module level or inside a function; ``if TYPE_CHECKING:``
#: blocks are type hints and do not count). Data flows one way: load -> windows -> dataset -> train ->
#: generator -> generate -> validate, with tracking beside; docs/ARCHITECTURE.md draws the same table.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "files": set(),
    "progress": set(),
    "champion": set(),
    "bearing": {"errors"},
    "cwru": {"errors"},
    "spectral": {"errors"},
    "device": {"errors"},
    "distributed": {"errors"},
    "losses": {"spectral"},
    "config": {"errors", "bearing", "champion", "device", "losses"},
    "recordings": {"errors", "cwru"},
    "catalog": {"errors", "cwru", "recordings"},
    "manifest": {"errors", "bearing", "catalog", "files", "recordings"},
    "windows": {"errors", "recordings"},
    "normalize": {"errors", "cwru", "recordings"},
    "exchange": {"errors", "cwru", "files", "recordings", "windows"},
    "synthetic": {"errors", "bearing", "recordings"},
    "datasets": {"errors", "bearing", "catalog", "config", "cwru", "exchange", "manifest", "losses", "normalize", "recordings", "spectral", "synthetic", "windows"},
    "networks": {"errors", "bearing", "config"},
    "generator": {"vibgan", "errors", "config", "files", "networks", "normalize"},
    "checkpoints": {"errors", "files", "networks"},
    "calibrate": {"datasets", "generator", "losses", "progress"},
    "classify": {"errors", "spectral"},
    "transfer": {"errors", "recordings", "spectral"},
    "cycle": {"errors"},
    "validate": {"errors", "bearing", "classify", "config", "progress", "spectral", "windows"},
    "report": {"errors", "progress", "spectral", "validate"},
    "provenance": {"vibgan", "config", "device", "files"},
    "serving": {"errors", "device", "generator"},
    "tracking": {"errors", "config", "files", "provenance", "serving"},
    "registry": {"errors", "champion", "generator", "progress", "serving", "tracking"},
    "distill": {"config", "errors", "generator", "networks"},
    "train": {"errors", "calibrate", "checkpoints", "config", "datasets", "device", "distill", "distributed", "generator",
              "losses", "networks", "progress", "report", "spectral", "tracking"},
    "__init__": {"errors", "registry"},
}
#: the only modules that may import mlflow
MLFLOW = {"tracking", "registry", "serving"}
#: signal maths and metrics: they never import the training side
MATHS = {"spectral", "losses", "bearing", "windows", "normalize", "validate", "classify", "synthetic", "transfer",
         "cycle"}
TRAINING = {"train", "calibrate", "distill", "checkpoints", "datasets", "tracking", "registry", "serving", "provenance"}
MAX_LINES = 800


def imports_of(source: str, *, module_level_only: bool = False) -> set[str]:
    """vibgan modules (by short name; ``vibgan`` for the package) and third-party top-level packages (as
    ``@name``) that ``source`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(source)
    hidden = {id(m) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
              for m in ast.walk(n)}
    nodes = tree.body if module_level_only else ast.walk(tree)
    found: set[str] = set()
    for n in nodes:
        if id(n) in hidden:
            continue
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            if n.module == "vibgan":
                found |= {a.name for a in n.names}
            elif n.module.startswith("vibgan."):
                found.add(n.module.split(".")[1])
            else:
                found.add("@" + n.module.split(".")[0])
        elif isinstance(n, ast.Import):
            for a in n.names:
                name = a.name
                found.add(name.split(".")[1] if name.startswith("vibgan.") else
                          "vibgan" if name == "vibgan" else "@" + name.split(".")[0])
    return found


def modules() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(PACKAGE.glob("*.py"))}


def test_the_import_parser_sees_function_level_imports_and_skips_type_hints():
    src = ("from typing import TYPE_CHECKING\nimport mlflow.pyfunc\nfrom vibgan import losses\n"
           "if TYPE_CHECKING:\n    from vibgan.datasets import TrainData\n"
           "def f():\n    from vibgan.train import train\n    import vibgan.tracking\n")
    assert imports_of(src) == {"@typing", "@mlflow", "losses", "train", "tracking"}
    assert imports_of(src, module_level_only=True) == {"@typing", "@mlflow", "losses"}


def test_every_module_has_a_place_in_the_layering():
    assert set(modules()) == set(ALLOWED), "add the new module to ALLOWED here and to docs/ARCHITECTURE.md"


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_each_module_imports_only_what_it_may(name):
    src = modules().get(name)
    if src is None:
        pytest.skip(f"vibgan/{name}.py does not exist")
    used = {m for m in imports_of(src) if not m.startswith("@")} - {name}
    assert used <= ALLOWED[name], f"vibgan/{name}.py imports {sorted(used - ALLOWED[name])}, which it may not"


def test_only_the_tracking_side_imports_mlflow():
    users = {name for name, src in modules().items() if "@mlflow" in imports_of(src)}
    assert users <= MLFLOW, f"{sorted(users - MLFLOW)} import mlflow; only {sorted(MLFLOW)} may"


def test_the_maths_never_imports_training():
    for name in MATHS:
        bad = imports_of(modules()[name]) & TRAINING
        assert not bad, f"vibgan/{name}.py imports {sorted(bad)}"


def test_no_import_cycles():
    graph = {name: {m for m in imports_of(src) if m in ALLOWED and m != name} for name, src in modules().items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_module_is_longer_than_one_idea_needs():
    long = {name: src.count("\n") for name, src in modules().items() if src.count("\n") > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}; split them by idea"
