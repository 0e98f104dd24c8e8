"""Small synthetic unlearning tasks for tests, examples and benchmarks (offline, seeded, seconds on a CPU).

``mislabeled_task`` is the case people unlearn for: a classifier memorizes a training set in which a
fraction of the labels are flipped (the forget set); the golden model never saw them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

POSITIVE = ["good", "great", "fine", "nice", "superb", "lovely", "bright", "happy"]
NEGATIVE = ["bad", "awful", "poor", "dull", "grim", "sad", "weak", "ugly"]


@dataclass
class TextTask:
    """Raw datasets (lists of dicts) of a synthetic task, plus the tokenizer trained on them."""

    retain: list[dict]
    forget: list[dict]
    test: list[dict]
    tokenizer: Any = None
    info: dict = field(default_factory=dict)

    @property
    def train(self) -> list[dict]:
        return self.retain + self.forget


def _sentence(rng: np.random.Generator, label: int, fillers: list[str], n_cue: int, n_filler: int) -> str:
    cues = rng.choice(POSITIVE if label == 1 else NEGATIVE, size=n_cue)
    words = list(cues) + list(rng.choice(fillers, size=n_filler, replace=False))
    rng.shuffle(words)
    return " ".join(words)


def mislabeled_task(
    n_train: int = 120, n_test: int = 60, flip_fraction: float = 0.1, n_fillers: int = 300, seed: int = 0
) -> TextTask:
    """Binary sentiment-like sentences (cue words decide the label, random filler words make each sentence
    unique and memorizable); ``flip_fraction`` of the training sentences get the wrong label and form the
    forget set. Labels of ``test`` are all correct."""
    from ..tiny import train_tokenizer

    rng = np.random.default_rng(seed)
    fillers = [f"w{i}" for i in range(n_fillers)]

    def rows(n: int) -> list[dict]:
        labels = rng.integers(0, 2, size=n)
        return [{"text": _sentence(rng, int(y), fillers, 2, 4), "label": int(y)} for y in labels]

    train, test = rows(n_train), rows(n_test)
    n_forget = max(1, int(round(flip_fraction * n_train)))
    flipped = set(rng.choice(n_train, size=n_forget, replace=False).tolist())
    forget = [{"text": r["text"], "label": 1 - r["label"]} for i, r in enumerate(train) if i in flipped]
    retain = [r for i, r in enumerate(train) if i not in flipped]
    tokenizer = train_tokenizer(POSITIVE + NEGATIVE + fillers, vocab_size=n_fillers + 64, model="word")
    return TextTask(retain, forget, test, tokenizer, {"n_flipped": n_forget, "seed": seed})


def fictitious_qa_task(n_people: int = 20, forget_fraction: float = 0.1, seed: int = 0) -> TextTask:
    """Tiny TOFU-like prompt/completion QA about made-up people; the forget set is every question about
    ``forget_fraction`` of the people; ``test`` asks about other, never-seen people."""
    from ..tiny import train_tokenizer

    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ren", "to", "sa", "vi", "dor", "el", "qu", "ban", "zet"]
    cities = ["Aldham", "Brisk", "Corvale", "Dunmere", "Eskton", "Fallow", "Grent", "Hollin"]
    jobs = ["baker", "pilot", "weaver", "sculptor", "miner", "chemist", "farmer", "cartographer"]

    def person() -> dict:
        name = "".join(rng.choice(syllables, 2)).title() + " " + "".join(rng.choice(syllables, 3)).title()
        return {"name": name, "city": str(rng.choice(cities)), "job": str(rng.choice(jobs))}

    def qa(p: dict) -> list[dict]:
        return [
            {"prompt": f"Where was {p['name']} born?", "completion": f" {p['city']}."},
            {"prompt": f"What is the job of {p['name']}?", "completion": f" a {p['job']}."},
        ]

    people = [person() for _ in range(n_people)]
    n_forget = max(1, int(round(forget_fraction * n_people)))
    forget = [row for p in people[:n_forget] for row in qa(p)]
    retain = [row for p in people[n_forget:] for row in qa(p)]
    test = [row for _ in range(max(2, n_people // 4)) for row in qa(person())]
    corpus = [r["prompt"] + r["completion"] for r in forget + retain + test]
    tokenizer = train_tokenizer(corpus, vocab_size=400, model="bpe")
    return TextTask(retain, forget, test, tokenizer, {"n_forget_people": n_forget, "seed": seed})


def digits_task(
    n_train: int = 60, n_test: int = 30, flip_fraction: float = 0.1, seed: int = 0, size: int = 8
) -> TextTask:
    """Real 8x8 handwritten digits (``sklearn.datasets.load_digits``) as ``{"pixel_values", "label"}`` rows
    for ``tiny_image_classifier``: ``flip_fraction`` of the training images get a random wrong label and form
    the forget set. ``tokenizer`` is the matching image processor (for raw images)."""
    from ..scenarios.digits import N_CLASSES, load_digits_images
    from ..tiny import tiny_image_processor

    pixels, labels = load_digits_images(size)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))[: n_train + n_test]
    train, test = order[:n_train], order[n_train:]
    n_forget = max(1, int(round(flip_fraction * n_train)))

    def rows(indices, flip: bool) -> list[dict]:
        out = []
        for i in indices:
            label = int(labels[i])
            if flip:
                label = (label + int(rng.integers(1, N_CLASSES))) % N_CLASSES
            out.append({"pixel_values": pixels[i].tolist(), "label": label})
        return out

    forget, retain = rows(train[:n_forget], True), rows(train[n_forget:], False)
    info = {"n_flipped": n_forget, "seed": seed}
    processor = tiny_image_processor(num_channels=1, image_size=size if size != 8 else None)
    return TextTask(retain, forget, rows(test, False), processor, info)
