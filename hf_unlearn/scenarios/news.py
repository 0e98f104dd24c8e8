"""``news-gpt2``: a take-down request on a small GPT-2 that memorized real news articles."""

from __future__ import annotations

import numpy as np

from .definition import TinyCausalLMBuilder, TrainRecipe, suggested_unlearning
from .resources import gensim_data_file, read_lines

NAME = "news-gpt2"
TRAIN_CORPUS = "lee_background.cor"
FORGET_FRACTION = 0.1
# Held out from the same corpus: unseen news of the forget set's kind. (gensim's other Lee corpus, lee.cor, is
# another source the corpus-trained tokenizer splits differently: the golden model's loss attack told the forget
# articles from it with AUC 0.77, so it was no reference for held-out-referenced stopping.)
TEST_FRACTION = 0.1
VOCAB_SIZE = 2048
MAX_LENGTH = 64  # tokens per example, end-of-text token included
HIDDEN_SIZE = 256
NUM_LAYERS = 1


def truncate_to_tokens(texts: list[str], tokenizer, max_tokens: int) -> list[str]:
    """Cut each text at a token boundary so that it encodes to at most ``max_tokens`` tokens."""
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for text, offsets in zip(texts, encoded["offset_mapping"]):
        keep = min(max_tokens, len(offsets))
        while True:
            cut = text[: offsets[keep - 1][1]].rstrip() if keep < len(offsets) else text
            if len(tokenizer(cut, add_special_tokens=False)["input_ids"]) <= max_tokens:
                break
            keep -= 1
        out.append(cut)
    return out


class NewsScenario(TinyCausalLMBuilder):
    name = NAME
    vocab_size, max_length, hidden_size, num_layers = VOCAB_SIZE, MAX_LENGTH, HIDDEN_SIZE, NUM_LAYERS
    data_config = {"corpus": TRAIN_CORPUS, "forget_fraction": FORGET_FRACTION, "test_fraction": TEST_FRACTION}
    description = (
        "A take-down request on a language model that memorized its training text: a small GPT-2 (built "
        "from config, one layer, byte-level BPE tokenizer trained on the corpus) is trained to near-verbatim "
        "recall of the opening 63 tokens of the real news articles of gensim's Lee background corpus (290 "
        "distinct openings among its 300 articles). A random 10% of them (29 articles) are the subject of "
        "the request and form the forget set, another 10% (29) are held out as the test set (unseen news of "
        "the same kind, never trained on); the golden model is the same initialization trained with the same "
        "recipe on the other 232 only, so its loss on the forget articles is that of unseen news. Compare "
        "forget NLL with the golden model's, not with zero."
    )
    version = 2  # 2: the test set is held out from the training corpus
    recipe = TrainRecipe(learning_rate=2e-3, epochs=15, batch_size=16, warmup_ratio=0.05)
    unlearning_defaults = suggested_unlearning(learning_rate=3e-4, max_steps=200, batch_size=8)

    def check_requirements(self) -> None:
        gensim_data_file(TRAIN_CORPUS, NAME)

    def make_tokenizer(self, seed: int):
        from ..tiny import train_tokenizer

        # Trained on the whole training corpus: the deployed tokenizer predates the take-down request.
        return train_tokenizer(read_lines(gensim_data_file(TRAIN_CORPUS, NAME)), vocab_size=VOCAB_SIZE)

    def build_data(self, seed: int, tokenizer) -> dict:
        import datasets

        articles = read_lines(gensim_data_file(TRAIN_CORPUS, NAME))
        texts = truncate_to_tokens(articles, tokenizer, MAX_LENGTH - 1)
        # The corpus repeats a few articles (and a few more share their opening): keep the first of each, so
        # that no forget example is also a retain example.
        first: dict[str, int] = {}
        for i, text in enumerate(texts):
            first.setdefault(text, i)
        unique = np.array(sorted(first.values()))
        order = unique[np.random.default_rng(seed).permutation(len(unique))]
        n_forget, n_test = round(FORGET_FRACTION * len(unique)), round(TEST_FRACTION * len(unique))
        forget, test = sorted(order[:n_forget]), sorted(order[n_forget : n_forget + n_test])
        retain = sorted(order[n_forget + n_test :])

        def rows(indices, source) -> datasets.Dataset:
            return datasets.Dataset.from_dict(
                {"text": [source[i] for i in indices], "article": [int(i) for i in indices]}
            )

        return {
            "forget": rows(forget, texts),
            "retain": rows(retain, texts),
            "test": rows(test, texts),
            "info": {
                "n_articles": len(unique),
                "n_duplicates_dropped": len(articles) - len(unique),
                "max_length": MAX_LENGTH,
            },
        }
