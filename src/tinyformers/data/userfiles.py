"""The one reader for files a user names (``--set corpus=PATH``, ``csv=``, ``conll=``, ``pairs=``): a missing
file, a folder given as a file, a binary file (NUL bytes) or text in an unknown encoding is a one-line
:class:`~tinyformers.errors.UserError` naming the file, never a traceback.

Each kind of file keeps the words its errors have always used (tests and users' scripts match them), so the
wording lives in one table, :class:`FileKind` values below, and the checks in one function,
:func:`read_user_text`. Parsing the text (CSV rows, CoNLL lines...) stays with the task that knows the format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tinyformers.errors import UserError


@dataclass(frozen=True)
class FileKind:
    """How a kind of user file is decoded, and what its errors say (after ``PATH: ``).

    Attributes:
        name: the file the user should give, e.g. 'a CSV file' ("is a directory, expected a CSV file").
        missing: the error for a path that does not exist.
        directory: the error for a folder; ``{name}`` stands for ``name``.
        binary: the error for NUL bytes (no text file has them); None = not checked.
        binary_scan: bytes searched for NUL from the start (None = the whole file).
        latin1: text that is not UTF-8 is read as Latin-1 (which decodes any byte) instead of refused.
        not_utf8: the error for text that is not UTF-8; ``{line}`` and ``{byte}`` locate the first bad byte.
        empty: the error for a file with nothing but whitespace; None = the caller judges (a CSV needs a header).
    """

    name: str
    missing: str = "not found"
    directory: str = "is a directory, expected {name}"
    binary: str | None = None
    binary_scan: int | None = None
    latin1: bool = False
    not_utf8: str = "not UTF-8 text (line {line}, byte {byte})"
    empty: str | None = None


# a corpus to train a language model on (shakespeare's corpus=)
TEXT = FileKind(
    "a text file", binary="looks binary (NUL bytes), expected UTF-8 text", binary_scan=65536, empty="is empty"
)
# labelled rows (sentiment's csv=): tweets come in Latin-1 as often as in UTF-8
LABELLED_CSV = FileKind("a CSV file", binary="not a text CSV file (it contains NUL bytes)", latin1=True)
# token/tag lines (ner's conll=)
CONLL = FileKind("a CoNLL file", binary="not a text CoNLL file (it contains NUL bytes)", latin1=True)
# a time series (weather's csv=)
SERIES_CSV = FileKind(
    "a CSV file",
    missing="no such file",
    directory="is a directory, not a CSV file",
    binary="not a UTF-8 text CSV file (it contains NUL bytes)",
    not_utf8="not a UTF-8 text CSV file",
)
# source<TAB>target pairs (translate's pairs=)
PAIRS_TSV = FileKind("a TSV file", missing="no such file", not_utf8="not UTF-8 text (byte {byte})")


def read_user_text(path: str | Path, kind: FileKind) -> str:
    """The text of the user's file ``path``, checked as ``kind`` says; anything wrong is a one-line UserError
    that starts with ``path`` as given."""
    file = Path(path)
    if not file.is_file():
        problem = kind.directory.format(name=kind.name) if file.is_dir() else kind.missing
        raise UserError(f"{path}: {problem}")
    data = file.read_bytes()
    if kind.binary is not None and b"\x00" in data[: kind.binary_scan]:
        raise UserError(f"{path}: {kind.binary}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if not kind.latin1:
            line = data[: e.start].count(b"\n") + 1
            raise UserError(f"{path}: {kind.not_utf8.format(line=line, byte=e.start)}") from None
        text = data.decode("latin-1")
    if kind.empty is not None and not text.strip():
        raise UserError(f"{path}: {kind.empty}")
    return text


def finite_number(text: str) -> float:
    """A number the user wrote: ``float(text)``, or a ValueError saying 'is not a number' or 'is not a finite
    number' (NaN, inf); the caller puts which value of which file or input in front."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(value):
        raise ValueError("is not a finite number")
    return value
