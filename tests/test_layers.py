"""The architecture as written in docs/development.md, checked against the code.

The layer table there is the rule: a unit (top-level module or subpackage) imports only units of
its own layer or lower ones. ``train/`` imports the library, never the reverse. The module map
there lists every file of the package.
"""

from __future__ import annotations

import ast
import re

import pytest

from helpers import REPO

PACKAGE = REPO / "portrait_stylize"
DEVELOPMENT = REPO / "docs" / "development.md"


def read_layers(text: str) -> dict[str, int]:
    """Unit -> layer from the table between the ``<!-- layers`` markers of docs/development.md."""
    block = re.search(r"<!-- layers.*?-->(.*?)<!-- /layers -->", text, re.S)
    assert block, f"{DEVELOPMENT}: no layer table between <!-- layers --> markers"
    layers = {}
    for row in re.findall(r"^\|\s*(\d+)\s*\|([^|]*)\|", block.group(1), re.M):
        for unit in re.findall(r"`([\w.]+)`", row[1]):
            layers[unit] = int(row[0])
    return layers


LAYERS = read_layers(DEVELOPMENT.read_text(encoding="utf-8"))
MODULES = sorted(PACKAGE.rglob("*.py"))


def _unit(path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path, source: str | None = None) -> set[str]:
    """Package units that ``path`` imports (absolute or relative, at any depth, lazily or not)."""
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    rel = path.relative_to(PACKAGE)
    package = list(rel.parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.level - 1 <= len(package), f"{rel}: a relative import above the package"
                base = package[: len(package) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
                found.update([parts[0]] if parts else [a.name for a in node.names])
            elif node.module and node.module.split(".")[0] == "portrait_stylize":
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "portrait_stylize":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def test_every_module_has_a_layer():
    assert {_unit(p) for p in MODULES} <= set(LAYERS), {_unit(p) for p in MODULES} - set(LAYERS)


def test_the_table_names_no_unit_that_is_gone():
    assert set(LAYERS) <= {_unit(p) for p in MODULES}, set(LAYERS) - {_unit(p) for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path):
    unit = _unit(path)
    upward = sorted(u for u in _imported_units(path) if u != unit and LAYERS.get(u, 99) > LAYERS[unit])
    assert upward == [], f"{path.relative_to(REPO)} (layer {LAYERS[unit]}) imports higher layers: {upward}"


def test_the_library_never_imports_train():
    for path in MODULES:
        assert "import train" not in path.read_text() and "from train" not in path.read_text(), path


def test_at_most_ten_top_level_modules_and_every_subpackage_says_what_it_may_import():
    top = [p for p in PACKAGE.glob("*.py")]
    packages = [p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()]
    assert len(top) <= 10, sorted(p.name for p in top)
    assert len(packages) >= 5
    for package in packages:
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert re.search(r"may\s+import", docstring, re.I), f"{package.name}/__init__.py: say what it may import"


def test_the_module_map_lists_every_file():
    text = DEVELOPMENT.read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `([\w/]+\.py)` \|.*\| (\d+) \|$", text, re.M))
    files = {p.relative_to(PACKAGE).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES
             if not (p.name == "__init__.py" and p.parent != PACKAGE)}
    assert set(listed) == set(files), {"not in the map": sorted(set(files) - set(listed)),
                                       "gone": sorted(set(listed) - set(files))}
    stale = {f: (int(listed[f]), n) for f, n in files.items() if abs(int(listed[f]) - n) > max(25, n // 4)}
    assert not stale, f"{DEVELOPMENT}: update the lines of {stale} (listed, now)"


class TestTheChecker:
    """Live controls: the checks see what they are there to see."""

    def test_an_upward_import_is_reported(self):
        bad = PACKAGE / "imaging" / "blending.py"
        assert "pipeline" in _imported_units(bad, "from ..pipeline import Stylizer\n")
        assert "pipeline" in _imported_units(bad, "def f():\n    from portrait_stylize.pipeline import Stylizer\n")
        assert "sources" in _imported_units(bad, "from portrait_stylize import sources\n")
        assert _imported_units(bad, "from .ops import gaussian_blur\n") == {"imaging"}

    def test_the_table_is_read(self):
        assert read_layers("<!-- layers -->\n| 3 | `models`, `x` | y |\n<!-- /layers -->") == {"models": 3, "x": 3}
        assert LAYERS["errors"] < LAYERS["imaging"] < LAYERS["models"] < LAYERS["faces"] < LAYERS["sources"] \
            < LAYERS["pipeline"] < LAYERS["cli"]
