"""Fine-tuning: from scratch vs full fine-tuning vs LoRA, on the same test sets and step budgets.

    python benchmarks/finetuning.py --task sentiment [--variants scratch,full,lora_qv,lora_all]
    python benchmarks/finetuning.py --task ner
    python benchmarks/finetuning.py --task shakespeare [--corpus PATH]
    python benchmarks/finetuning.py --report          # table + docs/tasks/finetuning.png from the JSON

Each run's row (trainable parameters, the task's test metric, training seconds, adapter file size) is merged
into benchmarks/results/finetuning.json under its task and variant, so the tasks can run as separate (and
parallel) processes. Sentiment and NER start from all-MiniLM-L6-v2 (``init=minilm``); shakespeare trains a
base character model on the plays, then adapts it to a text found on this machine (``init=RUN_DIR``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import tempfile
from pathlib import Path

import torch
from common import RESULTS, machine, table

from tinyformers.core.tokenizers import tokenizer_from_dict
from tinyformers.engine.rundir import ADAPTERS, WEIGHTS
from tinyformers.engine.task import apply_overrides
from tinyformers.engine.trainer import evaluate_run, train
from tinyformers.tasks import get_task, load_run, read_run_config

DOCS = Path(__file__).parent.parent / "docs" / "tasks"
OUT = RESULTS / "finetuning.json"

# every variant of a task gets the same steps and batch (the budgets of docs/tasks/sentiment.md and ner.md);
# the learning rate is each method's usual one: 1e-3 from scratch, 1e-4 for full fine-tuning (the task refuses
# more than 2e-4), 1e-3 for LoRA (adapters start at zero and are small: they need a larger step, Hu et al. §5)
BUDGET = {
    "sentiment": ["batch_size=16", "max_steps=250", "warmup_steps=25", "eval_every=250"],
    "ner": ["batch_size=16", "max_steps=150", "warmup_steps=15", "eval_every=50"],
}
VARIANTS = {
    "scratch": ["init=scratch", "lr=1e-3"],
    "full": ["init=minilm", "lr=1e-4"],
    "lora_qv": ["init=minilm", "finetune=lora", "lora_r=8", "lora_targets=q,v", "lr=1e-3"],
    "lora_all": ["init=minilm", "finetune=lora", "lora_r=8", "lora_targets=q,k,v,o,ffn", "lr=1e-3"],
    "lora_qv_lr5e-3": ["init=minilm", "finetune=lora", "lora_r=8", "lora_targets=q,v", "lr=5e-3"],
}
METRIC = {"sentiment": "test_macro_f1", "ner": "test_entity_f1", "shakespeare": "val_loss"}

# shakespeare: a base model on the plays, then the same step budget on the new text for every variant
SH_MODEL = ["max_time=0", "eval_windows=300"]
SH_BASE_STEPS = 1500
SH_STEPS = ["max_steps=300", "warmup_steps=30", "eval_every=100"]
# the new text has characters the plays never had: init runs drop them (unknown_chars=drop); the scratch run
# reads a temporary copy with the same characters dropped, so every variant sees the same text
SH_VARIANTS = {
    "scratch": ["corpus={dropped}", "lr=4e-3"],
    "full": ["corpus={corpus}", "init={base}", "unknown_chars=drop", "lr=1e-3"],
    "lora_qv": ["corpus={corpus}", "init={base}", "unknown_chars=drop", "finetune=lora", "lora_targets=q,v", "lr=4e-3"],
    "lora_all": [
        "corpus={corpus}",
        "init={base}",
        "unknown_chars=drop",
        "finetune=lora",
        "lora_targets=q,k,v,o,ffn",
        "lr=4e-3",
    ],
}
# texts shipped with Debian's base-files (English prose, never copied into the repository)
CORPORA = ["/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/GPL-2"]


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def describe(run: Path, metrics: dict, settings: list[str]) -> dict:
    """The row of one run: what trained, how well, how long, how big on disk."""
    _, cfg, _, model = load_run(run)
    row = {
        "settings": " ".join(settings),
        "trainable_params": trainable(model) if cfg.finetune == "lora" else metrics["params"],
        "params": metrics["params"],
        "model_bytes": (run / WEIGHTS).stat().st_size,
        "adapter_bytes": (run / ADAPTERS).stat().st_size if (run / ADAPTERS).exists() else None,
        **metrics,
    }
    return row


def merge(task: str, rows: dict[str, dict], extra: dict | None = None) -> None:
    """Add ``rows`` (variant -> row) under ``task`` in the results file (locked: tasks run in parallel)."""
    RESULTS.mkdir(exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "tinyformers-finetuning.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = json.loads(OUT.read_text()) if OUT.exists() else {"tasks": {}}
        entry = saved["tasks"].setdefault(task, {"rows": {}})
        entry["rows"].update(rows)
        entry.update(extra or {}, command=" ".join(["python", *sys.argv]), machine=machine())
        OUT.write_text(json.dumps(saved, indent=2) + "\n")


def encoder_task(name: str, variants: list[str], runs_dir: Path) -> None:
    task = get_task(name)
    for variant in variants:
        settings = BUDGET[name] + VARIANTS[variant]
        out = runs_dir / f"{name}-{variant}"
        m = train(task, apply_overrides(task.Config(), settings), out, overwrite=True, progress=False)
        row = describe(out, m, settings)
        merge(name, {variant: row})
        print(f"{name} {variant}: {METRIC[name]} {m[METRIC[name]]:.4f} in {m['train_seconds']}s", file=sys.stderr)


def find_corpus() -> Path:
    for path in CORPORA:
        if Path(path).is_file():
            return Path(path)
    raise SystemExit(f"none of {CORPORA} is installed; give --corpus PATH")


def shakespeare(variants: list[str], runs_dir: Path, corpus: Path) -> None:
    task = get_task("shakespeare")
    base = runs_dir / "shakespeare-base"
    base_settings = [*SH_MODEL, f"max_steps={SH_BASE_STEPS}", "eval_every=500"]
    m = train(task, apply_overrides(task.Config(), base_settings), base, overwrite=True, progress=False)
    print(f"shakespeare base on the plays: val_loss {m['val_loss']:.4f} in {m['train_seconds']}s", file=sys.stderr)
    vocab = set(tokenizer_from_dict(read_run_config(base)[2]["tokenizer"]).stoi)
    text = corpus.read_text()
    dropped = runs_dir / f"{corpus.name}.in-vocabulary.txt"
    dropped.write_text("".join(c for c in text if c in vocab))
    unknown = sorted(set(text) - vocab)
    # the base model as it is, on the new text: same windows of the same validation split as every variant
    zero = evaluate_run(task, base, [f"corpus={corpus}", "unknown_chars=drop", *SH_MODEL])
    rows = {
        "base_plays": {"settings": " ".join(base_settings), "params": m["params"], **m},
        "zero_shot": {
            "settings": f"(the base run, evaluated on {corpus.name})",
            "trainable_params": 0,
            "params": m["params"],
            **zero,
        },
    }
    facts = {
        "corpus": str(corpus),
        "corpus_chars": len(text),
        "dropped_chars": len(text) - len(dropped.read_text()),
        "dropped_symbols": "".join(unknown),
    }
    merge("shakespeare", rows, facts)
    for variant in variants:
        fill = {"base": base, "corpus": corpus, "dropped": dropped}
        settings = [*SH_MODEL, *SH_STEPS, *(s.format(**fill) for s in SH_VARIANTS[variant])]
        out = runs_dir / f"shakespeare-{variant}"
        m = train(task, apply_overrides(task.Config(), settings), out, overwrite=True, progress=False)
        merge("shakespeare", {variant: describe(out, m, settings)})
        print(f"shakespeare {variant}: val_loss {m['val_loss']:.4f} in {m['train_seconds']}s", file=sys.stderr)


def plot(saved: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = [t for t in ("sentiment", "ner", "shakespeare") if t in saved["tasks"]]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    colors = {
        "scratch": "tab:grey",
        "full": "tab:blue",
        "lora_qv": "tab:orange",
        "lora_all": "tab:red",
        "lora_qv_lr5e-3": "tab:purple",
    }
    for ax, name in zip(axes[0], names, strict=True):
        rows = saved["tasks"][name]["rows"]
        for variant, color in colors.items():
            if variant in rows:
                r = rows[variant]
                ax.scatter(r["trainable_params"], r[METRIC[name]], color=color, s=60, label=variant, zorder=3)
        if "zero_shot" in rows:
            ax.axhline(rows["zero_shot"]["val_loss"], color="black", linestyle=":", label="base, zero-shot")
            ax.axhline(rows["zero_shot"]["bigram_loss"], color="grey", linestyle="--", label="bigram baseline")
        else:
            key = "baseline_" + METRIC[name].removeprefix("test_")
            ax.axhline(next(iter(rows.values()))[key], color="grey", linestyle="--", label="baseline (no network)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(METRIC[name].replace("_", " ") + (" (lower is better)" if name == "shakespeare" else ""))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def report() -> None:
    saved = json.loads(OUT.read_text())
    cols = ["variant", "metric", "trainable_params", "params", "train_seconds", "adapter_bytes", "model_bytes"]
    for name, entry in saved["tasks"].items():
        rows = [{"variant": v, "metric": r.get(METRIC[name]), **r} for v, r in entry["rows"].items()]
        print(f"\n{name} ({METRIC[name]}), {entry['machine']['date']}: {entry['command']}")
        print(table(rows, cols))
    plot(saved, DOCS / "finetuning.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["sentiment", "ner", "shakespeare"])
    ap.add_argument("--variants", default="scratch,full,lora_qv,lora_all")
    ap.add_argument("--runs", type=Path, help="keep the run directories here (default: a temporary directory)")
    ap.add_argument("--corpus", type=Path, help="shakespeare: the new text (default: the first of CORPORA found)")
    ap.add_argument("--report", action="store_true", help="print the tables and draw the figure from the JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the machine is shared; see benchmarks/encoder_tasks.py --threads
    if args.task:
        variants = args.variants.split(",")
        runs_dir = args.runs or Path(tempfile.mkdtemp(prefix=f"finetune-{args.task}-"))
        if args.task == "shakespeare":
            shakespeare(variants, runs_dir, args.corpus or find_corpus())
        else:
            encoder_task(args.task, variants, runs_dir)
    if args.report or not args.task:
        report()


if __name__ == "__main__":
    main()
