"""Safe loading of local models, tokenizers and dataset files: safetensors only, no custom code unless asked."""

from __future__ import annotations

import glob
import os
from typing import Any

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def check_model_dir(path: str) -> None:
    """A model directory must hold a config and safetensors weights; pickled weights are refused."""
    if not os.path.isdir(path):
        raise ValueError(
            f"Model directory {path!r} does not exist (hf-unlearn loads local directories only)."
        )
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"{path!r} has no config.json: not a transformers model directory.")
    if not glob.glob(os.path.join(path, "*.safetensors")):
        pickled = [f for f in os.listdir(path) if f.endswith(PICKLE_SUFFIXES)]
        hint = (
            f" It holds pickled weights ({', '.join(sorted(pickled))}), which are never loaded."
            if pickled
            else ""
        )
        raise ValueError(
            f"{path!r} has no .safetensors weights.{hint} Convert them with a trusted tool and save with "
            "save_pretrained(..., safe_serialization=True)."
        )


#: How the architecture name in config.json ends -> the ``transformers`` auto class that loads it.
AUTO_CLASSES = {
    ("ForCausalLM", "LMHeadModel"): "AutoModelForCausalLM",
    ("ForImageClassification",): "AutoModelForImageClassification",
}


def load_model(path: str, trust_remote_code: bool = False, **kwargs: Any):
    """Load a sequence or image classifier or a causal LM from a local directory, from safetensors only."""
    import transformers

    check_model_dir(path)
    config = transformers.AutoConfig.from_pretrained(
        path, local_files_only=True, trust_remote_code=trust_remote_code
    )
    architectures = config.architectures or []
    name = next(
        (auto for suffixes, auto in AUTO_CLASSES.items() if any(a.endswith(suffixes) for a in architectures)),
        "AutoModelForSequenceClassification",
    )
    auto = getattr(transformers, name)
    return auto.from_pretrained(
        path, local_files_only=True, use_safetensors=True, trust_remote_code=trust_remote_code, **kwargs
    )


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """The processing class saved with the model: its tokenizer, or, for an image model (a
    ``preprocessor_config.json`` and no tokenizer files), its image processor."""
    has_tokenizer = any(
        os.path.isfile(os.path.join(path, f))
        for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    )
    if not has_tokenizer and os.path.isfile(os.path.join(path, "preprocessor_config.json")):
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)


def load_dataset_file(path: str):
    """A ``datasets.Dataset`` from a .json/.jsonl/.csv/.parquet file or a ``save_to_disk`` folder."""
    import datasets

    if os.path.isdir(path):
        loaded = datasets.load_from_disk(path)
        return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
    if not os.path.isfile(path):
        raise ValueError(f"Dataset file {path!r} does not exist.")
    suffix = path.rsplit(".", 1)[-1].lower()
    builder = {"json": "json", "jsonl": "json", "csv": "csv", "parquet": "parquet"}.get(suffix)
    if builder is None:
        raise ValueError(
            f"Unsupported dataset file {path!r}: use .json, .jsonl, .csv, .parquet or a saved dataset."
        )
    return datasets.load_dataset(builder, data_files=path, split="train")
