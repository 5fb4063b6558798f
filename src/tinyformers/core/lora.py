"""LoRA: low-rank adaptation of a frozen pretrained model (Hu et al., 2021, "LoRA: Low-Rank Adaptation of
Large Language Models").

Eq. 3 of the paper: a frozen weight ``W0`` (d_out x d_in) is adapted by a trainable low-rank product,

    h = W0 x + (alpha / r) * B A x,        A: (r, d_in) ~ Kaiming-uniform,  B: (d_out, r) = 0,

so training starts from exactly the pretrained function, and only ``r * (d_in + d_out)`` numbers per matrix
are learned. After training, ``W = W0 + (alpha / r) B A`` can be merged into the base weight: inference then
costs nothing extra, and un-merging restores ``W0``.

Our attention projects q, k and v with one fused ``in_proj`` of shape (3d, d) (smaller k and v blocks with
grouped-query attention). Adapting "q" and "v" (the
paper's choice) means one adapter per *row block* of that matrix, which is what :class:`LoRALinear` does
with ``blocks``: each target block gets its own (A, B) pair, exactly like separate adapters on separate
q/k/v matrices (HF ``peft`` on BERT's ``query``/``value``; the parity test checks this).

Targets: ``q``, ``k``, ``v`` (blocks of ``in_proj``), ``o`` (``out_proj``), ``ffn`` (``fc1``, ``fc2`` and the
SwiGLU ``gate``). Cross-attention reads ``in_proj.weight`` directly; :class:`LoRALinear` exposes the
effective weight ``W0 + s B A`` there, so adapters apply to cross-attention too (without LoRA dropout).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.attention import MultiHeadAttention
from tinyformers.core.blocks import FeedForward
from tinyformers.core.dropout import Dropout
from tinyformers.errors import UserError

TARGETS = ("q", "k", "v", "o", "ffn")


@dataclass
class LoRAConfig:
    """Attributes:
    r: rank of the update. alpha: scale; the update is multiplied by alpha / r (so changing r does not
        change the learning rate to use). dropout: on the adapter's input only.
    targets: which projections get adapters, a subset of ``TARGETS``.
    train: names of modules (e.g. the task head ``classifier``) trained in full besides the adapters.
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q", "v")
    train: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.targets, self.train = tuple(self.targets), tuple(self.train)
        if self.r < 1:
            raise ValueError(f"LoRA rank r={self.r} must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout={self.dropout} must be in [0, 1)")
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise ValueError(f"LoRA targets {bad or '()'}: choose from {', '.join(TARGETS)}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus low-rank adapters on some of its output rows.

    Args:
        base: the pretrained layer; its parameters are frozen.
        blocks: ``(start, stop)`` output-row ranges that each get an adapter (default: all rows, one adapter).
        r, alpha, dropout: as in :class:`LoRAConfig`.
    """

    def __init__(
        self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, blocks: list[tuple[int, int]] | None = None
    ) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.blocks = blocks or [(0, base.out_features)]
        self.scaling = alpha / r
        self.lora_A = nn.ParameterList()
        self.lora_B = nn.ParameterList()
        for start, stop in self.blocks:
            a = torch.empty(r, base.in_features, dtype=base.weight.dtype, device=base.weight.device)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # as nn.Linear (and peft) initialise A
            self.lora_A.append(nn.Parameter(a))
            self.lora_B.append(nn.Parameter(base.weight.new_zeros(stop - start, r)))  # B = 0: start at W0
        self.lora_dropout = Dropout(dropout)
        self.merged = False

    def delta(self) -> Tensor:
        """``s * B A`` laid out like the base weight (zero rows where there is no adapter): (d_out, d_in)."""
        d = self.base.weight.new_zeros(self.base.weight.shape)
        for (start, stop), a, b in zip(self.blocks, self.lora_A, self.lora_B, strict=True):
            d[start:stop] = self.scaling * (b @ a)
        return d

    @property
    def weight(self) -> Tensor:
        """The effective weight (for code that reads ``.weight`` directly, like cross-attention)."""
        return self.base.weight if self.merged else self.base.weight + self.delta()

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)  # (..., d_out)
        if self.merged:
            return y
        h = self.lora_dropout(x)
        parts = [y[..., :0]]
        last = 0
        for (start, stop), a, b in zip(self.blocks, self.lora_A, self.lora_B, strict=True):
            parts += [y[..., last:start], y[..., start:stop] + self.scaling * F.linear(F.linear(h, a), b)]
            last = stop
        parts.append(y[..., last:])
        return torch.cat(parts, dim=-1)

    @torch.no_grad()
    def merge(self) -> None:
        """``W0 += s B A``: inference at the base model's cost."""
        if not self.merged:
            self.base.weight += self.delta()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore ``W0`` (up to float rounding) and the separate adapter path."""
        if self.merged:
            self.base.weight -= self.delta()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.lora_A[0].shape[0]}, scaling={self.scaling:g}, blocks={self.blocks}, merged={self.merged}"


def _wrap(parent: nn.Module, name: str, cfg: LoRAConfig, blocks: list[tuple[int, int]] | None = None) -> None:
    layer = getattr(parent, name)
    if isinstance(layer, LoRALinear):
        raise ValueError("the model already has LoRA adapters")
    setattr(parent, name, LoRALinear(layer, cfg.r, cfg.alpha, cfg.dropout, blocks))


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> nn.Module:
    """Freeze ``model`` and add adapters to the targeted projections of every attention and feed-forward
    layer (in place); modules named in ``cfg.train`` stay fully trainable. Returns ``model``."""
    for p in model.parameters():
        p.requires_grad_(False)
    found = False
    for module in list(model.modules()):
        if isinstance(module, MultiHeadAttention):
            d, kv = module.d_model, module.d_kv  # kv < d with grouped-query attention
            rows = {"q": (0, d), "k": (d, d + kv), "v": (d + kv, d + 2 * kv)}
            blocks = [rows[t] for t in ("q", "k", "v") if t in cfg.targets]
            if blocks:
                _wrap(module, "in_proj", cfg, blocks)
            if "o" in cfg.targets:
                _wrap(module, "out_proj", cfg)
            found = True
        elif isinstance(module, FeedForward) and "ffn" in cfg.targets:
            for name in ("fc1", "fc2") + (("gate",) if module.gate is not None else ()):
                _wrap(module, name, cfg)
    if not found:
        raise ValueError("the model has no attention layers to adapt")
    for name in cfg.train:
        sub = dict(model.named_modules()).get(name)
        if sub is None:
            raise ValueError(f"LoRA train={name!r}: the model has no module of that name")
        for p in sub.parameters():
            p.requires_grad_(True)
    return model


def lora_layers(model: nn.Module) -> Iterable[LoRALinear]:
    return (m for m in model.modules() if isinstance(m, LoRALinear))


def merge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model):
        layer.unmerge()
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only what training changed: the adapters and the fully trained modules (e.g. the task head)."""
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def save_adapters(model: nn.Module, path: str | Path, cfg: LoRAConfig) -> None:
    """The adapters alone, as a small safetensors file whose metadata holds the LoRA config."""
    from safetensors.torch import save_file

    if any(layer.merged for layer in lora_layers(model)):
        raise ValueError("un-merge the adapters before saving them")
    save_file(adapter_state_dict(model), str(path), metadata={"lora": json.dumps(asdict(cfg))})


def load_adapters(model: nn.Module, path: str | Path) -> LoRAConfig:
    """Add adapters to a base ``model`` (as :func:`apply_lora`) and load their weights from ``path``."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (OSError, SafetensorError) as e:
        raise UserError(f"{path}: not a readable adapter file ({e})") from None
    if "lora" not in meta:
        raise UserError(f"{path}: not a LoRA adapter file (no LoRA config in its metadata)")
    cfg = LoRAConfig(**json.loads(meta["lora"]))
    apply_lora(model, cfg)
    expected = adapter_state_dict(model)
    if set(tensors) != set(expected):
        raise UserError(f"{path}: adapters do not fit this model (different layers or targets)")
    for k, v in tensors.items():
        if v.shape != expected[k].shape:
            raise UserError(
                f"{path}: adapter {k} has shape {tuple(v.shape)}, the model needs {tuple(expected[k].shape)}"
            )
    model.load_state_dict(tensors, strict=False)
    return cfg
