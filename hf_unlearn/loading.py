"""Safe loading of local models, tokenizers and dataset files: safetensors only, no custom code unless asked."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


#: What makes a folder a PEFT adapter (``hf-unlearn run --lora_r`` writes one).
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str) -> bool:
    """Whether ``path`` is a PEFT adapter folder (``adapter_config.json``) rather than a full model (a
    ``diffusers`` pipeline folder is a full model: a LoRA run saves it with the adapters merged into its UNet,
    and the adapters beside it only to resume from)."""
    full_pipeline = os.path.isfile(os.path.join(path, PIPELINE_INDEX))
    return os.path.isfile(os.path.join(path, ADAPTER_CONFIG)) and not full_pipeline


def check_model_dir(path: str) -> None:
    """A model directory must hold a config and safetensors weights (a PEFT adapter folder: its adapter config
    and safetensors adapter weights); pickled weights are refused."""
    if not os.path.isdir(path):
        raise ValueError(
            f"Model directory {path!r} does not exist (hf-unlearn loads local directories only)."
        )
    if os.path.isfile(os.path.join(path, PIPELINE_INDEX)):
        return _check_pipeline_dir(path)
    if not is_adapter_dir(path) and not os.path.isfile(os.path.join(path, "config.json")):
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


#: What makes a folder a saved ``diffusers`` pipeline (its components in subfolders).
PIPELINE_INDEX = "model_index.json"


def _check_pipeline_dir(path: str) -> None:
    """A pipeline folder's components with weights must hold safetensors weights, and none pickled ones."""
    pickled = [
        os.path.relpath(f, path) for s in PICKLE_SUFFIXES for f in glob.glob(os.path.join(path, "*", f"*{s}"))
    ]
    if pickled or not glob.glob(os.path.join(path, "*", "*.safetensors")):
        hint = (
            f" It holds pickled weights ({', '.join(sorted(pickled))}), which are never loaded."
            if pickled
            else ""
        )
        raise ValueError(
            f"pipeline folder {path!r} needs safetensors weights in its component folders only.{hint} Save it "
            "with pipe.save_pretrained(..., safe_serialization=True)."
        )


def adapter_base(path: str, base_model: str | None = None) -> str:
    """The local folder of the model PEFT adapter folder ``path`` was trained on: ``base_model`` when given,
    else the ``base_model_name_or_path`` its ``adapter_config.json`` records, which must be a local folder."""
    if base_model is None:
        with open(os.path.join(path, ADAPTER_CONFIG)) as f:
            base_model = json.load(f).get("base_model_name_or_path")
        if not base_model or not os.path.isdir(base_model):
            raise ValueError(
                f"{path!r} is a PEFT adapter of base model {base_model!r}, which is not a local folder here: "
                "give the base model's folder with --base_model (Python: base_model=...)."
            )
    check_model_dir(base_model)
    return base_model


def load_adapter(
    path: str,
    base_model: str | None = None,
    merge: bool = True,
    trust_remote_code: bool = False,
    **kwargs: Any,
):
    """The PEFT adapter in folder ``path`` on its base model (``adapter_base``), merged into a plain
    ``transformers`` model, or, with ``merge=False``, as a ``PeftModel`` whose adapters are trainable, as they
    were in the run that wrote them (relearning then trains the adapters, as the run's RCD did)."""
    from peft import PeftModel

    base = load_model(adapter_base(path, base_model), trust_remote_code=trust_remote_code, **kwargs)
    model = PeftModel.from_pretrained(base, path, is_trainable=not merge)  # a local folder: no Hub access
    return model.merge_and_unload() if merge else model


def load_model(
    path: str,
    trust_remote_code: bool = False,
    base_model: str | None = None,
    merge_adapter: bool = True,
    **kwargs: Any,
):
    """Load a sequence or image classifier or a causal LM (any registered model kind, ``ModelKind.load``) from a
    local directory, from safetensors only. A PEFT
    adapter folder is loaded on its base model (``load_adapter``: ``base_model`` names the base's folder when
    the adapter's config does not; ``merge_adapter=False`` keeps the adapters as a ``PeftModel``)."""
    check_model_dir(path)
    if is_adapter_dir(path):
        return load_adapter(path, base_model, merge_adapter, trust_remote_code, **kwargs)
    from .kinds import kind_for_folder

    return kind_for_folder(path).load(path, trust_remote_code=trust_remote_code, **kwargs)


def has_tokenizer_files(path: str) -> bool:
    """Whether folder ``path`` holds a saved tokenizer."""
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    return any(os.path.isfile(os.path.join(path, name)) for name in names)


def has_processor_files(path: str) -> bool:
    """Whether folder ``path`` holds a saved tokenizer or image processor (what ``load_tokenizer`` reads)."""
    return has_tokenizer_files(path) or os.path.isfile(os.path.join(path, "preprocessor_config.json"))


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """The processing class saved with the model: its tokenizer, or, for an image model (a
    ``preprocessor_config.json`` and no tokenizer files), its image processor."""
    has_tokenizer = has_tokenizer_files(path)
    if not has_tokenizer and os.path.isfile(os.path.join(path, "preprocessor_config.json")):
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)


def load_dataset_file(path: str):
    """A ``datasets.Dataset`` from a .json/.jsonl/.csv/.parquet file, a ``save_to_disk`` folder or an image
    folder (``imagefolder`` layout: one subfolder of images per class, named by its class number: columns
    ``image``, ``label``). In a file, an ``image`` column of strings
    holds image paths, relative to the file's folder (empty: no image), loaded as images."""
    import datasets

    if os.path.isdir(path):
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("state.json", "dataset_dict.json")):
            return _image_folder(path)
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
    return _image_paths(datasets.load_dataset(builder, data_files=path, split="train"), os.path.dirname(path))


def _image_folder(path: str) -> Any:
    """An ``imagefolder`` folder: ``image`` and ``label`` per image in ``path/<class>/``. Subfolders named by
    integers give those integers as labels (``forget/3/`` is class 3, whatever other classes the folder has);
    other names are numbered in sorted order."""
    import datasets

    data = datasets.load_dataset("imagefolder", data_dir=path, split="train", drop_labels=False)
    names = data.features["label"].names if "label" in data.features else []
    if not names:
        raise ValueError(
            f"image folder {path!r} has no class subfolders: put each class's images in <folder>/<class>/."
        )
    if all(name.isdigit() for name in names):
        ids = [int(name) for name in names]
        data = data.cast_column("label", datasets.Value("int64")).map(
            lambda row: {"label": ids[row["label"]]}
        )
    return data


def _image_paths(data: Any, folder: str) -> Any:
    """``data`` with an ``image`` column of path strings (relative to ``folder``) cast to images."""
    import datasets

    feature = data.features.get("image")
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        return data

    def resolve(row: dict) -> dict:
        name = row["image"]
        if not name:
            return {"image": None}
        full = name if os.path.isabs(name) else os.path.join(folder, name)
        if not os.path.isfile(full):
            raise ValueError(
                f"image {name!r} not found (paths in a data file are relative to its folder {folder!r})."
            )
        return {"image": full}

    return data.map(resolve).cast_column("image", datasets.Image())
