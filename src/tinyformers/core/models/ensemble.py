"""A deep ensemble: several classifiers of the same architecture, each from its own random initialisation and
its own stream of training examples, whose class probabilities are averaged.

Averaging the predictive distributions of independently trained networks (Hansen & Salamon 1990; Dietterich
2000; "deep ensembles", Lakshminarayanan et al. 2017) lowers the variance a single small model has on a small,
noisy training set: each member memorises different examples, and the average keeps what they agree on.

One module holds the members so that the trainer, the checkpoint and ``load_run`` treat the ensemble as one
model:

* **Training** (``model.train()``): the batch holds ``k * B`` rows; member ``i`` reads rows ``[i B, (i+1) B)``
  only, so every member learns from its own random examples, as if trained alone, and its own dropout noise.
  The loss is the *mean* of the members' losses (comparable with one model's), so each member's gradient is
  ``1/k`` of the one it would get alone: Adam's update does not change with that scale, and the trainer clips
  each member's gradient norm on its own at ``grad_clip / k`` (:meth:`members_parameters`), the clip it would
  have alone.
* **Evaluation** (``model.eval()``): every member reads the whole batch; ``logits`` are the log of the mean of
  the members' softmax probabilities (so ``logits.softmax(-1)`` *is* the averaged distribution and ``argmax``
  the ensemble's vote), and ``loss`` is the cross-entropy of that distribution.

The members are any classifiers with the signature of
:class:`~tinyformers.core.models.encoder.EncoderClassifier` (sequence) or
:class:`~tinyformers.core.models.encoder.EncoderTokenClassifier` (per token, label ``-100`` ignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyformers.core.models.base import ModelOutput

IGNORE_INDEX = -100


class Ensemble(nn.Module):
    """``k`` classifiers whose probabilities are averaged (see the module docstring for training and evaluation).

    Args:
        members: the classifiers, each initialised on its own (build them one after another from the same
            seeded generator: they start from different weights).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def members_parameters(self) -> Iterator[list[nn.Parameter]]:
        """Each member's parameters, one list per member: the trainer clips each list's gradient norm on its own,
        at ``grad_clip / k`` (the loss is the members' mean, see the module docstring)."""
        for member in self.members:
            yield list(member.parameters())

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        if self.training:
            return self._train_forward(input_ids, attention_mask, labels)
        outs = [m(input_ids, attention_mask, output_attentions=output_attentions) for m in self.members]
        # the mean of the members' probabilities, in log space: logsumexp of log-softmaxes minus log k
        log_probs = torch.stack([o.logits.float().log_softmax(-1) for o in outs]).logsumexp(0) - math.log(len(outs))
        loss = None if labels is None else self._nll(log_probs, labels, attention_mask)
        first = outs[0]  # what one model shows (its hidden states, its attention maps): the first member's
        return ModelOutput(
            logits=log_probs, loss=loss, last_hidden_state=first.last_hidden_state, attentions=first.attentions
        )

    def shares(self, batch: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A training batch of ``k * B`` rows cut into the members' shares: member ``i`` gets rows
        ``[i B, (i+1) B)`` of every tensor (a None stays None)."""
        k = len(self.members)
        rows = next(v for v in batch.values() if v is not None).size(0)
        if rows % k:
            raise ValueError(f"a training batch of an ensemble of {k} holds k * batch_size rows, got {rows}")
        size = rows // k
        cuts = [slice(i * size, (i + 1) * size) for i in range(k)]
        return [{key: None if v is None else v[cut] for key, v in batch.items()} for cut in cuts]

    def _train_forward(self, input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor | None) -> ModelOutput:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        outs = [member(**share) for member, share in zip(self.members, self.shares(batch), strict=True)]
        losses = [o.loss for o in outs if o.loss is not None]
        loss = torch.stack(losses).mean() if losses else None
        return ModelOutput(logits=torch.cat([o.logits for o in outs]), loss=loss)

    def _nll(self, log_probs: Tensor, labels: Tensor, attention_mask: Tensor | None) -> Tensor:
        weight = getattr(self.members[0], "class_weight", None)
        if log_probs.dim() == 3:  # one label per token: padding never counts
            if attention_mask is not None:
                labels = labels.masked_fill(attention_mask == 0, IGNORE_INDEX)
            return F.nll_loss(log_probs.flatten(0, 1), labels.flatten(), weight=weight, ignore_index=IGNORE_INDEX)
        return F.nll_loss(log_probs, labels, weight=weight)
