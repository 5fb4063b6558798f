"""notebooks/: one per source project, committed without outputs. `make notebooks` executes them (nbclient);
this test only reads them: no outputs or execution counts, and every code cell is valid Python."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_one_notebook_per_source_project() -> None:
    assert [p.name[:3] for p in NOTEBOOKS] == ["000", "001", "002", "003", "004"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_without_outputs(path: Path) -> None:
    notebook = json.loads(path.read_text())
    for i, cell in enumerate(code_cells(path)):
        assert cell["outputs"] == [], f"{path.name}: code cell {i + 1} has outputs; clear them before committing"
        assert cell["execution_count"] is None, f"{path.name}: code cell {i + 1} has an execution count"
    assert "widgets" not in notebook["metadata"], f"{path.name}: widget state is an output too"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_code_cells_are_python_and_use_this_environment(path: Path) -> None:
    source = ""
    for i, cell in enumerate(code_cells(path)):
        code = "".join(cell["source"])
        shell = [line for line in code.splitlines() if line.lstrip().startswith("!")]
        for line in shell:  # `!tinyformers` could be another installation's: go through this kernel's Python
            assert re.match(r"\s*!\{sys\.executable\} -m tinyformers ", line), f"{path.name}: {line!r}"
        python = "\n".join("pass" if line.lstrip().startswith("!") else line for line in code.splitlines())
        try:
            ast.parse(python)
        except SyntaxError as e:
            raise AssertionError(f"{path.name}: code cell {i + 1} is not valid Python: {e}") from e
        source += code
    assert "tinyformers" in source
