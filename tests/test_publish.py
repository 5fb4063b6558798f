"""One source for published numbers: the README table and the task pages' headlines are what
``scripts/publish.py`` generates from benchmarks/results/*.json (run ``python scripts/publish.py write``)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "publish.py"


@pytest.fixture(scope="module")
def publish():
    spec = importlib.util.spec_from_file_location("publish", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["publish"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_numbers_are_what_the_json_generates(publish):
    diffs = publish.check()
    assert not diffs, "run `python scripts/publish.py write`:\n" + "\n".join(diffs)


def test_a_changed_result_is_caught(publish, monkeypatch):
    original = publish.load

    def edited(name: str) -> dict:
        data = copy.deepcopy(original(name))
        if name == "pixels":
            data["rows"][0]["test_bits_per_token"] = 0.5
        return data

    monkeypatch.setattr(publish, "load", edited)
    diffs = publish.check()
    assert len(diffs) == 2  # the README row and the pixels page
    assert all("0.500 bits/pixel" in d for d in diffs)


def test_a_changed_challenge_row_is_caught_in_its_page(publish, monkeypatch):
    """docs/challenge.md's table is benchmarks/results/challenge.json rendered: an edited verdict shows as a diff."""
    original = publish.load

    def edited(name: str) -> dict:
        data = copy.deepcopy(original(name))
        if name == "challenge":
            data["rows"][0]["verdict"] = "an edited verdict"
        return data

    monkeypatch.setattr(publish, "load", edited)
    diffs = publish.check()
    assert len(diffs) == 1 and "docs/challenge.md" in diffs[0] and "+| arithmetic |" in diffs[0]
    assert "an edited verdict" in diffs[0]


def test_every_headline_comes_from_a_quiet_run(publish):
    """Issue 21: no headline of the README or a task page is a number measured while other jobs shared the CPUs."""
    loaded = [src for e in publish.ENTRIES for src in e.sources if not publish.measured_quiet(publish.load(src))]
    assert not loaded, f"headline sources without a quiet measurement: {loaded}"


def test_quiet_means_a_quiet_record(publish):
    assert publish.measured_quiet({"machine": {"load": {"verdict": "quiet"}}, "rows": []})
    assert not publish.measured_quiet({"machine": {"load": {"verdict": "LOADED"}}, "rows": [{}]})
    assert not publish.measured_quiet({"machine": {"date": "2026-11-22"}, "rows": [{"x": 1}]})  # no load recorded
    assert publish.measured_quiet({"machine": {}, "measure": "measure: quiet | wall 1 s", "rows": [{}]})
    rows = [{"measure": "measure: quiet | wall 1 s"}, {"measure": "measure: LOADED | wall 1 s"}]
    assert not publish.measured_quiet({"machine": {}, "rows": rows})  # one loaded row is enough
    assert publish.measured_quiet({"machine": {}, "rows": rows[:1]})


def test_every_page_block_names_its_source(publish):
    for path, blocks in publish.generated().items():
        for text in blocks.values():
            assert "benchmarks/results/" in text or path == publish.README


def test_a_page_without_its_block_is_an_error(publish, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page\n\nno block here\n")
    with pytest.raises(KeyError, match="generated:headline"):
        publish.render(page, {"headline": "x"})


def test_a_calibrated_result_names_its_machine_and_load(publish, monkeypatch):
    """JSON written since the calibration: the headline quotes the matmul rate and the load verdict."""
    from tinyformers.engine.calibration import cpu_info

    original = publish.load
    cal = {**cpu_info(), "fp32_gflops": 59.0, "fp32_gflops_1t": 35.0, "bf16_gflops": None}
    load = {"verdict": "LOADED", "others_cpu_share": 0.3, "host_steal_share": 0.0, "cpus": 2, "wall_s": 60.0}

    def calibrated(name: str) -> dict:
        data = copy.deepcopy(original(name))
        data["machine"].update(calibration=cal, load=load)
        return data

    monkeypatch.setattr(publish, "load", calibrated)
    text = publish.provenance("pixels")
    assert "matmul fp32 59.0 GFLOP/s" in text and "load: LOADED | others used 30% of 2 CPUs" in text


def test_rows_from_two_kinds_of_host_name_their_cpu(publish, monkeypatch):
    """A results file whose rows ran on two kinds of host (record_run.py marks it 'per row'): each row of the
    table of runs says its CPU, and the headline's source does not name one CPU for all of them."""
    original = publish.load
    kinds = {"cpu": "per row (each row's 'machine')"}

    def two_hosts(name: str) -> dict:
        data = copy.deepcopy(original(name))
        data["machine"].update(kinds)
        for i, r in enumerate(data["rows"]):
            r["machine"] = "Intel Xeon (AMX)" if i == 0 else "AMD EPYC"
        return data

    monkeypatch.setattr(publish, "load", two_hosts)
    table = publish.runs_table("vision_quiet", {"test_accuracy": "test acc"}).splitlines()
    assert table[2].endswith("` on Intel Xeon (AMX) |") and table[3].endswith("` on AMD EPYC |")
    assert "more than one kind of host" in publish.provenance("vision_quiet")
    kinds["cpu"] = "AMD EPYC"  # one kind of host: the table says it once, in the text above it, not per row
    assert " on AMD" not in publish.runs_table("vision_quiet", {"test_accuracy": "test acc"})


def test_a_text_headline_compares_runs_of_one_host(publish, monkeypatch):
    """The sentiment/NER headline picks its LoRA and from-scratch runs among those of the full fine-tuning's
    host: a better from-scratch run on another CPU is not set against it."""
    rows = [
        {"label": "MiniLM, full fine-tuning", "machine": "Intel", "f1": 0.78, "base": 0.74, "train_seconds": 600},
        {"label": "from scratch", "machine": "Intel", "f1": 0.71, "train_seconds": 600},
        {"label": "from scratch, other recipe", "machine": "AMD", "f1": 0.75, "train_seconds": 600},
    ]
    data = {"machine": {"cpu": "per row (each row's 'machine')"}, "rows": rows}
    monkeypatch.setattr(publish, "load", lambda name: data)
    text = publish._text_task("x", "f1", "F1", "base", "linear")
    assert "from scratch 0.710" in text and "0.750" not in text
    rows[2]["machine"] = "Intel"  # the same host: the better run is the headline's
    assert "from scratch 0.750" in publish._text_task("x", "f1", "F1", "base", "linear")


def test_the_translate_headline_reports_a_re_evaluation_only_for_every_seed(publish, monkeypatch):
    """The pre-translation models evaluated again with 8 beams (``eval_8_beams`` in their rows) are in the headline
    as the mean over the seeds, and only when every seed has one (a mean of one seed would pass for the recipe's)."""
    original = publish.load

    def edited(name: str, drop: bool = False) -> dict:
        data = copy.deepcopy(original(name))
        for r in data["rows"]:
            if r["label"].startswith(publish.TRANSLATE_PRE):
                r["eval_8_beams"] = {"test_bleu_beam": 5.0, "test_chrf": 30.0}
        if drop:
            del next(r for r in data["rows"] if r["label"].startswith(publish.TRANSLATE_PRE))["eval_8_beams"]
        return data

    monkeypatch.setattr(publish, "load", edited)
    assert "with 8 beams: BLEU 5.00, chrF 30.00" in publish.translate()
    monkeypatch.setattr(publish, "load", lambda name: edited(name, drop=True))
    assert "the same models with 8 beams" not in publish.translate()


def test_the_translate_headline_leads_with_the_recipe_and_its_seeds_mean(publish, monkeypatch):
    """The page's recipe (``TRANSLATE_RECIPE`` and its second seed) opens the headline with its mean over seeds
    against the lookup; without its rows the headline is the older runs' alone."""
    original = publish.load

    def edited(name: str, seeds: int) -> dict:
        data = copy.deepcopy(original(name))
        recipes = (publish.TRANSLATE_RECIPE, publish.TRANSLATE_MBR)  # without the MBR recipe's rows: they lead
        rows = [r for r in data["rows"] if not r["label"].startswith(recipes)]
        base = next(r for r in data["rows"] if r["label"] == "extra pairs, 30 CPU-min, bf16")
        for i, (bleu, chrf) in enumerate([(6.0, 30.0), (7.0, 28.0)][:seeds]):
            label = publish.TRANSLATE_RECIPE + (", second seed" if i else "")
            rows.append({**base, "label": label, "test_bleu_beam": bleu, "test_chrf": chrf})
        return {**data, "rows": rows}

    monkeypatch.setattr(publish, "load", lambda name: edited(name, 2))
    two = publish.translate()
    assert two.startswith("The recipe (pre-translation, 128 extra pairs a step, 8 beams), 30 CPU-min")
    assert "BLEU 6.50, chrF 29.00 (mean of 2 runs; chrF 30.00, 28.00)" in two
    assert "chrF 0.20 below it, above it in 1 of 2 runs" in two
    monkeypatch.setattr(publish, "load", lambda name: edited(name, 1))
    assert "BLEU 6.00, chrF 30.00 against" in publish.translate() and "runs" not in publish.translate()[:120]
    monkeypatch.setattr(publish, "load", lambda name: edited(name, 0))
    assert publish.translate().startswith("BLEU ") and "The recipe" not in publish.translate()


def test_the_translate_headline_leads_with_mbr_and_the_same_models_beam_search(publish, monkeypatch):
    """With runs of the MBR recipe (``TRANSLATE_MBR``), the headline opens with their mean, then the same models'
    beam search alone (``test_*_top``), then the recipe without MBR; without MBR rows, as before."""
    original = publish.load

    def edited(name: str, mbr_runs: int) -> dict:
        data = copy.deepcopy(original(name))
        rows = [r for r in data["rows"] if not r["label"].startswith(publish.TRANSLATE_MBR)]
        base = next(r for r in data["rows"] if r["label"] == "extra pairs, 30 CPU-min, bf16")
        for i, (bleu, chrf, top) in enumerate([(6.0, 31.0, 30.0), (5.0, 30.0, 29.0)][:mbr_runs]):
            label = publish.TRANSLATE_MBR + (", second run" if i else "")
            config = {**base["config"], "mbr": "chrf", "mbr_samples": 32}
            extra = {"test_bleu_beam": bleu, "test_chrf": chrf, "test_bleu_beam_top": bleu - 1, "test_chrf_top": top}
            rows.append({**base, "label": label, "config": config, **extra})
        return {**data, "rows": rows}

    monkeypatch.setattr(publish, "load", lambda name: edited(name, 2))
    text = publish.translate()
    assert text.startswith("The recipe (pre-translation, 128 extra pairs a step, 8 beams, minimum Bayes risk decoding")
    assert "against 32 sampled translations), 30 CPU-min" in text
    assert "BLEU 5.50, chrF 30.50 (mean of 2 runs; chrF 31.00, 30.00)" in text and "above it in 2 of 2 runs" in text
    assert "the same models' beam search alone: BLEU 4.50, chrF 29.50. Without MBR: the same (pre-translation" in text
    monkeypatch.setattr(publish, "load", lambda name: edited(name, 0))
    assert publish.translate().startswith("The recipe (pre-translation, 128 extra pairs a step, 8 beams), 30")


def test_a_text_headline_shows_the_best_from_scratch_recipe_as_the_mean_of_its_seeds(publish, monkeypatch):
    def row(label: str, f1: float) -> dict:
        return {"label": label, "test_macro_f1": f1, "baseline_macro_f1": 0.70, "train_seconds": 600.0}

    full = {**row("MiniLM, full fine-tuning", 0.80), "train_seconds": 1200.0}
    rows = [full, row("from scratch, A", 0.74), row("from scratch, B", 0.76), row("from scratch, B, second seed", 0.70)]
    rows += [row("from scratch, B, seed 3", 0.69), row("from scratch, C", 0.70)]
    rows += [row("from scratch, C, third seed", 0.80)]
    monkeypatch.setattr(publish, "load", lambda name: {"machine": {"cpu": "X"}, "rows": rows})
    text = publish._text_task("any", "test_macro_f1", "macro F1", "baseline_macro_f1", "TF-IDF")
    # C's two runs average 0.75, above A's one run (0.74) and B's three (0.717); its best seed alone is never shown
    assert "; from scratch 0.750 (C, 10 CPU-min; 2 seeds: 0.700, 0.800) vs TF-IDF 0.700" in text


def test_a_text_headline_adds_a_recipe_measured_again_on_another_host(publish, monkeypatch):
    """A from-scratch recipe re-measured on the AVX2-only host is shown after the main headline, as the mean of its
    own seeds there, with the host named so that it is not read as the same CPU's number."""
    intel = "Intel(R) Xeon(R) Processor (AVX512; AVX2, AVX-512, native bf16)"
    avx2 = "AMD EPYC (AVX2; AVX2)"

    def row(label: str, f1: float, machine: str) -> dict:
        return {"label": label, "f1": f1, "base": 0.737, "train_seconds": 600.0, "machine": machine}

    rows = [{**row("MiniLM, full fine-tuning", 0.78, intel), "train_seconds": 1200.0}]
    rows += [row("from scratch, A", 0.75, intel)]
    rows += [row("from scratch, A, AVX2 box", 0.70, avx2), row("from scratch, A, AVX2 box, second seed", 0.72, avx2)]
    rows += [row("from scratch, B, AVX2 box", 0.90, avx2)]  # another recipe of that host: not the one asked for
    data = {"machine": {"cpu": "per row (each row's 'machine')"}, "rows": rows}
    monkeypatch.setattr(publish, "load", lambda name: data)
    text = publish._text_task("x", "f1", "F1", "base", "linear", again="from scratch, A, AVX2 box")
    on_avx2 = "(all on Intel Xeon Processor); on AMD EPYC, AVX2 only, 10 CPU-min: from scratch 0.710 (2 seeds: 0.700, "
    on_avx2 += "0.720) vs linear 0.737"
    assert text.endswith(on_avx2)
    assert "from scratch 0.750 (A, 10 CPU-min)" in text and "0.900" not in text
    assert publish._text_task("x", "f1", "F1", "base", "linear", again="not measured") == text.split(" (all on")[0]
    assert publish._host_name(intel) == "Intel Xeon Processor"
