"""Building or loading a scenario's on-disk cache of the original and golden models.

A scenario builder (one per built-in scenario) says how to get the tokenizer, the raw datasets and the
initial model; everything else is shared: the original model is the initial model trained on forget +
retain, the golden model is *the same initial weights* trained with the same recipe on the retain set only
(design notes, section 4.3). Both are saved with ``save_pretrained`` (safetensors, plus the tokenizer) under
``output_dir/<scenario>/{original,golden}``; ``scenario.json`` beside them records the configuration they
were built with, the fingerprints of the data and of the initial weights, the training wall times and the
memorization metrics. A later ``load_scenario`` with the same configuration loads them instead of training;
any change (seed, recipe, model size, data) rebuilds them.

The pieces live beside this module (``definition``: recipe, builder, ``Scenario``; ``training``: the training
loop and its metrics; ``resources``: optional packages and corpora); their names stay importable from here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import torch

from .definition import Scenario, ScenarioBuilder, TinyCausalLMBuilder, TrainRecipe, suggested_unlearning
from .resources import (
    EXTRAS_HINT,
    MissingExtraError,
    gensim_data_file,
    quiet_transformers,
    read_lines,
    require,
)
from .training import LengthGroupedBatches, evaluate_rows, train_model

__all__ = [
    "EXTRAS_HINT",
    "FORMAT_VERSION",
    "LengthGroupedBatches",
    "META_FILE",
    "MissingExtraError",
    "Scenario",
    "ScenarioBuilder",
    "TinyCausalLMBuilder",
    "TrainRecipe",
    "build_scenario",
    "cache_config",
    "data_fingerprint",
    "evaluate_rows",
    "gensim_data_file",
    "quiet_transformers",
    "read_lines",
    "require",
    "suggested_unlearning",
    "train_model",
    "weights_fingerprint",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "scenario.json"


# -- fingerprints ------------------------------------------------------------------------------------------
def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of a model's state dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def data_fingerprint(splits: dict[str, Any]) -> str:
    """SHA-256 of the forget/retain/test rows (column order independent)."""
    digest = hashlib.sha256()
    for split in ("forget", "retain", "test"):
        rows = splits[split].to_list()
        digest.update(split.encode())
        digest.update(json.dumps(rows, sort_keys=True, ensure_ascii=True).encode())
    return digest.hexdigest()


def _config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


# -- build or load -----------------------------------------------------------------------------------------
def cache_config(builder: ScenarioBuilder, seed: int) -> dict:
    """The configuration ``builder``'s cache records and must match to be loaded (as it reads back from JSON)."""
    config = {
        "scenario": builder.name,
        "version": builder.version,
        "format": FORMAT_VERSION,
        "seed": seed,
        "recipe": asdict(builder.recipe),
        **builder.config(),
    }
    return json.loads(json.dumps(config))  # as it reads back from scenario.json (tuples become lists)


def build_scenario(
    builder: ScenarioBuilder, output_dir: str, seed: int = 0, progress: bool = False, rebuild: bool = False
) -> Scenario:
    """Load ``builder``'s scenario from ``output_dir/<name>`` or build (train and cache) it."""
    builder.check_requirements()
    root = os.path.join(output_dir, builder.name)
    config = cache_config(builder, seed)
    os.makedirs(root, exist_ok=True)
    with _build_lock(root):  # several processes (DDP ranks) may ask at once: one builds, the others load
        cached = None if rebuild else _load_cached(builder, root, config, seed)
        if cached is not None:
            logger.info("Loaded scenario %s from %s", builder.name, root)
            return _scenario(builder, root, config, seed, *cached, from_cache=True)
        meta, tokenizer, data = _rebuild(builder, root, config, seed, progress)
    logger.info("Built scenario %s in %s: %s", builder.name, root, meta["train_seconds"])
    return _scenario(builder, root, config, seed, meta, tokenizer, data, from_cache=False)


def _model_dirs(root: str) -> tuple[str, str]:
    return os.path.join(root, "original"), os.path.join(root, "golden")


def _load_cached(builder: ScenarioBuilder, root: str, config: dict, seed: int) -> tuple | None:
    """``(meta, tokenizer, data)`` of a valid cache under ``root``, else ``None`` (saying why in the log)."""
    meta = _read_meta(os.path.join(root, META_FILE))
    if meta is None:
        return None
    original_dir, golden_dir = _model_dirs(root)
    if meta.get("config") != config or not (_has_weights(original_dir) and _has_weights(golden_dir)):
        logger.info("Scenario %s: the cached configuration differs; rebuilding.", builder.name)
        return None
    tokenizer = builder.load_tokenizer(original_dir)
    data = builder.build_data(seed, tokenizer)
    if data_fingerprint(data) != meta.get("data_fingerprint"):
        logger.info("Scenario %s: the data changed since it was cached; rebuilding.", builder.name)
        return None
    return meta, tokenizer, data


def _rebuild(builder: ScenarioBuilder, root: str, config: dict, seed: int, progress: bool):
    """Train and save both models under ``root``, then write ``scenario.json``; returns ``(meta, tokenizer, data)``."""
    meta_path = os.path.join(root, META_FILE)
    if os.path.exists(meta_path):
        os.remove(meta_path)  # an interrupted rebuild must not leave a valid-looking cache behind
    if progress:
        logger.warning("Building scenario %s (original and golden models) under %s", builder.name, root)
    built = builder.build_models(config, seed, progress, *_model_dirs(root))  # a builder's own (diffusion)
    meta, tokenizer, data = built or _build(builder, config, seed, progress, *_model_dirs(root))
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(meta_path + ".tmp", meta_path)
    return meta, tokenizer, data


def _scenario(
    builder: ScenarioBuilder,
    root: str,
    config: dict,
    seed: int,
    meta: dict,
    tokenizer,
    data: dict,
    from_cache: bool,
) -> Scenario:
    original_dir, golden_dir = _model_dirs(root)
    return (builder.scenario_class or Scenario)(
        name=builder.name,
        task=builder.task,
        description=builder.description,
        tokenizer=tokenizer,
        forget=data["forget"],
        retain=data["retain"],
        test=data["test"],
        original_dir=original_dir,
        golden_dir=golden_dir,
        sizes=dict(meta["sizes"]),
        train_seconds=dict(meta["train_seconds"]),
        unlearning_defaults=dict(builder.unlearning_defaults),
        seed=seed,
        evaluation=dict(builder.evaluation),
        heldout_label_corruption=builder.heldout_label_corruption,
        metrics=meta.get("metrics", {}),
        init_fingerprint=meta.get("init_fingerprint", ""),
        config=config,
        from_cache=from_cache,
        _load=builder.load_model,
        **builder.scenario_fields(),
    )


def _read_meta(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _has_weights(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json")) and any(
        name.endswith(".safetensors") for name in (os.listdir(path) if os.path.isdir(path) else [])
    )


def _save(model: torch.nn.Module, tokenizer, path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    with quiet_transformers():
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)


@contextmanager
def _build_lock(root: str):
    """An exclusive lock on ``root/.lock`` (POSIX ``flock``; no lock where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # Windows: a single process is the common case there
        yield
        return
    with open(os.path.join(root, ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    builder: ScenarioBuilder, config: dict, seed: int, progress: bool, original_dir: str, golden_dir: str
):
    """Train and save the original and golden models; returns ``(meta, tokenizer, data)``."""
    from ..data import build_preparer

    tokenizer = builder.make_tokenizer(seed)
    data = builder.build_data(seed, tokenizer)
    original = builder.init_model(tokenizer, seed)
    golden = copy.deepcopy(original)
    init_fp = {"original": weights_fingerprint(original), "golden": weights_fingerprint(golden)}
    preparer, collator = build_preparer(original, tokenizer)
    rows = {split: preparer(data[split], split) for split in ("forget", "retain", "test")}

    seconds = {}
    for name, model, train_rows in (
        ("original", original, rows["retain"] + rows["forget"]),
        ("golden", golden, rows["retain"]),
    ):
        # looked up in this module, where tests count (monkeypatch) the trainings
        seconds[name] = train_model(model, train_rows, collator, builder.recipe, seed, progress, name)
        _save(model, tokenizer, original_dir if name == "original" else golden_dir)

    metrics = {
        name: {split: evaluate_rows(model, rows[split], collator, builder.task) for split in rows}
        for name, model in (("original", original), ("golden", golden))
    }
    meta = {
        "config": config,
        "config_hash": _config_hash(config),
        "data_fingerprint": data_fingerprint(data),
        "init_fingerprint": init_fp["original"],
        "init_fingerprints": init_fp,
        "sizes": _sizes(data, tokenizer, original),
        "train_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "metrics": metrics,
        "description": builder.description,
    }
    return meta, tokenizer, data


def _sizes(data: dict[str, Any], tokenizer, model: torch.nn.Module) -> dict:
    """``Scenario.sizes``: split sizes, parameter count, vocabulary size and the builder's ``info``."""
    return {
        "n_forget": len(data["forget"]),
        "n_retain": len(data["retain"]),
        "n_test": len(data["test"]),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        **({"vocab_size": len(tokenizer)} if hasattr(tokenizer, "__len__") else {}),
        **data.get("info", {}),
    }
