"""Bach chorale melodies: a decoder-only LM over note events, measured against an n-gram model.

Encoding: one token per note (:mod:`tinyformers.tasks._chorales`), so "NLL per note" is the per-token loss.

* One voice per sequence (``--set voice=soprano|alto|tenor|bass``; default the soprano, the chorale's tune).
* Transposition augmentation: every training sequence is shifted by a random number of semitones in
  ``[-transpose + 1, transpose]`` (a shift that would leave the pitch range is replaced by 0). Keys are not
  given to the model: it infers them from the notes.
* Split by chorale, 80/10/10, seeded; chorales whose melody (in this voice) is identical — the same tune
  harmonised twice — always fall in the same split, so no test melody was seen in training.

The baseline is an interpolated absolute-discounting n-gram model over the same tokens, fitted on the same
training chorales with the same transpositions, its order chosen on the validation split.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.models import DecoderConfig, DecoderLM
from tinyformers.data import music
from tinyformers.engine.task import IGNORE_INDEX, GeneratesFiles, ModelSizes, Scorecard, Task, TaskData, TrainConfig
from tinyformers.errors import UserError
from tinyformers.tasks._chorales import (
    BOS,
    DURATIONS,
    EOS,
    NOTE0,
    PAD,
    TIME_SIGNATURES,
    TS0,
    VOCAB,
    encode,
    fit_ngram,
    shift_range,
    token_note,
    transpose,
    ts_token,
)


@dataclass
class ChoralesConfig(ModelSizes, TrainConfig):
    """Attributes:
    voice: which part to model. source: a folder of your own scores instead of the Bach chorales.
    transpose: augmentation range in semitones (0 = off). data_seed: fixes the split.
    block_size: context; longer sequences are cropped to random windows in training and scored in
        windows with context in evaluation. n_layers, d_model, dropout: the model's sizes (d_ff = 0: 4 d_model).
    ngram_max: the n-gram baseline's largest order tried. prompt_notes: notes of a held-out chorale given
        to ``generate --prompt-chorale``.
    """

    voice: str = "soprano"
    source: str = ""
    transpose: int = 6
    data_seed: int = 0
    block_size: int = 128
    n_layers: int = 3
    d_model: int = 128
    d_ff: int = 0
    dropout: float = 0.2
    ngram_max: int = 5
    prompt_notes: int = 8
    max_steps: int = 1200
    cpu_bf16: bool = True  # bf16 autocast on a CPU with native bf16: faster at equal steps (docs/speed.md)
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    eval_every: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.voice not in music.VOICES:
            raise ValueError(f"voice={self.voice!r}: choose {', '.join(music.VOICES)}")
        if not 0 <= self.transpose <= 12:
            raise ValueError("transpose must be between 0 and 12 semitones")
        if self.block_size < 8 or self.ngram_max < 1 or self.prompt_notes < 1:
            raise ValueError("need block_size >= 8, ngram_max >= 1, prompt_notes >= 1")


class ChoralesTask(Task[ChoralesConfig], GeneratesFiles):
    name = "chorales"
    summary = "Bach chorale melodies (music21 corpus): a note-level LM vs an n-gram model; writes MIDI"
    Config: ClassVar[type[TrainConfig]] = ChoralesConfig
    metric: ClassVar[str] = "nll_per_note"
    file_options: ClassVar[tuple[str, ...]] = ("prompt_chorale",)
    scorecard: ClassVar[Scorecard | None] = Scorecard(
        "test_nll_per_note",
        higher_is_better=False,
        baselines=("ngram_nll_per_note", "uniform_nll_per_note"),
        quick=("n_layers=1", "d_model=32", "n_heads=2", "batch_size=4", "ngram_max=2"),
        summary="Held-out nats per note of Bach chorale melodies (soprano), against an n-gram model fitted on "
        "the same transposed training melodies.",
    )

    def data_status(self, cfg: ChoralesConfig) -> str | None:
        return None if cfg.source or music.music21_available() else music.INSTALL_HINT

    def data(self, cfg: ChoralesConfig, meta: dict[str, Any] | None = None) -> TaskData:
        scores = music.folder_scores(cfg.source) if cfg.source else music.bach_chorales()
        melodies = music.melodies(scores, cfg.voice)
        if len(melodies) < 3:
            raise UserError(f"{cfg.source or 'the corpus'}: {len(melodies)} {cfg.voice} melodies; need at least 3")
        seqs = [encode(m) for m in melodies]
        # group identical melodies, then split the groups: the same tune never sits in two splits
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, s in enumerate(seqs):
            groups[tuple(s)].append(i)
        keys = list(groups)
        order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(cfg.data_seed)).tolist()
        n_val = n_test = max(1, round(0.1 * len(keys)))
        parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        splits: dict[str, Any] = {}
        for split, group_ids in parts.items():
            idx = sorted(i for g in group_ids for i in groups[keys[g]])
            splits[split] = [seqs[i] for i in idx]
            splits[f"{split}_names"] = [melodies[i]["name"] for i in idx]
        rounded = sum(ql not in DURATIONS for m in melodies for _, ql in m["notes"])
        total = sum(len(m["notes"]) for m in melodies)
        info = {"melodies": len(melodies), "notes": total, "durations_rounded": rounded}
        return TaskData(splits, {"vocab_size": VOCAB, "voice": cfg.voice, "data": info})

    def model(self, cfg: ChoralesConfig, meta: dict[str, Any]) -> nn.Module:
        return DecoderLM(
            DecoderConfig(
                **cfg.sizes(),
                vocab_size=meta["vocab_size"],
                max_len=cfg.block_size,
                positions="rotary",
                activation="gelu",
            )
        )

    def batch(self, data: TaskData, cfg: ChoralesConfig, generator: torch.Generator) -> dict[str, Tensor]:
        train = data.splits["train"]
        rows = []
        for i in torch.randint(len(train), (cfg.batch_size,), generator=generator).tolist():
            seq = train[i]
            if cfg.transpose:
                shifts = shift_range(seq, cfg.transpose)
                seq = transpose(torch.tensor(seq), shifts[int(torch.randint(len(shifts), (1,), generator=generator))])
            seq = torch.as_tensor(seq)
            if len(seq) > cfg.block_size + 1:  # a random window of a long melody
                start = int(torch.randint(len(seq) - cfg.block_size, (1,), generator=generator))
                seq = seq[start : start + cfg.block_size + 1]
            rows.append(seq)
        ids = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD)
        labels = ids[:, 1:].clone()
        labels[labels == PAD] = IGNORE_INDEX  # padding is not predicted
        labels[:, 0][ids[:, 0] == BOS] = IGNORE_INDEX  # the time signature is given, not predicted
        return {"input_ids": ids[:, :-1], "labels": labels}

    @torch.no_grad()
    def sequence_nll(self, model: nn.Module, seq: list[int], block_size: int) -> tuple[float, int]:
        """Nats of every note and the end of ``seq``; past ``block_size`` each window keeps half a block of
        context (the same rule for every model size)."""
        device = next(model.parameters()).device
        ids = torch.tensor(seq, device=device)
        total, count, start_pred = 0.0, 0, 2  # predict positions 2.. (first note on)
        while start_pred < len(ids):
            lo = max(0, min(start_pred - block_size // 2, len(ids) - block_size - 1))
            hi = min(len(ids), lo + block_size + 1)
            window = ids[lo:hi]
            logits = model(window[None, :-1]).logits[0]  # (W, V)
            logp = F.log_softmax(logits.float(), dim=-1)
            positions = torch.arange(start_pred, hi, device=device)  # target positions scored in this window
            total -= logp[positions - lo - 1, ids[positions]].sum().item()
            count += len(positions)
            start_pred = hi
        return total, count

    def evaluate(self, model: nn.Module, data: TaskData, split: str, cfg: ChoralesConfig) -> dict[str, float]:
        total, count = 0.0, 0
        for seq in data.splits[split]:
            nats, n = self.sequence_nll(model, seq, cfg.block_size)
            total, count = total + nats, count + n
        if "ngram" not in data.splits:  # fitted once, on first evaluation (not needed to generate)
            data.splits["ngram"] = fit_ngram(data.splits, cfg.ngram_max, cfg.transpose)
        ngram = data.splits["ngram"]
        return {
            f"{split}_nll_per_note": total / count,
            "ngram_nll_per_note": ngram[split],
            "ngram_order": ngram["order"],
            "uniform_nll_per_note": math.log(VOCAB - NOTE0 + 1),
        }

    def generate_file(
        self,
        model: nn.Module,
        cfg: ChoralesConfig,
        meta: dict[str, Any],
        out: Path | None,
        prompt_chorale: int | None = None,
        prompt: str | None = None,
        **decoding: Any,
    ) -> list[str]:
        """Write a melody as MIDI (``out``, default ``sample.mid``) and its piano roll (same name, .png).

        With ``prompt_chorale=N`` it continues the first ``prompt_notes`` notes of held-out test chorale N;
        without, it starts from nothing in 4/4. ``decoding``: HF's options (do_sample, temperature, top_p...),
        with HF's defaults (sampling: top_k=50).
        A text ``prompt`` (``--prompt``) is refused: a melody does not start from text.
        """
        if prompt:
            raise UserError("chorales take no text prompt; use --prompt-chorale N to start from a held-out chorale")
        out = Path(out) if out is not None else Path("sample.mid")
        if out.suffix.lower() not in (".mid", ".midi"):
            raise UserError(f"{out}: give a .mid file name for --out")
        roll = out.with_suffix(".png")
        for path in (out, roll):
            if path.exists():
                raise UserError(f"{path} exists; choose another --out (nothing is overwritten)")
        if not (out.parent.is_dir() or out.parent == Path("")):
            raise UserError(f"{out.parent}: no such directory")
        ts, given, source = "4/4", [BOS, ts_token("4/4")], "nothing"
        if prompt_chorale is not None:
            data = self.data(cfg, meta)
            test, names = data.splits["test"], data.splits["test_names"]
            if not 0 <= prompt_chorale < len(test):
                raise UserError(f"--prompt-chorale {prompt_chorale}: choose 0..{len(test) - 1} (held-out chorales)")
            given = test[prompt_chorale][: 2 + cfg.prompt_notes]
            ts = TIME_SIGNATURES[given[1] - TS0] if TIME_SIGNATURES[given[1] - TS0] != "other" else "4/4"
            source = f"the first {len(given) - 2} notes of held-out {names[prompt_chorale]}"
        lm = cast(DecoderLM, model)  # what model() built
        ids = lm.generate(torch.tensor([given]), eos_token_id=EOS, pad_token_id=PAD, **decoding)
        notes = [token_note(t) for t in ids[0, 2:].tolist() if t >= NOTE0]
        music.write_midi(notes, out, ts)
        music.piano_roll(notes, roll, len(given) - 2, f"{cfg.voice}, continuing {source}")
        new = len(notes) - (len(given) - 2)
        return [f"wrote {out} ({new} new notes after {source}) and {roll}"]

    def plots(self, model: nn.Module, data: TaskData, cfg: ChoralesConfig, run_dir: str) -> list[str]:
        """A piano roll: a held-out melody's real continuation vs the model's (sampled, seed 0)."""
        seq = data.splits["test"][0]
        given = seq[: 2 + cfg.prompt_notes]
        lm = cast(DecoderLM, model)  # what model() built; its whole distribution, not generate's default top-50
        ids = lm.generate(
            torch.tensor([given]), max_new_tokens=len(seq), do_sample=True, top_k=None, seed=0, eos_token_id=EOS
        )
        path = str(Path(run_dir) / "sample_vs_real.png")
        _two_rolls(
            [token_note(t) for t in seq[2:] if t >= NOTE0],
            [token_note(t) for t in ids[0, 2:].tolist() if t >= NOTE0],
            cfg.prompt_notes,
            path,
        )
        return [path]


def _two_rolls(real: list[tuple[int, float]], sampled: list[tuple[int, float]], given: int, path: str) -> None:
    # imported here, not at the top: matplotlib is heavy and only needed now
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True, sharey=True)
    for ax, notes, title in ((axes[0], real, "real continuation"), (axes[1], sampled, "sampled continuation")):
        t = 0.0
        for i, (midi, ql) in enumerate(notes):
            if midi >= 0:
                ax.barh(midi, ql, left=t, height=0.8, color="0.6" if i < given else "tab:blue")
            t += ql
        ax.set_title(f"{title} (grey: the {given} given notes)")
        ax.set_ylabel("MIDI pitch")
    axes[1].set_xlabel("time (quarter notes)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


TASKS = (ChoralesTask,)
