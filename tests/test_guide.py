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


def test_the_einsum_section_checks_each_form_against_the_core() -> None:
    """Seed 002 teaches attention with einsum: the guide writes Eq. 1, multi-head and cross-attention that way,
    and each of those blocks asserts equality with tinyformers.core.attention (run by the test above)."""
    section = GUIDE.read_text().split("## 16. The same attention, written with `torch.einsum`", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 3
    for code, core in zip(blocks, ("scaled_dot_product_attention(", "mha(x, is_causal", "mha(x, memory="), strict=True):
        assert "torch.einsum" in code or "einsum_multi_head(" in code
        assert core in code and "assert torch.allclose" in code
