"""docs/guide.md can never go stale: every Python block runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import torch

GUIDE = Path(__file__).parent.parent / "docs" / "guide.md"


def test_every_snippet_of_the_guide_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 15
    namespace: dict = {}
    torch.manual_seed(0)
    for i, code in enumerate(blocks):
        heading = GUIDE.read_text()[: GUIDE.read_text().index(code)].rsplit("\n## ", 1)[-1].split("\n")[0]
        try:
            exec(compile(code, f"{GUIDE.name} block {i + 1} ({heading})", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"docs/guide.md block {i + 1} in section '{heading}' fails: {e!r}") from e
