"""The transformer itself: attention, positions, blocks, every model (``core.models``), decoding, tokenizers,
LoRA and weight interop. Imports nothing from the layers above (engine, data, viz, tasks, apps)."""
