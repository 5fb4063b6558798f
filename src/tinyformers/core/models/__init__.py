"""The model families, each built from :mod:`tinyformers.core.blocks`, and the non-transformer baselines."""

from tinyformers.core.models.audio import SpectrogramConfig, SpectrogramTransformer
from tinyformers.core.models.base import ModelOutput
from tinyformers.core.models.baselines import MLP, ConvNet
from tinyformers.core.models.decoder import DecoderConfig, DecoderLM
from tinyformers.core.models.encoder import (
    Encoder,
    EncoderClassifier,
    EncoderConfig,
    EncoderTokenClassifier,
    mean_pool,
    sentence_embedding,
)
from tinyformers.core.models.ensemble import Ensemble
from tinyformers.core.models.forecast import PatchConfig, PatchForecaster, pinball_loss
from tinyformers.core.models.seq2seq import EncoderDecoder, Seq2SeqConfig, SourceEncoder, shift_right
from tinyformers.core.models.vit import (
    ConvStem,
    ImageClassifier,
    ImageEncoder,
    PatchEmbedding,
    VisionTransformer,
    ViTConfig,
)
from tinyformers.core.models.walk import WalkClassifier

__all__ = [
    "ConvNet",
    "DecoderConfig",
    "DecoderLM",
    "Encoder",
    "EncoderClassifier",
    "EncoderConfig",
    "EncoderDecoder",
    "EncoderTokenClassifier",
    "Ensemble",
    "ImageClassifier",
    "ImageEncoder",
    "MLP",
    "ModelOutput",
    "PatchConfig",
    "PatchEmbedding",
    "ConvStem",
    "PatchForecaster",
    "Seq2SeqConfig",
    "SourceEncoder",
    "SpectrogramConfig",
    "SpectrogramTransformer",
    "ViTConfig",
    "VisionTransformer",
    "WalkClassifier",
    "mean_pool",
    "pinball_loss",
    "sentence_embedding",
    "shift_right",
]
