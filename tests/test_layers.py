"""The layer rule: a module imports only from its own layer or the ones below it.

io → faces → regions → models → (registry, hub, loading) → pipeline → (video, ui, cli); ``models/``
never imports ``hub`` (the model layer does not depend on the network layer), and ``train/``
imports the library, never the reverse.
"""

from __future__ import annotations

import ast

import pytest

from conftest import REPO

PACKAGE = REPO / "portrait_stylize"
#: Top-level module or sub-package -> layer (higher may import lower, never the reverse).
LAYERS = {
    "errors": 0, "options": 0, "version": 0, "common": 0,
    "imaging": 1, "faces": 2, "models": 3, "runtime": 4, "convert": 4, "sources": 5,
    "loading": 6, "pipeline": 7, "video": 8, "batch": 8, "evaluation": 8, "cli": 9, "ui": 9,
    "__init__": 10, "__main__": 10,
}


def _unit(path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path) -> set[str]:
    """Package units that ``path`` imports (absolute or relative, at any depth, lazily or not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for top-level modules, 1 inside sub-packages
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = (node.module or "").split(".")
                if node.level == depth + 1:  # relative to the package root
                    names = [parts[0]] if parts[0] else [a.name for a in node.names]
                    found.update(names)
                elif node.level == 1 and depth == 1:
                    found.add(path.relative_to(PACKAGE).parts[0])
            elif node.module and node.module.startswith("portrait_stylize"):
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "portrait_stylize":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert {_unit(p) for p in MODULES} <= set(LAYERS), {_unit(p) for p in MODULES} - set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path):
    unit = _unit(path)
    upward = sorted(u for u in _imported_units(path) if u != unit and LAYERS.get(u, 99) > LAYERS[unit])
    assert upward == [], f"{path.relative_to(REPO)} (layer {LAYERS[unit]}) imports higher layers: {upward}"


def test_models_never_import_hub_or_loading():
    for path in (PACKAGE / "models").rglob("*.py"):
        assert not _imported_units(path) & {"hub", "loading", "registry", "pipeline"}, path


def test_the_library_never_imports_train():
    for path in MODULES:
        assert "import train" not in path.read_text() and "from train" not in path.read_text(), path


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """A live control: an upward import in a lower layer is reported."""
    bad = PACKAGE / "imaging" / "blending.py"
    monkeypatch.setattr(type(bad), "read_text", lambda self, **kw: "from ..pipeline import Stylizer\n")
    assert "pipeline" in _imported_units(bad)
