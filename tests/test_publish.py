"""One source for published numbers: the README table and the task pages' headlines are what
``scripts/publish.py`` generates from benchmarks/results/*.json (run ``python scripts/publish.py write``)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "publish.py"


@pytest.fixture(scope="module")
def publish():
    spec = importlib.util.spec_from_file_location("publish", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["publish"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_numbers_are_what_the_json_generates(publish):
    diffs = publish.check()
    assert not diffs, "run `python scripts/publish.py write`:\n" + "\n".join(diffs)


def test_a_changed_result_is_caught(publish, monkeypatch):
    original = publish.load

    def edited(name: str) -> dict:
        data = copy.deepcopy(original(name))
        if name == "pixels":
            data["rows"][0]["test_bits_per_token"] = 0.5
        return data

    monkeypatch.setattr(publish, "load", edited)
    diffs = publish.check()
    assert len(diffs) == 2  # the README row and the pixels page
    assert all("0.500 bits/pixel" in d for d in diffs)


def test_every_page_block_names_its_source(publish):
    for path, blocks in publish.generated().items():
        for text in blocks.values():
            assert "benchmarks/results/" in text or path == publish.README


def test_a_page_without_its_block_is_an_error(publish, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page\n\nno block here\n")
    with pytest.raises(KeyError, match="generated:headline"):
        publish.render(page, {"headline": "x"})
