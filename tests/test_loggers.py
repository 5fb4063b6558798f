"""Experiment tracking (`train --logger`): TensorBoard events and an offline W&B run are written and read
back with the numbers of the run's own log.jsonl / metrics.json; a logger never changes the training; a logger
that is not installed is a one-line error."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest

from tinyformers.apps.cli import main

TINY = ["d_model=16", "n_heads=2", "n_layers=1", "d_ff=32", "max_digits=4", "n_val=8", "n_test=8", "batch_size=8"]
STEPS = 6


def train(out: Path, *extra: str) -> int:
    argv = ["train", "copy", "--out", str(out), "--max-steps", str(STEPS), "--no-progress", "--set", *TINY]
    return main([*argv, "eval_every=3", *extra])


def log_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline, its settings and caches in the test's directory: no network, nothing in $HOME."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))


def test_tensorboard_events_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert train(run, "--logger", "tensorboard") == 0
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]

    losses = events.Scalars("train/loss")  # every optimizer step
    assert [e.step for e in losses] == list(range(1, STEPS + 1))
    assert [e.step for e in events.Scalars("train/lr")] == list(range(1, STEPS + 1))
    log = log_lines(run)  # every evaluation, the same numbers as log.jsonl
    assert [e.step for e in events.Scalars("eval/val_loss")] == [line["step"] for line in log] == [3, 6]
    for event, line in zip(events.Scalars("eval/val_loss"), log, strict=True):
        assert event.value == pytest.approx(line["val_loss"], rel=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())  # the final held-out metrics
    assert events.Scalars("final/test_exact_match")[0].value == pytest.approx(metrics["test_exact_match"])
    assert "final/params" in scalars
    assert "plots/loss" in events.Tags()["images"]  # the run's loss.png
    assert "hyperparameters/text_summary" in events.Tags()["tensors"]
    hparams = events.PluginTagToContent("hparams")  # TensorBoard's HParams tab: experiment, session start/end
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    assert b"d_model" in hparams["_hparams_/session_start_info"] and b"copy" in hparams["_hparams_/session_start_info"]


def finished_wandb_run(folder: Path, timeout: float = 60.0) -> tuple[Path, list]:
    """The offline run directory and its records, once the run's exit record is in its ``.wandb`` file: W&B's
    service process may still be writing for a moment after ``finish()`` returns on a busy machine."""
    deadline = time.monotonic() + timeout
    while True:
        for run_dir in folder.glob("offline-run-*"):
            for store in run_dir.glob("run-*.wandb"):
                records = wandb_records(store, partial_ok=True)
                if any(r.HasField("exit") for r in records):
                    return run_dir, records
        assert time.monotonic() < deadline, f"no finished W&B run in {folder}"
        time.sleep(0.5)


def wandb_records(path: Path, partial_ok: bool = False) -> list:
    """The protobuf records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then LevelDB's
    log format (32 KiB blocks of records: crc32c, length, type 1 full / 2 first / 3 middle / 4 last, data)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block = path.read_bytes(), 32768
    if partial_ok and len(data) < 7:  # still being written
        return []
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = Record()
            try:
                record.ParseFromString(pending)
            except Exception:  # a record cut short by a file still being written
                if partial_ok:
                    break
                raise
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_is_written(tmp_path, offline_wandb):
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    assert train(run, "--logger", "wandb") == 0
    run_dir, records = finished_wandb_run(run / "wandb")
    (started,) = [r.run for r in records if r.HasField("run")]
    config = {item.key: json.loads(item.value_json) for item in started.config.update}
    assert config["task"] == "copy" and config["d_model"] == 16 and config["max_steps"] == STEPS
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.HasField("history")
    ]
    log = log_lines(run)
    evals = [(h["_step"], h["eval/val_loss"]) for h in history if "eval/val_loss" in h]
    assert evals == [(line["step"], pytest.approx(line["val_loss"])) for line in log]
    assert sorted(h["_step"] for h in history if "train/loss" in h) == list(range(1, STEPS + 1))
    metrics = json.loads((run / "metrics.json").read_text())
    final = [h for h in history if "final/test_exact_match" in h]
    assert final and final[0]["final/test_exact_match"] == pytest.approx(metrics["test_exact_match"])
    assert final[0]["plots/loss/_type"] == "image-file"  # the plot, copied into the run's media
    assert list(run_dir.glob("files/media/images/plots/loss_*.png"))
    summary = {
        item.key: json.loads(item.value_json) for r in records if r.HasField("summary") for item in r.summary.update
    }
    assert summary["test_exact_match"] == pytest.approx(metrics["test_exact_match"])


def test_a_logger_does_not_change_training(tmp_path):
    pytest.importorskip("tensorboard")
    assert train(tmp_path / "plain") == 0
    assert train(tmp_path / "logged", "--logger", "tensorboard") == 0
    assert (tmp_path / "plain" / "model.safetensors").read_bytes() == (
        tmp_path / "logged" / "model.safetensors"
    ).read_bytes()
    assert not (tmp_path / "plain" / "tensorboard").exists() and not (tmp_path / "plain" / "wandb").exists()


@pytest.mark.parametrize(
    ("logger", "module", "message"),
    [
        ("tensorboard", "torch.utils.tensorboard", "--logger tensorboard: the tensorboard package is not installed"),
        ("wandb", "wandb", "--logger wandb: the wandb package is not installed"),
    ],
)
def test_missing_package_is_one_line_error(tmp_path, monkeypatch, capsys, logger, module, message):
    monkeypatch.setitem(sys.modules, module, None)  # `import` of it now raises ImportError
    assert train(tmp_path / "run", "--logger", logger) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"error: {message} (pip install {logger})"]


def test_wandb_online_without_login_is_one_line_error(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for name in ("HOME", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # no stored login is found
        monkeypatch.setenv(name, str(tmp_path / "home"))
    assert train(tmp_path / "run", "--logger", "wandb") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --logger wandb: could not start a run ("), err
    assert "wandb login" in err


def test_unknown_logger_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit, match="2"):  # argparse's choices, printed as one line by the CLI
        train(tmp_path / "run", "--logger", "mlflow")
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice: 'mlflow'" in err


def test_unknown_wandb_mode_is_one_line_error_before_any_write(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offlien")
    assert train(tmp_path / "run", "--logger", "wandb") == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "error: --logger wandb: WANDB_MODE='offlien' is not one of online, offline, disabled, shared"
    ]
    assert not (tmp_path / "run").exists()
