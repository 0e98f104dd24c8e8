"""``hf_unlearn.tiny``: tiny models and tokenizers built from config (defined in ``hf_unlearn.testing.tiny``)."""

from __future__ import annotations

from .testing.tiny import (
    DECODER_ARCHITECTURES,
    IMAGE_ARCHITECTURES,
    SPECIAL_TOKENS,
    TINY_CHAT_TEMPLATE,
    tiny_causal_lm,
    tiny_classifier,
    tiny_clip,
    tiny_decoder,
    tiny_image_classifier,
    tiny_image_processor,
    tiny_unet,
    train_tokenizer,
)

__all__ = [
    "DECODER_ARCHITECTURES",
    "IMAGE_ARCHITECTURES",
    "SPECIAL_TOKENS",
    "TINY_CHAT_TEMPLATE",
    "tiny_causal_lm",
    "tiny_classifier",
    "tiny_clip",
    "tiny_decoder",
    "tiny_image_classifier",
    "tiny_image_processor",
    "tiny_unet",
    "train_tokenizer",
]
