"""LoRA: equal to HF peft's LoRA on the same base and adapter weights; merge/unmerge; adapters alone on disk."""

from __future__ import annotations

import pytest
import torch

from tinyformers.core.interop import bert_state_dict_from_hf, config_from_hf_bert
from tinyformers.core.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    load_adapters,
    merge_lora,
    save_adapters,
    unmerge_lora,
)
from tinyformers.core.models import DecoderConfig, DecoderLM, Encoder, EncoderDecoder, Seq2SeqConfig
from tinyformers.errors import UserError

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

# our target name -> the BERT module peft adapts for it
HF_TARGET = {"q": "query", "k": "key", "v": "value"}


def tiny_bert():
    cfg = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=24,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    return transformers.BertModel(cfg, add_pooling_layer=False).eval(), cfg


def randomize_adapters(model: torch.nn.Module) -> None:
    """peft and we both start with B = 0 (the adapted model equals the base); make the adapters matter."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("targets", [("q", "v"), ("q", "k", "v"), ("k",)])
def test_equals_peft_lora_on_bert(targets):
    hf, hf_cfg = tiny_bert()
    ours = Encoder(config_from_hf_bert(hf_cfg.to_dict()))
    ours.load_state_dict(bert_state_dict_from_hf(hf.state_dict()))
    ours.eval()
    lcfg = LoRAConfig(r=4, alpha=8, targets=targets)
    hf = peft.get_peft_model(
        hf, peft.LoraConfig(r=4, lora_alpha=8, target_modules=[HF_TARGET[t] for t in targets], lora_dropout=0.0)
    )
    randomize_adapters(hf)
    apply_lora(ours, lcfg)
    # copy peft's adapters into ours: layer i, target t -> in_proj block of t
    hf_sd = hf.state_dict()
    for i, layer in enumerate(ours.stack.layers):
        proj = layer.self_attn.in_proj
        assert isinstance(proj, LoRALinear)
        for j, t in enumerate(t for t in ("q", "k", "v") if t in targets):
            prefix = f"base_model.model.encoder.layer.{i}.attention.self.{HF_TARGET[t]}"
            with torch.no_grad():
                proj.lora_A[j].copy_(hf_sd[f"{prefix}.lora_A.default.weight"])
                proj.lora_B[j].copy_(hf_sd[f"{prefix}.lora_B.default.weight"])
    ids = torch.randint(0, 50, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    expected = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    got = ours(ids, mask).last_hidden_state
    keep = mask.bool()
    torch.testing.assert_close(got[keep], expected[keep], atol=1e-5, rtol=1e-5)
    # and the adapters changed the function (the test would pass vacuously with B = 0)
    with hf.disable_adapter():
        base_out = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (expected - base_out).abs().max() > 1e-3


def small_lm() -> DecoderLM:
    torch.manual_seed(0)
    return DecoderLM(DecoderConfig(vocab_size=20, max_len=16, d_model=32, n_heads=4, n_layers=2, d_ff=64))


def test_starts_equal_to_base_and_trains_only_adapters():
    model = small_lm()
    ids = torch.randint(0, 20, (2, 10))
    before = model(ids).logits
    base = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, LoRAConfig(r=2, targets=("q", "k", "v", "o", "ffn")))
    torch.testing.assert_close(model(ids).logits, before)  # B = 0
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in k for k in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    for k, v in base.items():  # every base tensor is untouched (it moved under `.base.` when wrapped)
        wrapped = k.replace("in_proj.", "in_proj.base.").replace("out_proj.", "out_proj.base.")
        wrapped = wrapped.replace("fc1.", "fc1.base.").replace("fc2.", "fc2.base.")
        assert torch.equal(after[wrapped], v), k
    assert not torch.allclose(model(ids).logits, before)


def test_merge_equals_unmerged_and_unmerge_restores():
    model = small_lm()
    base_w = model.stack.layers[0].self_attn.in_proj.weight.clone()
    apply_lora(model, LoRAConfig(r=4, targets=("q", "v", "o", "ffn")))
    randomize_adapters(model)
    ids = torch.randint(0, 20, (2, 12))
    unmerged = model(ids).logits
    merge_lora(model)
    torch.testing.assert_close(model(ids).logits, unmerged, atol=1e-5, rtol=1e-5)
    unmerge_lora(model)
    torch.testing.assert_close(model.stack.layers[0].self_attn.in_proj.base.weight, base_w, atol=1e-6, rtol=0)
    torch.testing.assert_close(model(ids).logits, unmerged, atol=1e-5, rtol=1e-5)


def test_cross_attention_uses_the_adapters():
    torch.manual_seed(0)
    model = EncoderDecoder(
        Seq2SeqConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=32, n_heads=4, n_layers=1, d_ff=64, max_len=16)
    ).eval()
    src, tgt = torch.randint(4, 20, (2, 7)), torch.randint(4, 20, (2, 5))
    apply_lora(model, LoRAConfig(r=2, targets=("q", "k", "v")))
    randomize_adapters(model)
    unmerged = model(src, labels=tgt).logits
    merge_lora(model)
    torch.testing.assert_close(model(src, labels=tgt).logits, unmerged, atol=1e-5, rtol=1e-5)


def test_adapters_saved_alone_and_loaded_onto_base(tmp_path):
    model = small_lm()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = LoRAConfig(r=4, alpha=4, targets=("q", "v"))
    apply_lora(model, cfg)
    randomize_adapters(model)
    ids = torch.randint(0, 20, (2, 9))
    expected = model(ids).logits
    path = tmp_path / "adapters.safetensors"
    save_adapters(model, path, cfg)
    n_adapter = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_adapter == 2 * 2 * 4 * (32 + 32)  # 2 layers x (q, v) x r x (d_in + d_out)
    assert path.stat().st_size < 4 * n_adapter + 2048

    fresh = small_lm()
    fresh.load_state_dict(base_state)
    assert load_adapters(fresh, path) == cfg
    torch.testing.assert_close(fresh(ids).logits, expected)


def test_bad_adapter_files(tmp_path):
    model = small_lm()
    cfg = LoRAConfig(r=4, targets=("q",))
    apply_lora(model, cfg)
    path = tmp_path / "a.safetensors"
    save_adapters(model, path, cfg)
    other = DecoderLM(DecoderConfig(vocab_size=20, max_len=16, d_model=16, n_heads=4, n_layers=2, d_ff=64))
    with pytest.raises(UserError, match="shape"):
        load_adapters(other, path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="not a readable adapter file"):
        load_adapters(small_lm(), junk)
    with pytest.raises(ValueError, match="targets"):
        LoRAConfig(targets=("qq",))
    with pytest.raises(ValueError, match="already"):
        apply_lora(model, cfg)


def test_finetune_lora_through_the_cli(tmp_path, capsys):
    """``--set finetune=lora`` trains adapters only; the saved run loads (adapters included) and predicts."""
    from tinyformers.apps.cli import main
    from tinyformers.tasks import load_run

    out = tmp_path / "run"
    tiny = ["d_model=16", "n_heads=2", "n_layers=1", "d_ff=32", "max_digits=4", "n_val=8", "n_test=8", "batch_size=8"]
    argv = ["train", "copy", "--out", str(out), "--max-steps", "4", "--no-progress", "--set", *tiny]
    assert main([*argv, "finetune=lora", "lora_r=2", "lora_targets=q,v,ffn", "eval_every=2"]) == 0
    _, cfg, _, model = load_run(out)
    assert cfg.finetune == "lora"
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(layers) == 3 + 4  # encoder: in_proj, fc1, fc2; decoder: self and cross in_proj, fc1, fc2
    assert any(p.abs().sum() > 0 for m in layers for p in m.lora_B)  # B moved away from its zero start
    assert main(["predict", str(out), "123"]) == 0
    assert main(["--overwrite" if a == "--no-progress" else a for a in argv] + ["lora_targets=q,x"]) == 2
    assert "lora_targets" in capsys.readouterr().err


def test_lora_run_saves_adapters_that_rebuild_it_on_the_base(tmp_path):
    """A finetune=lora run writes adapters.safetensors (adapters + head only); runs.load_adapted puts them on a
    freshly built base model (here: another run, init=RUN_DIR) and gets the run's function back."""
    from tinyformers.apps.cli import main
    from tinyformers.tasks import load_adapted, load_run

    text = tmp_path / "text.txt"
    text.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 40)
    tiny = ["d_model=32", "n_heads=2", "n_layers=2", "block_size=16", "batch_size=8", "eval_windows=8", "max_time=0"]
    base, adapted, scratch = tmp_path / "base", tmp_path / "adapted", tmp_path / "scratch"

    def train(out, *settings):
        argv = ["train", "shakespeare", "--out", str(out), "--max-steps", "8", "--no-progress", "--set", *tiny]
        assert main([*argv, f"corpus={text}", *settings]) == 0

    train(base)
    lora = ["finetune=lora", "lora_r=2", "lora_targets=q,v,ffn", "lr=3e-2"]
    train(adapted, f"init={base}", *lora)
    assert not (base / "adapters.safetensors").exists()  # a full run has none

    _, cfg, _, run_model = load_run(adapted)
    _, _, _, rebuilt = load_adapted(adapted)
    trainable = {k for k, p in run_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in k for k in trainable)
    from safetensors import safe_open

    with safe_open(str(adapted / "adapters.safetensors"), framework="pt") as f:
        assert set(f.keys()) == trainable  # the adapters alone, not the frozen base
    assert (adapted / "adapters.safetensors").stat().st_size < (adapted / "model.safetensors").stat().st_size / 5
    ids = torch.randint(0, run_model.config.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(ids).logits, run_model(ids).logits)
        _, _, _, plain_base = load_run(base)
        assert not torch.allclose(plain_base(ids).logits, run_model(ids).logits, atol=1e-3)  # the adapters matter

    # what cannot be rebuilt from adapters alone is a one-line error
    train(scratch, *lora)
    with pytest.raises(UserError, match="base model was random"):
        load_adapted(scratch)
    with pytest.raises(UserError, match="not a LoRA run"):
        load_adapted(base)
    (adapted / "adapters.safetensors").unlink()
    with pytest.raises(UserError, match="adapters.safetensors: not found"):
        load_adapted(adapted)
