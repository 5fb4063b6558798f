"""How much of a translate training batch is padding: random mixed batches against length buckets.

    python benchmarks/translate_padding.py [--batches 200]

Builds the translate data with the dictionary's extra pairs (``extra_pairs=dictionary``, ~1 minute) and draws
``--batches`` training batches of each batching recipe with the task's own ``batch()``:

* mixed: ``extra_share=0.5`` of a random batch of 64 is extra pairs, padded together with the sentences;
* buckets: ``length_buckets=true extra_batch=256``: 64 sentences, neighbours in length order, and 256 extra pairs
  as a sub-batch of their own, each padded to its own longest row.

For each: source and target token slots per batch (rows x padded width), the real tokens among them, the share
that is padding, and the sentence and extra pairs a batch trains on. A count, not a timing: it needs no quiet
machine. Prints a Markdown table, writes benchmarks/results/translate_padding.json.
"""

from __future__ import annotations

import argparse
import sys

import torch
from common import save, table

from tinyformers.data.translation import PAD
from tinyformers.engine.task import apply_overrides
from tinyformers.tasks import get_task

RECIPES = {
    "mixed (extra_share=0.5)": ["extra_pairs=dictionary"],
    "buckets (length_buckets=true extra_batch=256)": [
        "extra_pairs=dictionary",
        "length_buckets=true",
        "extra_batch=256",
    ],
}


def count(batch: dict[str, torch.Tensor], prefix: str) -> dict[str, int]:
    """Slots and real tokens of the source and target tensors of one (sub-)batch."""
    src, tgt = batch[f"{prefix}src_ids"], batch[f"{prefix}labels"]
    return {
        "slots": src.numel() + tgt.numel(),
        "tokens": int((src != PAD).sum() + (tgt != PAD).sum()),
        "rows": src.size(0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    args = ap.parse_args()
    task = get_task("translate")
    rows = []
    for name, sets in RECIPES.items():
        cfg = apply_overrides(task.Config(), sets)
        data = task.data(cfg)
        n_sent = len(data.splits["train_ids"])
        gen = torch.Generator().manual_seed(0)
        slots = tokens = sentences = extras = 0
        for _ in range(args.batches):
            batch = task.batch(data, cfg, gen)
            parts = [count(batch, "")] + ([count(batch, "extra_")] if "extra_src_ids" in batch else [])
            slots += sum(p["slots"] for p in parts)
            tokens += sum(p["tokens"] for p in parts)
            if "extra_src_ids" in batch:
                sentences, extras = sentences + parts[0]["rows"], extras + parts[1]["rows"]
            else:  # the mixed batch: the first batch_size - round(share x batch_size) rows are sentences
                n_extra = round(cfg.extra_share * cfg.batch_size)
                sentences, extras = sentences + parts[0]["rows"] - n_extra, extras + n_extra
        rows.append(
            {
                "batching": name,
                "token_slots_per_batch": round(slots / args.batches),
                "real_tokens_per_batch": round(tokens / args.batches),
                "padding_share": round(1 - tokens / slots, 3),
                "sentences_per_batch": sentences / args.batches,
                "extra_pairs_per_batch": extras / args.batches,
                "training_sentences": n_sent,
                "extra_pairs": len(data.splits["extra_ids"]),
            }
        )
        print(f"{name}: {rows[-1]}", file=sys.stderr)
    print(table(rows, list(rows[0])))
    save("translate_padding", " ".join(["python", *sys.argv]), rows, {"batches": args.batches})


if __name__ == "__main__":
    main()
