"""Any causal-LM checkpoint folder (GPT-2, Llama, Qwen2), dispatched on its ``config.json``'s ``model_type``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from tinyformers.core.interop.common import StateDict
from tinyformers.core.interop.gpt2 import config_from_hf_gpt2, gpt2_state_dict_from_hf
from tinyformers.core.interop.llama import config_from_hf_llama, llama_state_dict_from_hf
from tinyformers.core.models.decoder import DecoderConfig


def hf_model_type(directory: str | Path) -> str | None:
    """The ``model_type`` of a Hugging Face checkpoint folder's ``config.json``; None when ``directory`` is not
    one (no such file, or a tinyformers run, whose ``config.json`` names a task instead)."""
    path = Path(directory) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) and "task" not in config else None


def config_from_hf_causal_lm(hf_config: Mapping[str, Any]) -> DecoderConfig:
    """Our :class:`DecoderConfig` for a GPT-2, Llama or Qwen2 ``config.json`` (chosen by its ``model_type``)."""
    if hf_config.get("model_type") == "gpt2":
        return config_from_hf_gpt2(hf_config)
    return config_from_hf_llama(hf_config)


def causal_lm_state_dict_from_hf(hf_config: Mapping[str, Any], sd: Mapping[str, Tensor]) -> StateDict:
    """A GPT-2, Llama or Qwen2 state dict -> a :class:`DecoderLM` one (by ``hf_config``'s ``model_type``)."""
    return gpt2_state_dict_from_hf(sd) if hf_config.get("model_type") == "gpt2" else llama_state_dict_from_hf(sd)
