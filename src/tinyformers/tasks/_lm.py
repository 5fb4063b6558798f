"""Helpers of the language-model task (shakespeare): starting from another run or a Hugging Face causal-LM folder
(``init=``), and the n-gram baselines it is scored against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tinyformers.core import interop
from tinyformers.core.lora import merge_lora
from tinyformers.core.tokenizers import HFTokenizer, tokenizer_from_dict
from tinyformers.engine.rundir import RunDir
from tinyformers.engine.task import Task, TaskData
from tinyformers.errors import UserError
from tinyformers.io import read_json


def hf_meta(folder: str) -> dict[str, Any]:
    """The meta of a run started from a Hugging Face causal-LM folder: its tokenizer, its config (the
    architecture), the special tokens that start a prompt and the token that ends a text."""
    config = read_json(Path(folder) / "config.json")
    try:
        interop.config_from_hf_causal_lm(config)
    except ValueError as e:
        raise UserError(f"init={folder}: {e}") from None
    tokenizer_file = Path(folder) / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise UserError(f"init={folder}: no tokenizer.json (this needs the model's HF tokenizers file)")
    tok = HFTokenizer.from_file(tokenizer_file)
    eos = config.get("eos_token_id")
    return {
        "tokenizer": tok.to_dict(),
        "hf_config": config,
        "prompt_prefix": tok.prompt_prefix(),
        "eos_token_id": eos[0] if isinstance(eos, list) and eos else eos,
    }


def ngram_losses(data: TaskData, ids: Tensor, starts: Tensor, block_size: int) -> tuple[float, float]:
    """Mean nats per token of a unigram and a bigram model, counted on the training split, on the targets of
    the windows at ``starts`` (the positions the model is scored on). The unigram is add-one smoothed; the
    bigram is interpolated with it, p(b | a) = (c(a, b) + p(b)) / (c(a) + 1) (a Dirichlet prior of weight 1)."""
    if "_ngram" not in data.splits:
        train = data.splits["train"]
        vocab = max(len(tokenizer_from_dict(data.meta["tokenizer"])), int(train.max()) + 1)
        uni = torch.bincount(train, minlength=vocab).double()
        p_uni = (uni + 1) / (uni.sum() + vocab)  # (V,)
        # the bigram counts c(a, b) of the pairs that occur, keyed a * V + b (a dense V x V table of a
        # pretrained model's vocabulary would not fit in memory), sorted for searchsorted
        pairs, counts = torch.unique(train[:-1] * vocab + train[1:], return_counts=True)
        prev_counts = torch.bincount(train[:-1], minlength=vocab).double()  # c(a)
        data.splits["_ngram"] = (vocab, p_uni, pairs, counts.double(), prev_counts)
    vocab, p_uni, pairs, counts, prev_counts = data.splits["_ngram"]
    idx = starts[:, None] + torch.arange(block_size + 1)  # (B, block_size + 1)
    prev, target = ids[idx][:, :-1], ids[idx][:, 1:]
    key = prev * vocab + target
    at = torch.searchsorted(pairs, key).clamp(max=len(pairs) - 1)
    c_pair = torch.where(pairs[at] == key, counts[at], 0.0)
    p_bi = (c_pair + p_uni[target]) / (prev_counts[prev] + 1)
    return -p_uni[target].log().mean().item(), -p_bi.log().mean().item()


ARCH = ("block_size", "d_model", "n_heads", "n_layers", "d_ff", "positions", "activation", "bias")


def _init_run(task: Task, cfg: Any) -> tuple[Any, dict[str, Any]]:
    """The config and meta of the run ``cfg.init`` names; a missing run or another task's is a UserError."""
    run = RunDir(cfg.init)
    try:
        name = run.task_name()
        if name == task.name:
            init_cfg, init_meta = run.read_config(task)
    except UserError as e:
        raise UserError(f"init={cfg.init}: not a usable run ({e})") from None
    if name != task.name:
        raise UserError(f"init={cfg.init}: a {name!r} run; init needs a shakespeare run")
    return init_cfg, init_meta


def init_meta(task: Task, cfg: Any) -> dict[str, Any]:
    """The meta of a run started from ``cfg.init``: the base run's tokenizer and architecture."""
    if interop.hf_model_type(cfg.init) is not None:
        meta = hf_meta(cfg.init)
    else:
        init_cfg, meta = _init_run(task, cfg)
    if "hf_config" in meta:
        context = interop.config_from_hf_causal_lm(meta["hf_config"]).max_len
        if cfg.block_size > context:
            raise UserError(f"block_size={cfg.block_size} is longer than the context of init={cfg.init} ({context})")
        return {k: meta[k] for k in ("tokenizer", "hf_config", "prompt_prefix", "eos_token_id")}
    arch = meta.get("arch") or {k: getattr(init_cfg, k) for k in ARCH}
    if cfg.block_size > arch["block_size"]:
        raise UserError(
            f"block_size={cfg.block_size} is longer than the context of init={cfg.init} "
            f"({arch['block_size']}); use --set block_size={arch['block_size']}"
        )
    return {"tokenizer": meta["tokenizer"], "arch": arch}


def init_weights(task: Task, run_dir: str) -> dict[str, Tensor]:
    """The weights of a shakespeare run as a plain DecoderLM's state dict (a LoRA run's adapters merged in), or
    those of a Hugging Face causal-LM folder."""
    if interop.hf_model_type(run_dir) is not None:
        config, sd = interop.load_hf_checkpoint(run_dir)
        try:
            return interop.causal_lm_state_dict_from_hf(config, sd)
        except (KeyError, ValueError) as e:
            raise UserError(f"init={run_dir}: its weights do not fit its config.json ({e})") from None
    init_cfg, _, base = RunDir(run_dir).load_model(task)
    if init_cfg.finetune == "lora":
        merge_lora(base)  # W = W0 + (alpha / r) B A, then keep W under the plain layer's name
    return {k.replace(".base.", "."): v for k, v in base.state_dict().items() if "lora_" not in k}
