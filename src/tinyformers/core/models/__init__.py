"""The model families, each built only from :mod:`tinyformers.core.blocks`."""

from tinyformers.core.models.base import ModelOutput
from tinyformers.core.models.decoder import DecoderConfig, DecoderLM
from tinyformers.core.models.encoder import (
    Encoder,
    EncoderClassifier,
    EncoderConfig,
    EncoderTokenClassifier,
    mean_pool,
    sentence_embedding,
)
from tinyformers.core.models.seq2seq import EncoderDecoder, Seq2SeqConfig, shift_right
from tinyformers.core.models.vit import PatchEmbedding, VisionTransformer, ViTConfig
from tinyformers.core.models.walk import WalkClassifier

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
    "WalkClassifier",
    "mean_pool",
    "sentence_embedding",
    "shift_right",
]
