"""Weights in and out of Hugging Face ``transformers`` formats: GPT-2, BERT, ViT and the Llama family (Llama,
Qwen2), in both directions.

A mapping is a list of entries ``(our name, HF name, kind)``. The HF name may be a tuple of the three
separate query/key/value projections that our ``in_proj`` stacks (``[W^Q; W^K; W^V]``). The kind says
how the tensor changes shape on the way: ``transpose`` for GPT-2's ``Conv1D`` (weights stored
``(in, out)``, the transpose of ``nn.Linear``), ``batch`` for ViT's position table that HF keeps as
``(1, N, d)``. For a tuple of HF names the kind may instead list their row counts (``"64,16,16"``): with
grouped-query attention the key and value projections are smaller than the query's.

``*_state_dict_to_hf`` returns the *checkpoint* layout, the one ``model.safetensors`` files on the Hub
use and ``from_pretrained`` reads in every ``transformers`` version. ``*_state_dict_from_hf`` also
accepts the in-memory layout of ``ViTModel`` in ``transformers`` 5, which renamed its modules.

One module per family (``gpt2``, ``bert``, ``vit``, ``llama``), the shared machinery in ``common``, and
``hf_folder`` for a causal-LM folder of any of them.
"""

from tinyformers.core.interop.bert import (
    bert_state_dict_from_hf,
    bert_state_dict_to_hf,
    config_from_hf_bert,
    config_to_hf_bert,
    load_minilm,
)
from tinyformers.core.interop.common import Entry, StateDict, load_hf_checkpoint, save_hf_checkpoint
from tinyformers.core.interop.gpt2 import (
    config_from_hf_gpt2,
    config_to_hf_gpt2,
    export_gpt2,
    gpt2_state_dict_from_hf,
    gpt2_state_dict_to_hf,
    import_gpt2,
)
from tinyformers.core.interop.hf_folder import causal_lm_state_dict_from_hf, config_from_hf_causal_lm, hf_model_type
from tinyformers.core.interop.llama import (
    LLAMA_FAMILY,
    config_from_hf_llama,
    config_to_hf_llama,
    export_llama,
    import_llama,
    llama_state_dict_from_hf,
    llama_state_dict_to_hf,
)
from tinyformers.core.interop.vit import (
    config_from_hf_vit,
    config_to_hf_vit,
    vit_state_dict_from_hf,
    vit_state_dict_to_hf,
)

__all__ = [
    "Entry",
    "LLAMA_FAMILY",
    "StateDict",
    "bert_state_dict_from_hf",
    "bert_state_dict_to_hf",
    "causal_lm_state_dict_from_hf",
    "config_from_hf_bert",
    "config_from_hf_causal_lm",
    "config_from_hf_gpt2",
    "config_from_hf_llama",
    "config_from_hf_vit",
    "config_to_hf_bert",
    "config_to_hf_gpt2",
    "config_to_hf_llama",
    "config_to_hf_vit",
    "export_gpt2",
    "export_llama",
    "gpt2_state_dict_from_hf",
    "gpt2_state_dict_to_hf",
    "hf_model_type",
    "import_gpt2",
    "import_llama",
    "llama_state_dict_from_hf",
    "llama_state_dict_to_hf",
    "load_hf_checkpoint",
    "load_minilm",
    "save_hf_checkpoint",
    "vit_state_dict_from_hf",
    "vit_state_dict_to_hf",
]
