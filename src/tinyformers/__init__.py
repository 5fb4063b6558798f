"""tinyformers: transformers from scratch, proven equal to the references, trained on a laptop CPU."""

__version__ = "0.1.0"
