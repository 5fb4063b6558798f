"""EncoderDecoder with a plugged-in encoder (image-to-text): the same parameters, initialisation and forward
math as the model written out by hand (what mnist-words' ImageToWord was), and generate_seq2seq serving it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinyformers.core.blocks import DecoderStack
from tinyformers.core.generation import generate_seq2seq
from tinyformers.core.models import EncoderDecoder, ImageEncoder, Seq2SeqConfig, ViTConfig, shift_right
from tinyformers.core.models.base import Embeddings, init_gpt2
from tinyformers.core.models.vit import VisionTransformer, standardise

VIT = ViTConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, image_size=8, patch_size=4, num_classes=0)
DEC = Seq2SeqConfig(d_model=16, n_heads=2, n_layers=2, d_ff=32, max_len=8, src_vocab_size=256, tgt_vocab_size=11)
DEC.positions, DEC.eos_id = "learned", 10
MEAN, STD = 0.3, 0.2


class HandWritten(nn.Module):
    """The reference: a ViT, target embeddings, a decoder stack and a head created and initialised in this order."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = VisionTransformer(VIT)
        self.tgt_embed = Embeddings(DEC, DEC.tgt_vocab_size, scale=True)
        self.decoder = DecoderStack(DEC)
        self.lm_head = nn.Linear(DEC.d_model, DEC.tgt_vocab_size, bias=False)
        for part in (self.tgt_embed, self.decoder, self.lm_head):
            init_gpt2(part, DEC.n_layers)

    def forward(self, grey: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory = self.encoder(standardise(grey, VIT, MEAN, STD)).last_hidden_state
        y = self.tgt_embed(shift_right(labels, DEC.bos_id, DEC.pad_id))
        logits = self.lm_head(self.decoder(y, memory)[0])
        return logits, F.cross_entropy(logits.flatten(0, 1), labels.masked_fill(labels == 0, -100).flatten())


def plugged() -> EncoderDecoder:
    return EncoderDecoder(DEC, encoder=ImageEncoder(VIT, MEAN, STD))


def test_plugged_encoder_matches_the_hand_written_model_bit_for_bit():
    torch.manual_seed(0)
    ref = HandWritten().eval()
    torch.manual_seed(0)
    model = plugged().eval()
    ours, theirs = model.state_dict(), ref.state_dict()
    assert list(ours) == list(theirs)  # same names in the same order: checkpoints load both ways
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # same RNG draws in the same order
    grey = torch.randint(0, 256, (3, 64))
    labels = torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0], [6, 7, 8, 2]])
    logits, loss = ref(grey, labels)
    out = model(grey, labels)
    assert torch.equal(out.logits, logits) and torch.equal(out.loss, loss)
    weights = model(grey, labels, output_attentions=True)  # the readable attention path: close, not bit-equal
    torch.testing.assert_close(weights.logits, logits, atol=1e-5, rtol=1e-5)
    assert len(weights.attentions) == VIT.n_layers + DEC.n_layers  # the encoder's, then the decoder's


def test_generate_seq2seq_decodes_the_plugged_model_like_teacher_forcing():
    torch.manual_seed(1)
    model = plugged()
    grey = torch.randint(0, 256, (4, 64))
    ids = generate_seq2seq(model, grey, None, max_new_tokens=5)  # greedy, cached
    assert ids.shape == (4, 5)  # (no <eos> drawn by this seed)
    with torch.no_grad():  # each greedy token is the argmax of the uncached decoder on the tokens before it
        memory, _ = model.encode(grey)
        inputs = torch.cat([torch.full((4, 1), DEC.bos_id), ids[:, :-1]], dim=1)
        assert torch.equal(model.decode(inputs, memory).logits.argmax(-1), ids)
    assert torch.equal(model.generate(grey, max_new_tokens=5, num_beams=1), ids)
    assert model.generate(grey, max_new_tokens=5, num_beams=3).shape[0] == 4


def test_plugged_encoder_is_checked():
    with pytest.raises(TypeError, match="has no encode"):
        EncoderDecoder(DEC, encoder=nn.Linear(2, 2))
    shared = Seq2SeqConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, share_embeddings=True)
    with pytest.raises(ValueError, match="built-in encoder"):
        EncoderDecoder(shared, encoder=ImageEncoder(VIT, MEAN, STD))
    with pytest.raises(ValueError, match="no padding"):
        plugged().encode(torch.zeros(1, 64, dtype=torch.long), torch.ones(1, 64, dtype=torch.long))
    assert plugged().src_embed is None and EncoderDecoder(DEC).src_embed is not None
