"""Tiny offline models and tokenizers, built from config (no Hub access).

Used by the tests, the built-in scenarios and the benchmarks. Everything here is seeded.
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "[BOS]", "eos_token": "[EOS]"}

#: A minimal chat template in the style of Llama 3's: BOS once, each turn ``<|role|>content`` closed by EOS,
#: and ``<|assistant|>`` as the generation prompt.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

#: Architectures ``tiny_decoder`` builds, with the attention projections LoRA adapts in each.
DECODER_ARCHITECTURES = {
    "llama": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
}


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 512,
    model: str = "bpe",
    add_bos: bool = False,
    chat_template: str | None = None,
):
    """Train a small tokenizer on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    Args:
        texts: the corpus to learn the vocabulary from.
        vocab_size: target vocabulary size (special tokens included).
        model: ``"bpe"`` (byte-level, no unknown tokens) or ``"word"`` (whitespace words).
        add_bos: prepend ``[BOS]`` when encoding with special tokens, as Llama-style tokenizers do.
        chat_template: a Jinja chat template (e.g. ``TINY_CHAT_TEMPLATE``).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
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
    if add_bos:
        bos = SPECIAL_TOKENS["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **SPECIAL_TOKENS)
    if chat_template is not None:
        wrapped.chat_template = chat_template
    return wrapped


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


def tiny_decoder(
    tokenizer,
    architecture: str = "llama",
    hidden_size: int = 32,
    num_layers: int = 2,
    max_length: int = 128,
    seed: int = 0,
):
    """A small decoder-only causal LM of a Llama-family architecture (``DECODER_ARCHITECTURES``) built from
    config, sized to ``tokenizer``: the same classes (and projection names) as real checkpoints."""
    import torch
    import transformers

    if architecture not in DECODER_ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {sorted(DECODER_ARCHITECTURES)}, got {architecture!r}."
        )
    heads = max(2, hidden_size // 16)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        max_position_embeddings=max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    extra = {
        "llama": {},
        "qwen2": {},
        "mistral": {"sliding_window": max_length},
        "gemma2": {"head_dim": hidden_size // heads, "query_pre_attn_scalar": hidden_size // heads},
    }[architecture]
    prefix = {"llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral", "gemma2": "Gemma2"}[architecture]
    config = getattr(transformers, f"{prefix}Config")(**common, **extra)
    torch.manual_seed(seed)
    return getattr(transformers, f"{prefix}ForCausalLM")(config)


#: Image architectures ``tiny_image_classifier`` builds, with the modules LoRA adapts in each.
IMAGE_ARCHITECTURES = {"vit": ["q_proj", "v_proj"], "resnet": ["convolution"]}


def tiny_image_classifier(
    architecture: str = "resnet",
    num_labels: int = 10,
    num_channels: int = 1,
    image_size: int = 8,
    hidden_size: int = 16,
    seed: int = 0,
):
    """A small image classifier built from config: ``"resnet"`` (``ResNetForImageClassification``, batch norm,
    any input size) or ``"vit"`` (``ViTForImageClassification``, patches of 2 pixels, fixed ``image_size``)."""
    import torch
    import transformers

    if architecture not in IMAGE_ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(IMAGE_ARCHITECTURES)}, got {architecture!r}.")
    labels = {"num_labels": num_labels, "id2label": {i: str(i) for i in range(num_labels)}}
    labels["label2id"] = {v: k for k, v in labels["id2label"].items()}
    if architecture == "resnet":
        config = transformers.ResNetConfig(
            num_channels=num_channels,
            embedding_size=hidden_size,
            hidden_sizes=[hidden_size, 2 * hidden_size],
            depths=[1, 1],
            layer_type="basic",
            downsample_in_first_stage=False,
            **labels,
        )
        cls = transformers.ResNetForImageClassification
    else:
        config = transformers.ViTConfig(
            image_size=image_size,
            patch_size=2,
            num_channels=num_channels,
            hidden_size=hidden_size * 2,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=hidden_size * 4,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            **labels,
        )
        cls = transformers.ViTForImageClassification
    torch.manual_seed(seed)
    return cls(config)


def tiny_image_processor(num_channels: int = 1, image_size: int | None = None):
    """An image processor for ``tiny_image_classifier``: scales uint8 pixels to [0, 1] and normalizes them to
    [-1, 1] (mean 0.5, std 0.5 per channel); resizes to ``image_size`` when given."""
    from transformers import ViTImageProcessorPil

    return ViTImageProcessorPil(
        do_resize=image_size is not None,
        size={"height": image_size, "width": image_size} if image_size else None,
        image_mean=[0.5] * num_channels,
        image_std=[0.5] * num_channels,
    )


def tiny_unet(num_classes: int = 10, num_channels: int = 1, image_size: int = 8, seed: int = 0):
    """A small class-conditional ``diffusers.UNet2DModel`` built from config (``num_class_embeds`` =
    ``num_classes``; channels (8, 16), one attention block), for ``hf_unlearn.diffusion``. Needs ``diffusers``
    (``pip install "hf-unlearn[diffusion]"``)."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=image_size,
        in_channels=num_channels,
        out_channels=num_channels,
        block_out_channels=(8, 16),
        norm_num_groups=8,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        num_class_embeds=num_classes,
    )


def tiny_clip(image_size: int = 16, seed: int = 0):
    """``(CLIPModel, CLIPProcessor)``: a small CLIP built from config (2-layer text and vision towers of width 32,
    16-dimensional projections, ``image_size`` x ``image_size`` RGB inputs in 4x4 patches) with the letters-and-
    digits ``CLIPTokenizer`` of ``hf_unlearn.testing.tiny_pipeline`` (built offline); for the CLIP judge and CLIP
    score of ``hf_unlearn.diffusion.clip_metrics``. Untrained: its scores exercise the code, not the images."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor

    from .tiny_pipeline import MAX_TOKENS, tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()
    towers = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    text = CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **towers,
    )
    vision = CLIPVisionConfig(image_size=image_size, patch_size=4, **towers)
    torch.manual_seed(seed)
    model = CLIPModel(
        CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    )
    images = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return model.eval(), CLIPProcessor(image_processor=images, tokenizer=tokenizer)
