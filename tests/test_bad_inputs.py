"""Every task's bad user data, through the real CLI: one line on stderr starting ``error:``, exit status 2,
no traceback, and the message names the file (and the line or field where there is one).

Each case builds its bad input in a fresh directory and runs ``python -m tinyformers`` there (in a child
process: see :func:`run_cli`), so the messages show the short relative paths that ``docs/errors.md`` lists
(its second table is these cases' output). A fix for a case that printed a traceback or an unclear message
comes with its case here.
"""

from __future__ import annotations

import html
import json
import os
import runpy
import shutil
import signal
import struct
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from tinyformers.apps.cli import main
from tinyformers.engine import rundir as runs
from tinyformers.engine.task import apply_overrides, build_model
from tinyformers.tasks import get_task

TINY = ["d_model=16", "n_heads=2", "n_layers=1", "d_ff=32"]


def make_run(out: Path, task_name: str, settings: list[str]) -> Path:
    """An untrained run directory with the files training writes (predict's input checks need no training)."""
    task = get_task(task_name)
    cfg = apply_overrides(task.Config(), settings)
    data = task.data(cfg)
    out.mkdir(parents=True)
    runs.save_run_config(out, task.name, cfg, data.meta)
    runs.save_weights(build_model(task, cfg, data.meta), out / runs.WEIGHTS, task.name, data.meta)
    return out


def image_folder(root: Path, classes: str = "ab", per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Runs the cases damage or query: copy and shakespeare trained for 2 steps (their weights carry what
    training records), the others written untrained by :func:`make_run`."""
    root = tmp_path_factory.mktemp("runs")
    (root / "corpus.txt").write_text("To be, or not to be, that is the question.\n" * 40)
    common = ["--max-steps", "2", "--no-progress", "--set", *TINY[:3], "batch_size=4", "eval_every=2"]
    for task, extra in [
        ("copy", ["d_ff=32", "max_digits=4", "n_val=8", "n_test=8"]),
        ("shakespeare", [f"corpus={root / 'corpus.txt'}", "block_size=16", "eval_windows=4"]),
    ]:
        assert main(["train", task, "--out", str(root / task), *common, *extra]) == 0
    series = np.sin(np.arange(320) * 2 * np.pi / 24)
    (root / "series.csv").write_text("temp\n" + "\n".join(f"{v:.3f}" for v in series) + "\n")
    image_folder(root / "imgs", per_class=10)
    return {
        "copy": root / "copy",
        "shakespeare": root / "shakespeare",
        "vision": make_run(
            root / "vision", "vision", [f"folder={root / 'imgs'}", "image_size=8", "patch_size=4", *TINY]
        ),
        "weather": make_run(
            root / "weather",
            "weather",
            [f"csv={root / 'series.csv'}", "column=temp", "lookback=24", "horizon=6", "season=24", *TINY],
        ),
        "arithmetic": make_run(root / "arithmetic", "arithmetic", ["digits=2", "n_val=2", "n_test=2", *TINY]),
        "languages": make_run(
            root / "languages", "languages", ["length=12", "n_train=6", "n_val=3", "n_test=3", *TINY]
        ),
    }


# --- building the bad inputs: each returns the CLI arguments -------------------------------------------------
Setup = Callable[[Path, dict[str, Path]], list[str]]


def write(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    return make


def train(task: str, name: str, content: str | bytes, *settings: str, key: str = "csv") -> Setup:
    def setup(d: Path, _: dict[str, Path]) -> list[str]:
        write(name, content)(d)
        return ["train", task, "--out", "x", "--set", f"{key}={name}", *settings]

    return setup


def folder(task: str, key: str, build: Callable[[Path], None], *settings: str) -> Setup:
    def setup(d: Path, _: dict[str, Path]) -> list[str]:
        build(d / "data")
        return ["train", task, "--out", "x", "--set", f"{key}=data", *settings]

    return setup


def on_run(run: str, *command: str, files: dict[str, str | bytes] | None = None) -> Setup:
    """``command`` with RUN standing for the run ``run``, after writing ``files`` (name: content)."""

    def setup(d: Path, trained: dict[str, Path]) -> list[str]:
        for name, content in (files or {}).items():
            write(name, content)(d)
        return [str(trained[run]) if a == "RUN" else a for a in command]

    return setup


def predict(run: str, *inputs: str, files: dict[str, str | bytes] | None = None) -> Setup:
    return on_run(run, "predict", "RUN", *inputs, files=files)


def damaged(run: str, damage: Callable[[Path, dict[str, Path]], None], *command: str) -> Setup:
    """A copy of the run ``run`` in the case's directory, damaged, then ``command`` with RUN standing for it."""

    def setup(d: Path, trained: dict[str, Path]) -> list[str]:
        shutil.copytree(trained[run], d / run)
        damage(d / run, trained)
        return [run if a == "RUN" else a for a in command]

    return setup


def edit_config(change: Callable[[dict], None]) -> Callable[[Path, dict[str, Path]], None]:
    def damage(run: Path, _: dict[str, Path]) -> None:
        saved = json.loads((run / "config.json").read_text())
        change(saved)
        (run / "config.json").write_text(json.dumps(saved))

    return damage


def other_tasks_config(run: Path, trained: dict[str, Path]) -> None:
    shutil.copy(trained["copy"] / "config.json", run / "config.json")


def reversed_vocabulary(saved: dict) -> None:  # same size, other characters: the weights would load
    tok = saved["meta"]["tokenizer"]
    tok["chars"] = tok["chars"][::-1]


def old_run(change: Callable[[dict], None]) -> Callable[[Path, dict[str, Path]], None]:
    """A run saved before weights recorded their task and meta (no metadata), then ``config.json`` edited."""

    def damage(run: Path, trained: dict[str, Path]) -> None:
        save_file(load_file(run / "model.safetensors"), run / "model.safetensors")
        edit_config(change)(run, trained)

    return damage


def truncate(name: str, size: int = 100) -> Callable[[Path, dict[str, Path]], None]:
    def damage(run: Path, _: dict[str, Path]) -> None:
        (run / name).write_bytes((run / name).read_bytes()[:size])

    return damage


def idx_dir(header_only: bool) -> Callable[[Path], None]:
    """Fashion-MNIST's four IDX files, junk (bad magic) or with a header promising more than the file holds."""

    def build(d: Path) -> None:
        d.mkdir()
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ):
            images = "images" in name
            head = struct.pack(">HBB", 0, 8, 3 if images else 1) + struct.pack(">I", 10)
            head += struct.pack(">II", 28, 28) if images else b""
            (d / name).write_bytes(head + b"\0" * 20 if header_only else b"junk" * 4)

    return build


def not_an_image(d: Path) -> None:
    image_folder(d)
    (d / "a" / "broken.png").write_text("this is text, not a PNG")


def wav_folder(bad: bytes) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        for label in ("one", "two"):
            (d / label).mkdir(parents=True)
        (d / "one" / "clip.wav").write_bytes(bad)

    return build


def float_wav() -> bytes:
    """A 32-bit IEEE-float WAV (format tag 3), which the PCM reader refuses."""
    data = np.zeros(160, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def embed(*argv: str, files: dict[str, str | bytes] | None = None) -> Setup:
    """``tinyformers embed ARGV`` after writing ``files`` (name: content); needs no run."""

    def setup(d: Path, _: dict[str, Path]) -> list[str]:
        for name, content in (files or {}).items():
            write(name, content)(d)
        return ["embed", *argv]

    return setup


def run_cli(argv: list[str], cwd: Path) -> tuple[int, str]:
    """``python -m tinyformers ARGV`` in ``cwd``: its exit status and stderr.

    A fresh interpreter spends 2-3 s importing torch, times 30 cases. So by default the child is forked from
    this process (torch already imported) and runs the same ``tinyformers.__main__`` module, with its own
    stderr, exit status and a traceback printed as the interpreter would; ``TINYFORMERS_FRESH_CLI=1`` runs
    ``sys.executable -m tinyformers`` instead (the two agree; docs/errors.md was written that way)."""
    if os.environ.get("TINYFORMERS_FRESH_CLI"):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "tinyformers", *argv]
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
        return r.returncode, r.stderr.strip()
    err_path = cwd / ".stderr"
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        status = 1
        try:
            signal.alarm(60)  # a case that starts training by mistake dies instead of hanging the suite
            os.dup2(os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)  # noqa: SIM115
            os.chdir(cwd)
            sys.argv = ["tinyformers", *argv]
            runpy.run_module("tinyformers", run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (e.code is not None)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), err_path.read_text().strip()


# (id, setup, strings the one-line message must contain: the file, and the line or field where there is one)
CASES: list[tuple[str, Setup, tuple[str, ...]]] = [
    ("weather-empty", train("weather", "t.csv", "", "column=temp"), ("t.csv: empty file",)),
    ("weather-binary", train("weather", "t.csv", b"\x00\x01temp\n1\n", "column=temp"), ("t.csv:", "NUL bytes")),
    (
        "weather-missing-value",
        train("weather", "t.csv", "date,temp\n2020-01-01 00:00,1.5\n2020-01-01 01:00,\n", "column=temp"),
        ("t.csv: line 3:", "'temp' is empty"),
    ),
    (
        "weather-missing-column",
        train("weather", "t.csv", "date,temperature\n2020-01-01 00:00,1.5\n", "column=temp"),
        ("t.csv:", "no column 'temp'"),
    ),
    (
        "weather-not-a-number",
        train("weather", "t.csv", "temp\n1.5\nwarm\n", "column=temp"),
        ("t.csv: line 3:", "'warm' is not a number"),
    ),
    (
        "weather-not-a-time",
        train("weather", "t.csv", "date,temp\n2020-01-01 00:00,1\nyesterday,2\n", "column=temp", "time_column=date"),
        ("t.csv: line 3:", "'yesterday' is not a date/time"),
    ),
    (
        "weather-eval-on-other-csv",
        on_run("weather", "eval", "RUN", "--set", "csv=t.csv", files={"t.csv": "date,temperature\n1,2\n"}),
        ("t.csv:", "no column 'temp'"),
    ),
    ("sentiment-empty", train("sentiment", "s.csv", ""), ("s.csv: empty file",)),
    ("sentiment-a-folder", folder("sentiment", "csv", Path.mkdir), ("data: is a directory",)),
    ("sentiment-binary", train("sentiment", "s.csv", b"text,label\n\x00\x00\n"), ("s.csv:", "NUL bytes")),
    (
        "sentiment-missing-value",
        train("sentiment", "s.csv", "text,label\ngood day,pos\nbad day,\n"),
        ("s.csv: line 3:", "empty 'label'"),
    ),
    (
        "sentiment-missing-column",
        train("sentiment", "s.csv", "tweet,label\ngood day,pos\n"),
        ("s.csv:", "no column 'text'"),
    ),
    (
        "sentiment-short-row",
        train("sentiment", "s.csv", "text,label\ngood day,pos\nbad day\n"),
        ("s.csv: line 3:", "1 fields"),
    ),
    ("ner-one-field", train("ner", "n.conll", "New B-loc\nYork\n", key="conll"), ("n.conll: line 2:", "'York'")),
    ("ner-binary", train("ner", "n.conll", b"New\x00B-loc\n", key="conll"), ("n.conll:", "NUL bytes")),
    ("ner-a-folder", folder("ner", "conll", Path.mkdir), ("data: is a directory",)),
    ("ner-not-bio", train("ner", "n.conll", "New X-loc\n", key="conll"), ("n.conll: line 1:", "'X-loc'")),
    ("translate-one-column", train("translate", "p.tsv", "hallo\thello\nguten tag\n", key="pairs"), ("p.tsv: line 2",)),
    ("translate-a-folder", folder("translate", "pairs", Path.mkdir), ("data: is a directory",)),
    ("translate-empty", train("translate", "p.tsv", "", key="pairs"), ("p.tsv: no pairs",)),
    ("translate-binary", train("translate", "p.tsv", b"\x00\xff\xfe", key="pairs"), ("p.tsv: not UTF-8",)),
    ("vision-not-an-image", folder("vision", "folder", not_an_image), ("data/a/broken.png: not an image",)),
    (
        "vision-class-without-images",
        folder("vision", "folder", lambda d: (image_folder(d, "a"), (d / "b").mkdir())),
        ("data/b: no images",),
    ),
    ("vision-empty-folder", folder("vision", "folder", lambda d: d.mkdir()), ("data: found 0 class",)),
    ("vision-one-class", folder("vision", "folder", lambda d: image_folder(d, "a")), ("data: found 1 class",)),
    (
        "mnist-words-junk-idx",
        folder("mnist-words", "data_dir", idx_dir(False), "dataset=fashion"),
        ("train-images-idx3-ubyte: not an IDX",),
    ),
    (
        "pixels-short-idx",
        folder("pixels", "data_dir", idx_dir(True), "dataset=fashion"),
        ("train-images-idx3-ubyte: IDX file holds",),
    ),
    (
        "chorales-broken-midi",
        folder("chorales", "source", lambda d: write("broken.mid", b"MThd\x00\x00\x00\x06junk")(d)),
        ("data/broken.mid: not a score",),
    ),
    (
        "chorales-no-scores",
        folder("chorales", "source", lambda d: write("notes.txt", "C D E")(d)),
        ("data: no score files",),
    ),
    (
        "spoken-digits-not-a-wav",
        folder("spoken-digits", "folder", wav_folder(b"text")),
        ("data/one/clip.wav: not a PCM", "too short"),
    ),
    (
        "spoken-digits-float-wav",
        folder("spoken-digits", "folder", wav_folder(float_wav())),
        ("data/one/clip.wav: not a PCM", "format"),
    ),
    ("vision-predict-not-an-image", predict("vision", "x.png", files={"x.png": "hello"}), ("x.png: not an image",)),
    ("vision-predict-missing-file", predict("vision", "nope.png"), ("nope.png: no such file",)),
    ("vision-predict-a-folder", predict("vision", "."), (".: is a directory",)),
    ("weather-predict-too-short", predict("weather", "w.csv", files={"w.csv": "temp\n1\n2\n"}), ("w.csv: 2 values",)),
    ("languages-predict-letters", predict("languages", "1 2 x"), ("'1 2 x': value 3 ('x')",)),
    ("languages-predict-not-a-walk", predict("languages", "1 3"), ("'1 3': values 1 and 2",)),
    ("arithmetic-predict-garbage", predict("arithmetic", "12+x="), ("'12+x='",)),
    ("embed-missing-file", embed("nope.txt", "--out", "e.npy"), ("nope.txt: not found",)),
    ("embed-a-folder", embed(".", "--out", "e.npy"), (".: is a directory",)),
    ("embed-empty-file", embed("t.txt", "--out", "e.npy", files={"t.txt": "\n \n"}), ("t.txt: is empty",)),
    ("embed-binary", embed("t.txt", "--out", "e.npy", files={"t.txt": b"hi\x00\x01"}), ("t.txt: looks binary",)),
    (
        "embed-unknown-column",
        embed("c.csv", "--out", "e.npy", "--column", "text", files={"c.csv": "id,tweet\n1,hi\n"}),
        ("c.csv: no column 'text'", "columns: id, tweet"),
    ),
    (
        "embed-csv-without-column",
        embed("c.csv", "--out", "e.npy", files={"c.csv": "id,tweet\n1,hi\n"}),
        ("c.csv: a CSV file", "--column"),
    ),
    (
        "embed-out-exists",
        embed("t.txt", "--out", "e.npy", files={"t.txt": "hi\n", "e.npy": b"old"}),
        ("e.npy: already exists", "--overwrite"),
    ),
    (
        "embed-ids-file-exists",
        embed("t.txt", "--out", "e.npy", files={"t.txt": "hi\n", "e.npy.ids.txt": "1\n"}),
        ("e.npy.ids.txt: already exists",),
    ),
    ("embed-bad-suffix", embed("t.txt", "--out", "e.txt", files={"t.txt": "hi\n"}), ("e.txt: --out must end in",)),
    (
        "config-from-another-task",
        damaged("shakespeare", other_tasks_config, "generate", "RUN", "--prompt", "To"),
        ("shakespeare/config.json", "task 'copy'", "'shakespeare'"),
    ),
    (
        "tokenizer-does-not-match",
        damaged("shakespeare", edit_config(reversed_vocabulary), "generate", "RUN", "--prompt", "To"),
        ("shakespeare/config.json", "not the one model.safetensors was trained with"),
    ),
    (
        "old-run-tokenizer-missing",
        damaged(
            "shakespeare", old_run(lambda saved: saved["meta"].pop("tokenizer")), "generate", "RUN", "--prompt", "To"
        ),
        ("shakespeare/config.json", "KeyError: 'tokenizer'"),
    ),
    (
        "old-run-tokenizer-unreadable",
        damaged(
            "shakespeare",
            old_run(lambda saved: saved["meta"].update(tokenizer={"kind": "bpe", "json": "{"})),
            "generate",
            "RUN",
            "--prompt",
            "To",
        ),
        ("bpe tokenizer in config.json is unreadable",),
    ),
    (
        "config-value-wrong-type",
        damaged("copy", edit_config(lambda saved: saved["config"].update(d_model="wide")), "predict", "RUN", "12"),
        ("copy/config.json: d_model='wide' should be an integer",),
    ),
    (
        "checkpoint-truncated",
        damaged("copy", truncate("checkpoint.safetensors"), "train", "copy", "--resume", "--out", "RUN"),
        ("copy/checkpoint.safetensors: not a valid safetensors file",),
    ),
]


def documented_messages() -> list[str]:
    """The second column of docs/errors.md's second table: one row per case (grouped by task, so not in the
    order of CASES)."""
    text = (Path(__file__).parent.parent / "docs" / "errors.md").read_text()
    table = text.split("## Every task's data, inputs and runs", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| command ")]
    return [html.unescape(row.rsplit(" | ", 1)[1].removesuffix(" |")) for row in rows]


DOCUMENTED = documented_messages()


def test_the_documented_table_has_one_row_per_case() -> None:
    assert len(DOCUMENTED) == len(CASES)


@pytest.mark.parametrize(("setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_file(setup: Setup, expected: tuple[str, ...], trained, tmp_path) -> None:
    """... and it is a line docs/errors.md shows."""
    status, err = run_cli(setup(tmp_path, trained), tmp_path)
    assert status == 2, (status, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for text in expected:
        assert text in err, err
    assert err in DOCUMENTED, err


def test_a_sequence_shorter_than_the_window_is_good_input(trained, tmp_path) -> None:
    """Not a bad input but found with them: languages embeds each value with the ``window`` (4) values before
    it, and a 2-value sequence (allowed: 2 to ``length``) crashed with a tensor-size traceback."""
    status, err = run_cli(["predict", str(trained["languages"]), "1 2"], tmp_path)
    assert status == 0, err
