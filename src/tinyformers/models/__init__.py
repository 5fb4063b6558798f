"""The model families, each built only from :mod:`tinyformers.blocks`."""

from tinyformers.models.base import ModelOutput
from tinyformers.models.decoder import DecoderConfig, DecoderLM
from tinyformers.models.encoder import (
    Encoder,
    EncoderClassifier,
    EncoderConfig,
    EncoderTokenClassifier,
    mean_pool,
    sentence_embedding,
)
from tinyformers.models.seq2seq import EncoderDecoder, Seq2SeqConfig, shift_right
from tinyformers.models.vit import PatchEmbedding, VisionTransformer, ViTConfig

__all__ = [
    "DecoderConfig",
    "DecoderLM",
    "Encoder",
    "EncoderClassifier",
    "EncoderConfig",
    "EncoderDecoder",
    "EncoderTokenClassifier",
    "ModelOutput",
    "PatchEmbedding",
    "Seq2SeqConfig",
    "ViTConfig",
    "VisionTransformer",
    "mean_pool",
    "sentence_embedding",
    "shift_right",
]
