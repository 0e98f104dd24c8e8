"""What every data format shares: the task of a model, its limits, and reading any dataset-like input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

CLASSIFICATION = "classification"
CAUSAL_LM = "causal_lm"
IGNORE_INDEX = -100

#: The batch keys that are model inputs of the built-in kinds (the rest, labels and bookkeeping, are not;
#: a model kind's own are its ``input_keys``).
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


def model_kind(model: torch.nn.Module):
    """The registered ``hf_unlearn.kinds.ModelKind`` of ``model``."""
    from ..kinds import get_model_kind

    return get_model_kind(model)


def kind_of_task(task: str):
    """The registered ``hf_unlearn.kinds.ModelKind`` a task string stands for (``kinds.kind_for_task``)."""
    from ..kinds import kind_for_task

    return kind_for_task(task)


def is_image_model(model: torch.nn.Module) -> bool:
    return model_kind(model).images


def infer_task(model: torch.nn.Module) -> str:
    """The task string of the model's kind: ``"classification"`` for sequence and image classifiers,
    ``"causal_lm"`` for causal language models."""
    return model_kind(model).task


def num_labels_of(model: torch.nn.Module) -> int | None:
    return getattr(unwrap_model(model).config, "num_labels", None)


def num_classes_of(model: torch.nn.Module) -> int:
    """C of the model's predictions: the number of labels (classifiers) or the vocabulary size (LMs)."""
    return model_kind(model).num_classes(model)


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
