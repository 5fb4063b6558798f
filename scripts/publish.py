"""One source for published numbers: the README's task table, each task page's headline and tables, and the
challenge's report in docs/challenge.md, generated from the benchmarks' JSON in benchmarks/results/.

    python scripts/publish.py write   # rewrite the generated blocks from the JSON
    python scripts/publish.py check   # exit 1 (and show the difference) if a committed block differs

A generated block sits between ``<!-- generated:NAME -->`` and ``<!-- /generated -->``; the text around it is
hand-written and never touched. To change a number, re-run its benchmark (which rewrites its JSON), then
``write``. tests/test_publish.py runs ``check`` on every ``make test``.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "src"))  # the library of this checkout, installed or not
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+)[^>]*-->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def row(data: dict, **match: object) -> dict:
    """The one row of ``data`` whose fields equal ``match``."""
    found = [r for r in data["rows"] if all(r.get(k) == v for k, v in match.items())]
    if len(found) != 1:
        raise KeyError(f"{len(found)} rows match {match} in {data['command']!r}")
    return found[0]


def sanity() -> str:
    d = load("sanity")
    tasks = ("copy", "reverse", "sort")
    enc = " / ".join(pct(row(d, task=t, arch="seq2seq")["test_exact_match"]) for t in tasks)
    dec = " / ".join(pct(row(d, task=t, arch="decoder")["test_exact_match"]) for t in tasks)
    longest = max(r["train_seconds"] for r in d["rows"])
    return f"exact match (copy / reverse / sort): encoder-decoder {enc}; decoder-only {dec}; each run ≤ {longest:.0f} s"


def shakespeare() -> str:
    d = load("shakespeare_quality")
    ours, nano = row(d, recipe="tinyformers default"), row(d, recipe="nanoGPT CPU config")
    return (
        f"{ours['val_loss']:.2f} nats/char in {ours['train_seconds']:.0f} s (nanoGPT's CPU config, 2,000 steps of "
        f"the same trainer: {nano['val_loss']:.2f} in {nano['train_seconds']:.0f} s)"
    )


def languages() -> str:
    d = load("languages")
    s, f = (row(d, variant=v, p=0.1, setting="recipe") for v in ("symbols", "floats"))
    return (
        f"symbols {pct(s['test_accuracy'])} vs Bayes-optimal {pct(s['bayes_accuracy'])}; "
        f"floats {pct(f['test_accuracy'])} vs {pct(f['bayes_accuracy'])}"
    )


def weather() -> str:
    d = load("weather")
    sf, sea = row(d, dataset="sf-hourly", skip="rlinear"), row(d, dataset="seattle-hourly", skip="rlinear")
    return (
        f"SF hourly MAE {sf['test_mae'] / sf['linear_mae']:.2f}x the linear model's; Seattle hourly "
        f"{sea['test_mae'] / sea['linear_mae']:.2f}x: does not beat it"
    )


def _by_label(name: str) -> dict[str, dict]:
    return {r["label"]: r for r in load(name)["rows"]}


def _one_host(name: str, reference: str) -> dict[str, dict]:
    """The rows of ``name`` (by label) measured on the same kind of host as the row ``reference`` (``_host``). A
    headline that compares runs takes them from here, so it never sets one CPU's run against another's (the two
    kinds of host we measure on differ by up to 1.7x in steps per CPU-second)."""
    data = load(name)
    ref = next(v for v in data["rows"] if v["label"] == reference)
    return {v["label"]: v for v in data["rows"] if _host(data, v) == _host(data, ref)}


def _host(data: dict, row: dict) -> str:
    """The kind of host a row of a results file ran on: its own ``machine``, else the file's."""
    return row.get("machine", data["machine"]["cpu"])


def _short_cpu(machine: str) -> str:
    """A row's ``machine`` as a headline names it: "Intel(R) Xeon(R) Processor (AVX512; ...)" -> "Intel Xeon
    Processor"."""
    return machine.split(" (")[0].replace("(R)", "")


def _host_name(machine: str) -> str:
    """``_short_cpu``, and ", AVX2 only" for a CPU without AVX-512: two of our hosts are both an "AMD EPYC", one
    with AVX-512 and native bf16, one with AVX2 only (fp32 matmuls ~2x slower, bf16 unusable)."""
    features = machine.split("; ")[-1] if "; " in machine else ""
    return _short_cpu(machine) + (", AVX2 only" if "AVX2" in features and "AVX-512" not in features else "")


# the label of another seed's run of a recipe: the recipe's label and this (see _seeds)
SEED_SUFFIX = re.compile(r", (second|third|fourth|fifth) seed$|, seed \d+$")


def _seeds(rows: dict[str, dict], prefix: str, key: str) -> list[float]:
    """``key`` of every row of one recipe: its label is ``prefix``, or ``prefix`` and ", second seed" etc."""
    return [v[key] for label, v in rows.items() if label.startswith(prefix)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def mnist_words() -> str:
    def seeds(rows: dict[str, dict], prefix: str) -> tuple[str, str]:
        """The mean words-exact of one recipe's seeds, and the seeds' values when several."""
        runs = _seeds(rows, prefix, "test_word_accuracy")
        each = f" ({len(runs)} seeds: {', '.join(pct(x) for x in runs)})" if len(runs) > 1 else ""
        return pct(_mean(runs)), each

    # the default recipe (16-channel stem, dropout 0.1), as the newest host measured it (the challenge's rows) ...
    r = _one_host("mnist_words_quiet", "encoder-decoder")
    (words, words_each), (classifier, classifier_each) = seeds(r, "encoder-decoder"), seeds(r, "classifier + lookup")
    cpu = _short_cpu(r["encoder-decoder"].get("machine", ""))
    text = (
        f"{words} words exact{words_each}{f' on {cpu}' if cpu else ''}, conv-stem encoder, "
        f"{r['encoder-decoder']['train_seconds'] / 60:.0f} CPU-min (the same encoder as a classifier + lookup, "
        f"same budget: {classifier}{classifier_each})"
    )
    # ... and the same recipe's seeds on the other kind of host, when they were measured there
    other = _one_host("mnist_words_quiet", "encoder-decoder, 16-channel stem")
    if "encoder-decoder" not in other:
        (words, words_each), (classifier, classifier_each) = (
            seeds(other, "encoder-decoder, 16-channel stem"),
            seeds(other, "classifier + lookup, 16-channel stem"),
        )
        cpu = _short_cpu(other["encoder-decoder, 16-channel stem"].get("machine", "the other host"))
        text += f"; on {cpu}: {words}{words_each} vs {classifier}{classifier_each}"
    return text


def vision() -> str:
    r = _one_host("vision_quiet", "conv-stem ViT")

    def acc(label: str) -> str:
        return pct(r[label]["test_accuracy"])

    plain = _seeds(r, "plain ViT, 3 layers", "test_accuracy")
    plain_tta = _mean(_seeds(r, "plain ViT, 3 layers", "tta_test_accuracy"))

    def mnist5k(fp32: bool) -> list[float]:
        """The MNIST-5k conv-stem ViT's seeds in bf16 (the default on this host) or in fp32."""
        return [
            v["test_accuracy"]
            for label, v in r.items()
            if label.startswith("conv-stem ViT, MNIST-5k") and ("fp32" in label) == fp32
        ]

    bf16, fp32 = mnist5k(False), mnist5k(True)
    seeds = f" (means of {len(bf16)} seeds)" if len(bf16) > 1 and len(fp32) == len(bf16) else ""
    vit = f"{pct(_mean(bf16))} in bf16, {pct(_mean(fp32))} in fp32{seeds}" if fp32 else pct(_mean(bf16))
    return (
        f"Fashion-MNIST, 10 CPU-min each: conv-stem ViT {acc('conv-stem ViT')}, CNN {acc('CNN')}, MLP {acc('MLP')}, "
        f"plain-patch ViT {pct(_mean(plain))} ({len(plain)} seed{'s' if len(plain) > 1 else ''}; {pct(plain_tta)} "
        "with mirror test-time augmentation); "
        "MNIST-5k, 5 CPU-min each: conv-stem ViT "
        f"{vit}, CNN {acc('CNN, MNIST-5k')}"
    )


VISION_COLUMNS = {"dataset": "data", "variant": "variant", "test_accuracy": "test acc", "test_macro_f1": "macro-F1"}
WORDS_COLUMNS = {"variant": "model", "test_word_accuracy": "words exact"}


def _bleu_chrf_runs(rows: dict[str, dict], prefix: str, unit: str) -> tuple[list[float], list[float], str]:
    """Test BLEU and chrF of every run of one translate recipe (``_seeds``), and, when there are several, the text
    " (mean of N <unit>; chrF a, b, ...)"."""
    bleus, chrfs = _seeds(rows, prefix, "test_bleu_beam"), _seeds(rows, prefix, "test_chrf")
    each = f" (mean of {len(chrfs)} {unit}; chrF {', '.join(f'{c:.2f}' for c in chrfs)})" if len(chrfs) > 1 else ""
    return bleus, chrfs, each


def translate() -> str:
    data = load("translate_quiet")
    rows = {v["label"]: v for v in data["rows"]}
    r, long = rows["extra pairs, 30 CPU-min, bf16"], rows.get(TRANSLATE_CURVE)
    # two hosts (the longer run measured on another kind): each part of the headline names its own
    two_hosts = long is not None and _host(data, long) != _host(data, r)
    here, there = (f" on {_short_cpu(_host(data, v))}" if two_hosts else "" for v in (r, long or r))

    def side(ours: float, lookup: float) -> str:
        return "above" if ours > lookup else "below"

    def host_of(row: dict) -> str:
        return f" on {_short_cpu(_host(data, row))}" if two_hosts or _host(data, row) != _host(data, r) else ""

    def recipe_runs(label: str, name: str) -> str:
        """One recipe's runs: their mean against the lookup, how many lead on chrF."""
        first = rows[label]
        bleus, chrfs, each = _bleu_chrf_runs(rows, label, "runs")
        lb, lc = first["lookup_bleu"], first["lookup_chrf"]
        above = sum(c > lc for c in chrfs)
        count = f", above it in {above} of {len(chrfs)} runs" if len(chrfs) > 1 else ""
        return (
            f"{name}, {first['train_seconds'] / 60:.0f} CPU-min{host_of(first)}: BLEU {_mean(bleus):.2f}, chrF "
            f"{_mean(chrfs):.2f}{each} against the dictionary lookup's {lb:.2f} / {lc:.2f}: BLEU "
            f"{_mean(bleus) / lb:.1f}x the lookup's, chrF {abs(_mean(chrfs) - lc):.2f} {side(_mean(chrfs), lc)} "
            f"it{count}"
        )

    text = ""
    mbr = rows.get(TRANSLATE_MBR)
    if mbr:  # the page's recipe: minimum Bayes risk decoding; the same models' beam search alone beside it
        tops_bleu, tops_chrf = (
            _seeds(rows, TRANSLATE_MBR, "test_bleu_beam_top"),
            _seeds(rows, TRANSLATE_MBR, "test_chrf_top"),
        )
        text += recipe_runs(
            TRANSLATE_MBR,
            "The recipe (pre-translation, 128 extra pairs a step, 8 beams, minimum Bayes risk decoding on chrF "
            f"against {mbr['config']['mbr_samples']} sampled translations)",
        )
        text += f"; the same models' beam search alone: BLEU {_mean(tops_bleu):.2f}, chrF {_mean(tops_chrf):.2f}. " + (
            "Without MBR: " if rows.get(TRANSLATE_RECIPE) else "Before it: "
        )
    if rows.get(TRANSLATE_RECIPE):  # the recipe without MBR: the mean of its runs (seeds, the challenge's)
        name = "The recipe (pre-translation, 128 extra pairs a step, 8 beams)"
        text += recipe_runs(TRANSLATE_RECIPE, name if not mbr else name.replace("The recipe", "the same")) + ". "
        text += "Before it: "
    bleu, chrf = side(r["test_bleu_beam"], r["lookup_bleu"]), side(r["test_chrf"], r["lookup_chrf"])
    text += (
        f"BLEU {r['test_bleu_beam']:.2f} (beam), chrF {r['test_chrf']:.1f} after {r['train_seconds'] / 60:.0f} "
        f"CPU-min{here}: BLEU {bleu} the dictionary-lookup baseline's {r['lookup_bleu']:.2f}, chrF {chrf} its "
        f"{r['lookup_chrf']:.1f}"
    )
    if long:  # the longer run with length buckets: how far the recipe goes
        text += (
            f"; with length buckets, {long['train_seconds'] / 60:.0f} CPU-min{there}: "
            f"BLEU {long['test_bleu_beam']:.2f}, "
            f"chrF {long['test_chrf']:.1f} ({side(long['test_chrf'], long['lookup_chrf'])} the lookup's)"
        )
    pre = rows.get(TRANSLATE_PRE)
    if pre:  # the encoder also reads the dictionary's word-by-word lookup (pretranslate=true); its seeds' mean
        bleus, chrfs, each = _bleu_chrf_runs(rows, TRANSLATE_PRE, "seeds")
        text += (
            f"; with pre-translation (each sentence followed by its dictionary lookup)"
            f"{', 256 extra pairs a step' if rows.get(TRANSLATE_RECIPE) else ''}, "
            f"{pre['train_seconds'] / 60:.0f} CPU-min{host_of(pre)}: BLEU {_mean(bleus):.2f}, chrF {_mean(chrfs):.1f}"
            f"{each} ({side(_mean(bleus), pre['lookup_bleu'])} the lookup's BLEU, "
            f"{side(_mean(chrfs), pre['lookup_chrf'])} its chrF)"
        )
        # the same trained models evaluated again with 8 beams (``eval_8_beams``: tinyformers eval --set num_beams=8)
        again = [v.get("eval_8_beams") for label, v in rows.items() if label.startswith(TRANSLATE_PRE)]
        if all(again):  # every seed re-evaluated (there is at least one: ``pre``)
            bleus8, chrfs8 = [e["test_bleu_beam"] for e in again], [e["test_chrf"] for e in again]
            text += (
                f"; the same models with 8 beams: BLEU {_mean(bleus8):.2f}, chrF {_mean(chrfs8):.2f} "
                f"({abs(_mean(chrfs8) - pre['lookup_chrf']):.2f} {side(_mean(chrfs8), pre['lookup_chrf'])} the "
                f"lookup's {pre['lookup_chrf']:.2f})"
            )
    return text


TRANSLATE_PRE = "pre-translation, 30 CPU-min, bf16"  # the row of the pretranslate=true recipe, if measured

# the page's recipe: pre-translation with 128 extra pairs a step and 8 beams (its runs: this label, ", second seed"...)
TRANSLATE_RECIPE = "pre-translation with 128 extra pairs a step, 30 CPU-min, bf16"

# the page's recipe since the eighteenth session: the same with minimum Bayes risk decoding (its runs: this label...)
TRANSLATE_MBR = "pre-translation, 128 extra pairs a step, MBR, 30 CPU-min, bf16"


TRANSLATE_CURVE = "length buckets, 80 CPU-min, bf16"  # the row whose validation curve translate.md shows


def curve_table(name: str, label: str, every_min: float = 5.0) -> str:
    """The validation curve kept with a run's row (``record_run.py --curve``): the first evaluation, the first at
    or after every ``every_min`` CPU-minutes, and the last; BLEU and chrF (greedy) against the lookup's on the same
    sentences."""
    r = _by_label(name)[label]
    curve = r["curve"]
    shown, mark = [], every_min
    for i, e in enumerate(curve):
        if i == 0 or e["train_seconds"] / 60 >= mark or i == len(curve) - 1:
            shown.append(e)
            while e["train_seconds"] / 60 >= mark:
                mark += every_min
    lookup = curve[-1]
    lines = [
        "| CPU-min | step | BLEU (greedy) | chrF (greedy) |",
        "|---|---|---|---|",
        *(
            f"| {e['train_seconds'] / 60:.1f} | {e['step']:,} | {e['val_bleu_greedy']:.2f} | "
            f"{e['val_chrf_greedy']:.1f} |"
            for e in shown
        ),
        f"| lookup baseline | — | {lookup['lookup_bleu']:.2f} | {lookup['lookup_chrf']:.1f} |",
        "",
        f'<sub>Validation (greedy) of the run "{label}" in `benchmarks/results/{name}.json` (its command and '
        f"measure line: the table of runs above), the first evaluation and the first at or after each "
        f"{every_min:g} CPU-minutes.</sub>",
    ]
    return "\n".join(lines) + "\n"


TRANSLATE_COLUMNS = {
    "variant": "data",
    "test_bleu_greedy": "BLEU greedy",
    "test_bleu_beam": "BLEU beam",
    "test_chrf": "chrF",
    "length_penalty_chosen": "length penalty",
    "lookup_bleu": "lookup BLEU",
    "lookup_chrf": "lookup chrF",
}


def arithmetic() -> str:
    r = row(load("arithmetic_default"), ops="+,-,*")
    return (
        f"one model for + − × (scratchpad, {r['train_seconds'] / 60:.0f} CPU-min): + {pct(r['test_acc_add'], 0)}, "
        f"− {pct(r['test_acc_sub'], 0)} (3 digits), × {pct(r['test_acc_mul'], 0)} (2 digits)"
    )


def pixels() -> str:
    r = row(load("pixels"), dataset="mnist5k")
    return f"{r['test_bits_per_token']:.3f} bits/pixel vs {r['baseline_bits_per_token']:.3f} independent pixels"


def spoken_digits() -> str:
    d = load("spoken_digits")
    r = row(d, settings="defaults")
    accs = [x["test_accuracy"] for x in d["rows"]]  # one row per training seed
    seeds = f" ({len(accs)} training seeds: {pct(min(accs), 2)}–{pct(max(accs), 2)})" if len(accs) > 1 else ""
    return (
        f"{pct(r['test_accuracy'], 2)} on held-out espeak-ng voices{seeds} vs {pct(r['baseline_accuracy'])} "
        f"pooled-log-mel LR; flite voices {pct(r['test_accuracy_flite'])}"
    )


def chorales() -> str:
    r = row(load("chorales"), voice="soprano", transpose=6)
    return f"{r['test_nll_per_note']:.3f} nats/note vs {r['ngram_nll_per_note']:.3f} n-gram"


def _text_task(name: str, metric: str, shown: str, baseline: str, baseline_name: str, again: str = "") -> str:
    """The headline of a text task: MiniLM fine-tuned (full, and the best LoRA run when measured) against the
    linear baseline, and the best from-scratch recipe (the mean of its seeds' runs), from the quiet runs of
    ``name``. The LoRA and from-scratch runs are picked among those measured on the same kind of host as the full
    fine-tuning (``_one_host``). ``again``: the label of a from-scratch recipe measured again on another kind of
    host (with its seeds); when ``name`` has it, the headline names the first host and adds that host's mean and
    baseline after a "; on"."""
    r = _one_host(name, "MiniLM, full fine-tuning")
    full = r["MiniLM, full fine-tuning"]
    text = f"{shown} {full[metric]:.3f} (MiniLM fine-tuned, {full['train_seconds']:.0f} CPU-s)"
    loras = [v for k, v in r.items() if k.startswith("MiniLM, LoRA")]  # the best of the measured LoRA runs
    if loras:
        lora = max(loras, key=lambda v: v[metric])
        text += f", LoRA {lora[metric]:.3f} ({pct(lora['trainable_params'] / lora['params'])} of the weights trained)"
    digits = 3
    recipes: dict[str, list[dict]] = {}  # a recipe's runs: its label, and the label + ", second seed" etc.
    for label, v in r.items():
        if label.startswith("from scratch"):
            recipes.setdefault(SEED_SUFFIX.sub("", label), []).append(v)
    if recipes:
        label, runs = max(recipes.items(), key=lambda item: _mean([v[metric] for v in item[1]]))
        value = _mean([v[metric] for v in runs])
        if f"{value:.3f}" == f"{full[baseline]:.3f}":  # level to 3 decimals: show which side it is on
            digits = 4
        how = label.removeprefix("from scratch").strip(" ,+")
        each = f"; {len(runs)} seeds: {', '.join(f'{v[metric]:.3f}' for v in runs)}" if len(runs) > 1 else ""
        minutes = f"{runs[0]['train_seconds'] / 60:.0f} CPU-min"
        text += f"; from scratch {value:.{digits}f} ({how + ', ' if how else ''}{minutes}{each})"
    text += f" vs {baseline_name} {full[baseline]:.{digits}f}"
    data = load(name)
    if again and any(v["label"] == again for v in data["rows"]):
        rows = _one_host(name, again)
        first, values = rows[again], _seeds(rows, again, metric)
        each = f" ({len(values)} seeds: {', '.join(f'{x:.3f}' for x in values)})" if len(values) > 1 else ""
        text += (
            f" (all on {_host_name(_host(data, full))}); on {_host_name(_host(data, first))}, "
            f"{first['train_seconds'] / 60:.0f} CPU-min: from scratch {_mean(values):.3f}{each} vs {baseline_name} "
            f"{first[baseline]:.3f}"
        )
    return text


def sentiment() -> str:
    return _text_task(
        "sentiment_quiet", "test_macro_f1", "macro F1", "baseline_macro_f1", "TF-IDF", again=SENTIMENT_AGAIN
    )


def ner() -> str:
    return _text_task("ner_quiet", "test_entity_f1", "entity F1", "baseline_entity_f1", "per-token LR", again=NER_AGAIN)


# the from-scratch recipes re-measured on the AVX2-only host with the deterministic BPE tokenizer (2026-12-07/08)
SENTIMENT_AGAIN = "from scratch, ensemble of 4, MLM + char n-grams, dropout 0.3, AVX2-only host"
NER_AGAIN = "from scratch + MLM + char n-grams, AVX2-only host"


SENTIMENT_COLUMNS = {"variant": "model", "test_macro_f1": "macro F1", "baseline_macro_f1": "TF-IDF"}
NER_COLUMNS = {"variant": "model", "test_entity_f1": "entity F1", "baseline_entity_f1": "per-token LR"}


@dataclass(frozen=True)
class Entry:
    """One README row and one task page's headline: tasks as shown, the page, what it is, its JSON and result."""

    tasks: str
    page: str
    what: str
    sources: tuple[str, ...]
    result: Callable[[], str]
    tables: tuple[tuple[str, Callable[[], str]], ...] = ()  # more generated blocks of the page: (name, text)


ENTRIES = (
    Entry(
        "`copy`, `reverse`, `sort`", "sanity.md", "digit strings; encoder-decoder or decoder-only", ("sanity",), sanity
    ),
    Entry(
        "`shakespeare`",
        "shakespeare.md",
        "character-level GPT on the 38 plays, or `--set corpus=FILE`",
        ("shakespeare_quality",),
        shakespeare,
    ),
    Entry(
        "`languages`",
        "languages.md",
        "which of 3 artificial languages made a sequence (symbols or floats)",
        ("languages",),
        languages,
    ),
    Entry("`weather`", "weather.md", "24-hour temperature forecasts (vega_datasets)", ("weather",), weather),
    Entry(
        "`mnist-words`",
        "mnist-words.md",
        "a handwritten digit in, its name written out",
        ("mnist_words_quiet",),
        mnist_words,
        (("runs", lambda: runs_table("mnist_words_quiet", WORDS_COLUMNS)),),
    ),
    Entry(
        "`vision`",
        "vision.md",
        "ViT vs CNN vs MLP on Fashion-MNIST / MNIST / your image folder",
        ("vision_quiet",),
        vision,
        (("runs", lambda: runs_table("vision_quiet", VISION_COLUMNS)),),
    ),
    Entry(
        "`translate`",
        "translate.md",
        "German -> English encoder-decoder, beam search, BLEU",
        ("translate_quiet",),
        translate,
        (
            ("runs", lambda: runs_table("translate_quiet", TRANSLATE_COLUMNS)),
            ("curve", lambda: curve_table("translate_quiet", TRANSLATE_CURVE)),
        ),
    ),
    Entry(
        "`arithmetic`", "arithmetic.md", "`123+456=` -> `579` with a decoder LM", ("arithmetic_default",), arithmetic
    ),
    Entry("`pixels`", "pixels.md", "class-conditional digit images, pixel by pixel", ("pixels",), pixels),
    Entry(
        "`spoken-digits`",
        "spoken-digits.md",
        "synthesised spoken digits, log-mel + encoder, unseen voices",
        ("spoken_digits",),
        spoken_digits,
    ),
    Entry("`chorales`", "chorales.md", "Bach chorale melodies as tokens; MIDI out", ("chorales",), chorales),
    Entry(
        "`sentiment`",
        "sentiment.md",
        "tweet sentiment, from scratch or from pretrained MiniLM",
        ("sentiment_quiet",),
        sentiment,
        (("runs", lambda: runs_table("sentiment_quiet", SENTIMENT_COLUMNS)),),
    ),
    Entry(
        "`ner`",
        "ner.md",
        "named entities in tweets (WNUT-16)",
        ("ner_quiet",),
        ner,
        (("runs", lambda: runs_table("ner_quiet", NER_COLUMNS)),),
    ),
)


def measured_quiet(data: dict) -> bool:
    """Whether a results JSON says its numbers came from a quiet machine: the load a benchmark recorded
    (``machine.load.verdict``), the ``../shared/tools/measure`` line of the whole run (``measure``, or
    ``machine.note``), or that of every row (``scripts/record_run.py``)."""
    machine = data.get("machine", {})
    if machine.get("load", {}).get("verdict") == "quiet":
        return True
    if any("measure: quiet" in str(v) for v in (data.get("measure", ""), machine.get("note", ""))):
        return True
    return bool(data["rows"]) and all(str(r.get("measure", "")).startswith("measure: quiet") for r in data["rows"])


def command(cmd: str) -> str:
    """A benchmark's command as run from the repository root (scripts named bare ran in benchmarks/)."""
    parts = cmd.split()
    if len(parts) > 1 and parts[0] == "python" and "/" not in parts[1]:
        return f"cd benchmarks && {cmd}"
    return cmd


def provenance(name: str) -> str:
    """Where a JSON's numbers come from: command, date, machine, calibration and load as recorded."""
    from tinyformers.engine.calibration import calibration_text, load_text

    d = load(name)
    m = d.get("machine", {})
    if "command" not in d:  # rows recorded one run at a time by scripts/record_run.py
        cpu = "more than one kind of host" if _per_row(m) else m["cpu"]
        return (
            f"`benchmarks/results/{name}.json` ({cpu}, {m['cpus']} CPUs, torch {m['torch']}; each run's command, "
            "`../shared/tools/measure` verdict line and, from two kinds of host, CPU are in the page's table of runs)"
        )
    text = f"`benchmarks/results/{name}.json`: `{command(d['command'])}`, {m.get('date', 'date not recorded')}"
    if "calibration" in m:
        text += f"; {calibration_text(m['calibration'])}; load: {load_text(m['load'])}"
    else:
        text += (
            f"; {m.get('cpu', 'CPU not recorded')}, {m.get('torch_threads', '?')} torch threads, torch "
            f"{m.get('torch', '?')}; {m.get('note', 'no calibration or load recorded (measured before they were)')}"
        )
    if "measure" in d:  # the ../shared/tools/measure verdict line of the run, recorded with its JSON
        text += f"; `{d['measure']}`"
    return text


def runs_table(name: str, columns: dict[str, str]) -> str:
    """The rows of a file written by scripts/record_run.py: ``columns`` (key -> heading), then each run's
    CPU seconds, steps, command and measure verdict line (and its CPU, when the file's rows come from two kinds
    of host)."""
    lines = [
        "| run | " + " | ".join(columns.values()) + " | params | steps | CPU s | command | measure |",
        "|---|" + "---|" * (len(columns) + 5),
    ]
    data = load(name)
    per_row = _per_row(data.get("machine", {}))
    for r in data["rows"]:
        cells = [_cell(k, r.get(k)) for k in columns]
        size = f"{r['params']:,} | {r['steps']:,} | {r['train_seconds']:.0f}"
        host = f" on {r['machine']}" if per_row and r.get("machine") else ""
        lines.append(f"| {r['label']} | {' | '.join(cells)} | {size} | `{r['command']}` | `{r['measure']}`{host} |")
    lines += ["", f"<sub>From `benchmarks/results/{name}.json`, each row written by `scripts/record_run.py`.</sub>"]
    return "\n".join(lines) + "\n"


def _per_row(machine: dict) -> bool:
    """Whether a results file's rows come from two kinds of host (record_run.py then names each row's CPU)."""
    return str(machine.get("cpu", "")).startswith("per row")


def _cell(key: str, v: object) -> str:
    """Accuracies and F1 as percentages; other numbers (BLEU, chrF, a length penalty) to 3 significant digits."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return pct(v, 2) if ("accuracy" in key or "f1" in key) and 0 <= v <= 1 else f"{v:.3g}"
    return str(v)


def readme_table() -> str:
    lines = ["| task | what | held-out result |", "|---|---|---|"]
    for e in ENTRIES:
        lines.append(f"| [{e.tasks}](docs/tasks/{e.page}) | {e.what} | {e.result()} |")
    return "\n".join(lines) + "\n"


def headline(e: Entry) -> str:
    sources = "; ".join(provenance(s) for s in e.sources)
    return f"**Headline:** {e.result()}.\n\n<sub>Generated by `scripts/publish.py` from {sources}.</sub>\n"


def challenge_report() -> str:
    """docs/challenge.md's report: what ``tinyformers challenge`` wrote in REPORT.md (without its title), rendered
    by the same function from the run's report.json as committed in benchmarks/results/challenge.json, with the
    plots it copied to docs/challenge/."""
    from tinyformers.apps.challenge import report_markdown

    d = load("challenge")
    return (
        f"<sub>Generated by `scripts/publish.py` from `benchmarks/results/challenge.json`: the report.json of "
        f"`{d['command']}` at commit `{d['commit']}`, wrapped in `../shared/tools/measure`: "
        f"`{d['measure']}`.</sub>\n\n" + report_markdown(d["rows"], d["header"], plots_under="challenge/")
    )


def generated() -> dict[Path, dict[str, str]]:
    """file -> {block name -> its text}."""
    out: dict[Path, dict[str, str]] = {README: {"tasks": readme_table()}}
    for e in ENTRIES:
        out[ROOT / "docs" / "tasks" / e.page] = {"headline": headline(e), **{n: f() for n, f in e.tables}}
    out[ROOT / "docs" / "challenge.md"] = {"report": challenge_report()}
    return out


def render(path: Path, blocks: dict[str, str]) -> str:
    """The file's text with its generated blocks replaced; every expected block must be there."""
    text = path.read_text()
    seen = set()

    def replace(m: re.Match) -> str:
        name = m["name"]
        if name not in blocks:
            raise KeyError(f"{path}: unknown generated block {name!r}")
        seen.add(name)
        return m.group(1) + blocks[name] + m.group(4)

    new = BLOCK.sub(replace, text)
    missing = set(blocks) - seen
    if missing:
        raise KeyError(f"{path}: no <!-- generated:{sorted(missing)[0]} --> block")
    return new


def check() -> list[str]:
    """The differences between the committed files and what the JSON generates (empty: all up to date)."""
    diffs = []
    for path, blocks in generated().items():
        old, new = path.read_text(), render(path, blocks)
        if old != new:
            rel = str(path.relative_to(ROOT))
            diffs.append(
                "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), rel, rel + " (generated)"))
            )
    return diffs


def write() -> list[Path]:
    changed = []
    for path, blocks in generated().items():
        new = render(path, blocks)
        if new != path.read_text():
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    if argv not in (["write"], ["check"]):
        print("usage: python scripts/publish.py write|check", file=sys.stderr)
        return 2
    if argv == ["write"]:
        for path in write():
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    diffs = check()
    for d in diffs:
        print(d)
    if diffs:
        print(
            "published numbers differ from benchmarks/results: run `python scripts/publish.py write`", file=sys.stderr
        )
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
