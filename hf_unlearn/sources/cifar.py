"""CIFAR-10 / CIFAR-100 from local copies of ``uoft-cs/cifar10`` and ``uoft-cs/cifar100`` (parquet, ``img`` +
``label`` / ``fine_label``), split by the image-unlearning protocols: random forgetting of a fraction of the
training images, or class-wise forgetting of one class.

Split ``"salun"`` (default) follows SalUn's code (``OPTML-Group/Unlearn-Saliency``,
``Classification/dataset.py`` and ``utils.py``, as in ``Unlearn-Sparse``): 10% of each class of CIFAR's training
split is held out as validation (``np.random.RandomState(seed)``, class by class), the other 45,000 images are
the training set the protocols split; the random protocols draw the forget rows from them with
``RandomState(seed - 1).choice(45000, n, replace=False)``; the class-wise protocol forgets every training image of
the class and drops the class from the test split. ``seed`` defaults to 2, SalUn's ``--seed``. Split ``"full"``
splits all 50,000 training images (``np.random.default_rng([seed, 977])``) and keeps the whole test split.
"""

from __future__ import annotations

import numpy as np

from .files import Split, SplitReader
from .registry import BenchmarkData, register_source

PROTOCOLS = {"random10": ("random", 0.1), "random50": ("random", 0.5), "class": ("class", None)}
SPLITS = ("salun", "full")
DEFAULT_SEED = 2  # SalUn's --seed
VALIDATION_FRACTION = 0.1  # SalUn: int(0.1 * n) images of each class
LAYOUTS = {
    "cifar10": {"config": "plain_text", "label": "label", "repo": "uoft-cs/cifar10"},
    "cifar100": {"config": "cifar100", "label": "fine_label", "repo": "uoft-cs/cifar100"},
}


def salun_validation(labels: np.ndarray, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Boolean mask of SalUn's validation rows: ``int(0.1 * n_c)`` rows of each class ``c``, drawn class by class
    (``0 .. max label``) with one ``np.random.RandomState(seed)``, as ``cifar10_dataloaders`` does."""
    rng = np.random.RandomState(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in range(int(labels.max()) + 1 if len(labels) else 0):
        rows = np.flatnonzero(labels == c)
        mask[rng.choice(rows, int(VALIDATION_FRACTION * len(rows)), replace=False)] = True
    return mask


def protocol_split(
    labels: np.ndarray,
    subset: str,
    seed: int,
    forget_class: int,
    name: str = "cifar",
    split: str = "salun",
) -> np.ndarray:
    """Boolean forget mask over the training rows for ``subset`` (``PROTOCOLS``): a seeded random fraction, or
    every row of ``forget_class``. ``split="salun"`` draws as SalUn (``RandomState(seed - 1)``), ``"full"``
    with ``np.random.default_rng([seed, 977])``."""
    if subset not in PROTOCOLS:
        raise ValueError(f"{name}: unknown subset {subset!r}; choose one of {sorted(PROTOCOLS)}.")
    kind, fraction = PROTOCOLS[subset]
    if kind == "class":
        if forget_class not in set(labels.tolist()):
            raise ValueError(f"{name}: forget_class={forget_class} does not occur in the training labels.")
        return labels == forget_class
    n = round(fraction * len(labels))
    if split == "salun":
        chosen = np.random.RandomState(seed - 1).choice(np.arange(len(labels)), size=n, replace=False)
    else:
        chosen = np.random.default_rng([seed, 977]).permutation(len(labels))[:n]
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return mask


def _read(name: str, path: str) -> tuple[dict, SplitReader]:
    import datasets

    config, label = LAYOUTS[name]["config"], LAYOUTS[name]["label"]
    reader = SplitReader(path, name)
    splits = {}
    for split in ("train", "test"):
        found = reader.required(
            split,
            Split(
                f"{config}/{split}",
                (f"{config}/{split}-*.parquet", f"{config}/{split}/*.parquet"),
                ("img", label),
                older=(f"{config}/{name}-{split}.parquet",),  # the 2023 layout
            ),
        )
        found = found.cast_column("img", datasets.Image())
        splits[split] = found.select_columns(["img", label]).rename_columns(
            {label: "label"} if label != "label" else {}
        )
    return splits, reader


def _load(
    name: str, path: str, subset: str | None, seed: int, forget_class: int, split: str
) -> BenchmarkData:
    subset = subset or "random10"
    if subset not in PROTOCOLS:  # before reading any file
        protocol_split(np.zeros(0), subset, seed, forget_class, name)
    if split not in SPLITS:
        raise ValueError(f"{name}: split must be one of {list(SPLITS)}, got {split!r}.")
    splits, reader = _read(name, path)
    train, test, extra = splits["train"], splits["test"], {}
    if split == "salun":
        validation = salun_validation(np.asarray(train["label"]), seed)
        if validation.any():  # (a class of fewer than 10 images gives none)
            extra["validation"] = train.select(np.flatnonzero(validation))
        train = train.select(np.flatnonzero(~validation))  # file order, as SalUn's sorted index set
    forget_mask = protocol_split(np.asarray(train["label"]), subset, seed, forget_class, name, split)
    if split == "salun" and subset == "class":  # SalUn's class-wise test set has no image of the class
        test = test.select(np.flatnonzero(np.asarray(test["label"]) != forget_class))
    data = BenchmarkData(
        forget=train.select(np.flatnonzero(forget_mask)),
        retain=train.select(np.flatnonzero(~forget_mask)),
        test=test,
        extra=extra,
    )
    data.info = {
        "source": name,
        "subset": subset,
        "files": reader.files,
        "counts": data.counts(),
        "missing": reader.missing,
        "options": {
            "split": split,
            "seed": seed,
            "forget_class": forget_class if subset == "class" else None,
        },
    }
    return data


@register_source("cifar10", download="hf download uoft-cs/cifar10 --repo-type dataset --local-dir DIR")
def load_cifar10(
    path: str,
    subset: str | None = None,
    *,
    seed: int = DEFAULT_SEED,
    forget_class: int = 0,
    split: str = "salun",
) -> BenchmarkData:
    """CIFAR-10 split for unlearning.

    Args:
        path: the download folder (``plain_text/{train,test}-*.parquet``).
        subset: ``"random10"`` (default; a seeded random 10% of the training images), ``"random50"`` or
            ``"class"`` (every training image of ``forget_class``).
        seed: seeds the validation split and the random protocols' choice (default 2, SalUn's).
        forget_class: the class of the class-wise protocol.
        split: ``"salun"`` (default: 45,000 training images, 5,000 validation held out as SalUn's code does, and
            no image of ``forget_class`` in the class-wise test set) or ``"full"`` (all 50,000 training images,
            the whole test split).

    Returns:
        ``forget``, ``retain`` (from CIFAR's training split), ``test`` (its test split), ``{"img", "label"}``;
        ``extra["validation"]`` with ``split="salun"``.
    """
    return _load("cifar10", path, subset, seed, forget_class, split)


@register_source("cifar100", download="hf download uoft-cs/cifar100 --repo-type dataset --local-dir DIR")
def load_cifar100(
    path: str,
    subset: str | None = None,
    *,
    seed: int = DEFAULT_SEED,
    forget_class: int = 0,
    split: str = "salun",
) -> BenchmarkData:
    """CIFAR-100 split for unlearning, as ``load_cifar10`` (``cifar100/{train,test}-*.parquet``; the 100 fine
    labels become ``label``)."""
    return _load("cifar100", path, subset, seed, forget_class, split)
