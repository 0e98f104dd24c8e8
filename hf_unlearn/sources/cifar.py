"""CIFAR-10 / CIFAR-100 from local copies of ``uoft-cs/cifar10`` and ``uoft-cs/cifar100`` (parquet, ``img`` +
``label`` / ``fine_label``), split by the image-unlearning protocols: random forgetting of a fraction of the
training set, or class-wise forgetting of one class. The test split is CIFAR's own."""

from __future__ import annotations

import numpy as np

from .files import Split, SplitReader
from .registry import BenchmarkData, register_source

PROTOCOLS = {"random10": ("random", 0.1), "random50": ("random", 0.5), "class": ("class", None)}
LAYOUTS = {
    "cifar10": {"config": "plain_text", "label": "label", "repo": "uoft-cs/cifar10"},
    "cifar100": {"config": "cifar100", "label": "fine_label", "repo": "uoft-cs/cifar100"},
}


def protocol_split(
    labels: np.ndarray, subset: str, seed: int, forget_class: int, name: str = "cifar"
) -> np.ndarray:
    """Boolean forget mask over the training rows for ``subset`` (``PROTOCOLS``): a seeded random fraction, or
    every row of ``forget_class``."""
    if subset not in PROTOCOLS:
        raise ValueError(f"{name}: unknown subset {subset!r}; choose one of {sorted(PROTOCOLS)}.")
    kind, fraction = PROTOCOLS[subset]
    if kind == "class":
        if forget_class not in set(labels.tolist()):
            raise ValueError(f"{name}: forget_class={forget_class} does not occur in the training labels.")
        return labels == forget_class
    chosen = np.random.default_rng([seed, 977]).permutation(len(labels))[: round(fraction * len(labels))]
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return mask


def _load(name: str, path: str, subset: str | None, seed: int, forget_class: int) -> BenchmarkData:
    import datasets

    layout = LAYOUTS[name]
    subset = subset or "random10"
    if subset not in PROTOCOLS:  # before reading any file
        protocol_split(np.zeros(0), subset, seed, forget_class, name)
    reader = SplitReader(path, name)
    config, label = layout["config"], layout["label"]
    splits = {}
    for split in ("train", "test"):
        found = reader.required(
            split,
            Split(
                f"{config}/{split}",
                (f"{config}/{split}-*.parquet", f"{config}/{split}/*.parquet"),
                ("img", label),
            ),
        )
        found = found.cast_column("img", datasets.Image())
        splits[split] = found.select_columns(["img", label]).rename_columns(
            {label: "label"} if label != "label" else {}
        )
    train = splits["train"]
    forget_mask = protocol_split(np.asarray(train["label"]), subset, seed, forget_class, name)
    forget = train.select(np.flatnonzero(forget_mask))
    retain = train.select(np.flatnonzero(~forget_mask))
    info = {
        "files": reader.files,
        "subset": subset,
        "seed": seed,
        "forget_class": forget_class if subset == "class" else None,
        "rows": {"forget": len(forget), "retain": len(retain), "test": len(splits["test"])},
    }
    return BenchmarkData(forget=forget, retain=retain, test=splits["test"], info=info)


@register_source(
    "cifar10", download="huggingface-cli download uoft-cs/cifar10 --repo-type dataset --local-dir DIR"
)
def load_cifar10(
    path: str, subset: str | None = None, *, seed: int = 0, forget_class: int = 0
) -> BenchmarkData:
    """CIFAR-10 split for unlearning.

    Args:
        path: the download folder (``plain_text/{train,test}-*.parquet``).
        subset: ``"random10"`` (default; a seeded random 10% of the training images), ``"random50"`` or
            ``"class"`` (every training image of ``forget_class``).
        seed: seeds the random protocols' choice.
        forget_class: the class of the class-wise protocol.

    Returns:
        ``forget``, ``retain`` (from CIFAR's training split) and ``test`` (its test split), ``{"img", "label"}``.
    """
    return _load("cifar10", path, subset, seed, forget_class)


@register_source(
    "cifar100", download="huggingface-cli download uoft-cs/cifar100 --repo-type dataset --local-dir DIR"
)
def load_cifar100(
    path: str, subset: str | None = None, *, seed: int = 0, forget_class: int = 0
) -> BenchmarkData:
    """CIFAR-100 split for unlearning, as ``load_cifar10`` (``cifar100/{train,test}-*.parquet``; the 100 fine
    labels become ``label``)."""
    return _load("cifar100", path, subset, seed, forget_class)
