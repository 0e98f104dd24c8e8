"""What every data format shares: the task of a model, its limits, and reading any dataset-like input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

CLASSIFICATION = "classification"
CAUSAL_LM = "causal_lm"
IGNORE_INDEX = -100

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_CLASSIFIER_SUFFIXES = ("ForSequenceClassification", "ForImageClassification")
_IMAGE_SUFFIXES = ("ForImageClassification",)
#: The batch keys that are model inputs (the rest, labels and bookkeeping, are not).
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "pixel_values")


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """Return the underlying ``transformers`` model of a PEFT / DDP / compiled wrapper."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def model_inputs(batch: dict, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The model's keyword inputs of a collated ``batch`` (token ids and mask, or pixel values)."""
    return {k: batch[k] if device is None else batch[k].to(device) for k in MODEL_INPUT_KEYS if k in batch}


def row_length(row: dict) -> int:
    """The length of a canonical row (tokens; 1 for an image), for batching rows of similar length."""
    return len(row["input_ids"]) if "input_ids" in row else 1


def is_image_model(model: torch.nn.Module) -> bool:
    return type(unwrap_model(model)).__name__.endswith(_IMAGE_SUFFIXES)


def infer_task(model: torch.nn.Module) -> str:
    """``"classification"`` for sequence and image classifiers, ``"causal_lm"`` for causal language
    models."""
    name = type(unwrap_model(model)).__name__
    if name.endswith(_CAUSAL_SUFFIXES):
        return CAUSAL_LM
    if name.endswith(_CLASSIFIER_SUFFIXES):
        return CLASSIFICATION
    raise ValueError(
        f"Unsupported model class {name}: hf_unlearn works with *ForSequenceClassification, "
        "*ForImageClassification and *ForCausalLM (or *LMHeadModel) models."
    )


def num_labels_of(model: torch.nn.Module) -> int | None:
    return getattr(unwrap_model(model).config, "num_labels", None)


def num_classes_of(model: torch.nn.Module) -> int:
    """C of the model's predictions: the number of labels (classifiers) or the vocabulary size (LMs)."""
    config = unwrap_model(model).config
    if infer_task(model) == CLASSIFICATION:
        return int(config.num_labels)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.vocab_size)


def max_length_of(model: torch.nn.Module, tokenizer: Any = None) -> int:
    """The longest sequence the model accepts (position embeddings), capped by the tokenizer's limit."""
    config = unwrap_model(model).config
    limits = [getattr(config, key, None) for key in ("max_position_embeddings", "n_positions")]
    if tokenizer is not None and 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(tokenizer.model_max_length)
    limits = [int(x) for x in limits if isinstance(x, int) and x > 0]
    return min(limits) if limits else 512


def to_dataset(data: Any, name: str):
    """Accept a ``datasets.Dataset``, a list of dicts or a dict of lists; reject empty input clearly."""
    import datasets

    if isinstance(data, datasets.DatasetDict):
        raise ValueError(f"{name} is a DatasetDict; pass one split, e.g. {name}=ds['train'].")
    if isinstance(data, datasets.Dataset):
        dataset = data
    elif isinstance(data, dict):
        dataset = _arrow(datasets.Dataset.from_dict, data, name)
    elif isinstance(data, Sequence) and not isinstance(data, str):
        if len(data) == 0:
            raise ValueError(f"{name} is empty: it needs at least one example.")
        if not all(isinstance(row, dict) for row in data):
            raise ValueError(f"{name} must be a datasets.Dataset, a list of dicts or a dict of lists.")
        dataset = _arrow(datasets.Dataset.from_list, list(data), name)
    else:
        raise ValueError(
            f"{name} must be a datasets.Dataset, a list of dicts or a dict of lists, got {type(data).__name__}."
        )
    if len(dataset) == 0:
        raise ValueError(f"{name} is empty: it needs at least one example.")
    return dataset


def _arrow(build, data: Any, name: str):
    try:
        return build(data)
    except (ValueError, TypeError, OverflowError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{name} could not be read as a table of columns: {err}") from None
