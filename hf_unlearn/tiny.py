"""Tiny offline models and tokenizers, built from config (no Hub access).

Used by the tests, the built-in scenarios and the benchmarks. Everything here is seeded.
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "[BOS]", "eos_token": "[EOS]"}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, model: str = "bpe"):
    """Train a small tokenizer on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    Args:
        texts: the corpus to learn the vocabulary from.
        vocab_size: target vocabulary size (special tokens included).
        model: ``"bpe"`` (byte-level, no unknown tokens) or ``"word"`` (whitespace words).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    if model == "bpe":
        tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif model == "word":
        tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, special_tokens=specials, show_progress=False
        )
    else:
        raise ValueError(f"model must be 'bpe' or 'word', got {model!r}")
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **SPECIAL_TOKENS)


def tiny_classifier(
    tokenizer,
    num_labels: int = 2,
    hidden_size: int = 32,
    num_layers: int = 2,
    max_length: int = 128,
    seed: int = 0,
):
    """A small BERT sequence classifier sized to ``tokenizer``'s vocabulary."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 16),
        intermediate_size=hidden_size * 4,
        max_position_embeddings=max_length,
        num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def tiny_causal_lm(
    tokenizer, hidden_size: int = 32, num_layers: int = 2, max_length: int = 128, seed: int = 0
):
    """A small GPT-2 causal LM sized to ``tokenizer``'s vocabulary (bos/eos/pad ids set from it)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=max(1, hidden_size // 16),
        n_positions=max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)
