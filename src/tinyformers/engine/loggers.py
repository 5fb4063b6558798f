"""Experiment tracking: the trainer's numbers also sent to TensorBoard or Weights & Biases (``--logger``).

Every run already writes ``log.jsonl`` (one line per evaluation) and ``metrics.json``; a logger sends the same
numbers to a dashboard, grouped the same way in both:

* ``train/loss``, ``train/lr`` — every optimizer step (the loss of that step's batch, the learning rate used);
* ``eval/<key>`` — every evaluation, each key of that ``log.jsonl`` line (``eval/val_loss``,
  ``eval/train_loss`` = mean training loss since the previous evaluation, ...);
* ``final/<key>`` — the held-out metrics of ``metrics.json`` at the end, and the run's PNG plots;
* the hyperparameters: every field of the task's config, plus the task's name.

Both write into the run directory: ``RUN/tensorboard/`` (``tensorboard --logdir RUN``) and ``RUN/wandb/``.
W&B runs offline unless ``WANDB_MODE`` says otherwise: no account and no network needed, and
``wandb sync RUN/wandb/offline-run-*`` uploads a run later. The packages are optional and imported only when
chosen (``pip install tensorboard`` / ``pip install wandb``).

A resumed run continues to log from its checkpoint's step: TensorBoard appends a new event file to the same
directory; W&B starts a new offline run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from tinyformers.errors import UserError

if TYPE_CHECKING:  # the packages are optional: imported when chosen (_summary_writer, _wandb)
    from torch.utils.tensorboard import SummaryWriter

LOGGERS = ("none", "tensorboard", "wandb")
WandbMode = Literal["online", "offline", "disabled", "shared"]
WANDB_MODES: tuple[WandbMode, ...] = ("online", "offline", "disabled", "shared")  # what wandb.init takes


class Logger:
    """The interface, and ``--logger none``: every method does nothing."""

    def log(self, step: int, values: dict[str, float]) -> None:
        """Scalars at an optimizer step (non-numbers are skipped)."""

    def final(self, step: int, metrics: dict[str, float], plots: list[str]) -> None:
        """The final held-out metrics and the paths of the run's PNG plots."""

    def close(self, failed: bool = False) -> None:
        """Flush and finish; ``failed`` when training ended with an error."""


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def hyperparameters(task_name: str, cfg: Any) -> dict[str, Any]:
    """The task name and the config's fields, what a dashboard filters runs by; values that are not a number,
    string or boolean (None, lists) as text, the types TensorBoard's HParams accept."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return {
        "task": task_name,
        **{k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in fields.items()},
    }


class TensorBoardLogger(Logger):
    """Event files in ``RUN/tensorboard`` through PyTorch's ``SummaryWriter``; the hyperparameters and final
    metrics go to TensorBoard's HParams tab (one row per run) and, as a table, to the Text tab."""

    def __init__(self, run_dir: Path, params: dict[str, Any]) -> None:
        self.writer = _summary_writer()(log_dir=str(run_dir / "tensorboard"))
        self.params = params
        table = "\n".join(["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in params.items())])
        self.writer.add_text("hyperparameters", table, 0)

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in _scalars(values).items():
            self.writer.add_scalar(key, value, step)

    def final(self, step: int, metrics: dict[str, float], plots: list[str]) -> None:
        import numpy as np
        from PIL import Image
        from torch.utils.tensorboard.summary import hparams

        final = {f"final/{k}": v for k, v in _scalars(metrics).items()}
        self.log(step, final)
        # written into this run's own event file (SummaryWriter.add_hparams would start a new sub-run)
        events = self.writer.file_writer  # opened by SummaryWriter() and set to None by close()
        if events is None:
            raise RuntimeError("TensorBoardLogger.final() called after close()")
        for summary in hparams(self.params, final):
            events.add_summary(summary)
        for path in plots:
            image = np.asarray(Image.open(path).convert("RGB"))  # (H, W, 3)
            self.writer.add_image(f"plots/{Path(path).stem}", image, step, dataformats="HWC")

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class WandbLogger(Logger):
    """A W&B run in ``RUN/wandb``: config = the hyperparameters, history = the scalars, summary = the final
    metrics, and the plots as images. Offline unless ``WANDB_MODE`` is set; project ``WANDB_PROJECT`` or
    "tinyformers"; the run is named after the run directory."""

    def __init__(self, run_dir: Path, params: dict[str, Any]) -> None:
        self.wandb = wandb = _wandb()
        try:
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "tinyformers"),
                name=run_dir.resolve().name,
                dir=str(run_dir),
                config=params,
                mode=wandb_mode(),
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False),
            )
        except wandb.errors.Error as e:  # e.g. WANDB_MODE=online without `wandb login`
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"--logger wandb: could not start a run ({reason})") from None

    # A step's values (train loss, then maybe an evaluation, then maybe the final metrics) are sent as ONE
    # history row: W&B's merging of several log calls for the same step dropped values on a busy machine.
    _step: int | None = None
    _row: dict[str, Any]

    def _flush(self) -> None:
        if self._step is not None and self._row:
            self.run.log(self._row, step=self._step)
        self._step, self._row = None, {}

    def _add(self, step: int, values: dict[str, Any]) -> None:
        if step != self._step:
            self._flush()
            self._step, self._row = step, {}
        self._row.update(values)

    def log(self, step: int, values: dict[str, float]) -> None:
        self._add(step, _scalars(values))

    def final(self, step: int, metrics: dict[str, float], plots: list[str]) -> None:
        final = _scalars(metrics)
        images = {f"plots/{Path(p).stem}": self.wandb.Image(p) for p in plots}
        self._add(step, {**{f"final/{k}": v for k, v in final.items()}, **images})
        self._flush()
        self.run.summary.update(final)

    def close(self, failed: bool = False) -> None:
        self._flush()
        self.run.finish(exit_code=1 if failed else 0)


def _summary_writer() -> type[SummaryWriter]:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "--logger tensorboard: the tensorboard package is not installed (pip install tensorboard)"
        ) from None
    return SummaryWriter


def _wandb() -> ModuleType:
    try:
        import wandb
    except ImportError:
        raise UserError("--logger wandb: the wandb package is not installed (pip install wandb)") from None
    return wandb


def wandb_mode() -> WandbMode:
    """``WANDB_MODE`` (offline when unset), one of :data:`WANDB_MODES`; anything else is a :class:`UserError`."""
    wanted = os.environ.get("WANDB_MODE", "offline")
    for mode in WANDB_MODES:
        if mode == wanted:
            return mode
    raise UserError(f"--logger wandb: WANDB_MODE={wanted!r} is not one of {', '.join(WANDB_MODES)}")


def check_logger(name: str) -> None:
    """What can be checked before a run writes anything: the name, the package installed, W&B's mode. The trainer
    calls this first, so these mistakes leave the run directory as it was (an existing run whole)."""
    if name not in LOGGERS:
        raise UserError(f"--logger {name}: choose one of {', '.join(LOGGERS)}")
    if name == "tensorboard":
        _summary_writer()
    if name == "wandb":
        _wandb()
        wandb_mode()


def make_logger(name: str, run_dir: Path, params: dict[str, Any]) -> Logger:
    """The logger called ``name`` (one of :data:`LOGGERS`) for the run in ``run_dir``."""
    check_logger(name)
    if name == "tensorboard":
        return TensorBoardLogger(run_dir, params)
    if name == "wandb":
        return WandbLogger(run_dir, params)
    return Logger()
