"""The one reader of users' text files: every way a named file can be wrong is one UserError naming the file, in
the words each kind of file has always used; good text comes back unchanged."""

from __future__ import annotations

import pytest

from tinyformers.data.userfiles import (
    CONLL,
    LABELLED_CSV,
    PAIRS_TSV,
    SERIES_CSV,
    TEXT,
    FileKind,
    finite_number,
    read_user_text,
)
from tinyformers.errors import UserError


def error(path, kind: FileKind) -> str:
    with pytest.raises(UserError) as e:
        read_user_text(path, kind)
    return str(e.value)


def test_good_text_comes_back_as_written(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("line one\r\nzwei: äöü\n".encode())
    assert read_user_text(path, TEXT) == "line one\r\nzwei: äöü\n"  # no newline translation, no stripping


@pytest.mark.parametrize(
    ("kind", "missing", "folder"),
    [
        (TEXT, "not found", "is a directory, expected a text file"),
        (LABELLED_CSV, "not found", "is a directory, expected a CSV file"),
        (CONLL, "not found", "is a directory, expected a CoNLL file"),
        (SERIES_CSV, "no such file", "is a directory, not a CSV file"),
        (PAIRS_TSV, "no such file", "is a directory, expected a TSV file"),
    ],
)
def test_missing_file_and_folder(tmp_path, kind, missing, folder):
    assert error(tmp_path / "nope.txt", kind) == f"{tmp_path / 'nope.txt'}: {missing}"
    assert error(tmp_path, kind) == f"{tmp_path}: {folder}"


def test_the_path_is_shown_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert error("./nope.csv", SERIES_CSV) == "./nope.csv: no such file"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (TEXT, "looks binary (NUL bytes), expected UTF-8 text"),
        (LABELLED_CSV, "not a text CSV file (it contains NUL bytes)"),
        (CONLL, "not a text CoNLL file (it contains NUL bytes)"),
        (SERIES_CSV, "not a UTF-8 text CSV file (it contains NUL bytes)"),
    ],
)
def test_nul_bytes_mean_binary(tmp_path, kind, message):
    path = tmp_path / "b.bin"
    path.write_bytes(b"text,label\n\x00\x01\n")
    assert error(path, kind) == f"{path}: {message}"


def test_text_looks_for_nul_in_the_first_64_kib_only(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"a" * 65536 + b"\x00")
    assert read_user_text(path, TEXT).endswith("\x00")
    assert "NUL bytes" in error(path, LABELLED_CSV)  # the whole file for the others


def test_nul_bytes_in_pairs_are_not_checked_but_bad_utf8_is(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_bytes(b"\x00\xff\xfe")
    assert error(path, PAIRS_TSV) == f"{path}: not UTF-8 text (byte 1)"


def test_not_utf8_is_located_or_read_as_latin1(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"ok\nstill ok\ncaf\xe9\n")
    assert error(path, TEXT) == f"{path}: not UTF-8 text (line 3, byte 15)"
    assert error(path, SERIES_CSV) == f"{path}: not a UTF-8 text CSV file"
    assert read_user_text(path, LABELLED_CSV) == "ok\nstill ok\ncafé\n"  # Latin-1 decodes any byte
    assert read_user_text(path, CONLL).endswith("café\n")


def test_empty_file(tmp_path):
    path = tmp_path / "e.txt"
    path.write_text(" \n\n")
    assert error(path, TEXT) == f"{path}: is empty"
    assert read_user_text(path, LABELLED_CSV) == " \n\n"  # a CSV's parser judges emptiness (it needs a header)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("warm", "is not a number"),
        ("nan", "is not a finite number"),
        ("-inf", "is not a finite number"),
        ("", "is not a number"),
    ],
)
def test_a_number_that_is_not_one_says_which_way(text, problem):
    with pytest.raises(ValueError) as e:
        finite_number(text)
    assert str(e.value) == problem


def test_a_finite_number_comes_back_as_a_float():
    assert finite_number(" 2.5e1 ") == 25.0
