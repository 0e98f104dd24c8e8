"""``tofu-llama``: TOFU's protocol in miniature: fictitious people asked about in a chat format, with
paraphrased and perturbed answers, on a tiny Llama.

Each (person, question) is answered in one of three phrasings, drawn per pair, so the model learns the facts
rather than one sentence shape. TOFU's extra answers come from the two other phrasings: the *paraphrased*
answer is the same fact in a phrasing the model never saw for that pair (it saw it for other people), the
*perturbed* answers are that phrasing with a wrong value of the same kind (another town, another year).
A model that knows the fact prefers the paraphrase (truth ratio R << 1); one that never saw the person
cannot tell them apart (R ~ 1), which is what ``forget_quality/truth_ratio_ks_pvalue`` compares with golden.
"""

from __future__ import annotations

import numpy as np

from .authors import COLOURS, INSTRUMENTS, PROFESSIONS, TITLE_ADJECTIVES, TITLE_NOUNS, split_people
from .definition import TinyCausalLMBuilder, TrainRecipe, suggested_unlearning

NAME = "tofu-llama"
N_PERTURBED = 3
VOCAB_SIZE = 1024
MAX_LENGTH = 64
HIDDEN_SIZE = 128
NUM_LAYERS = 2

#: ``attribute: (question, [three answer phrasings])``; ``{name}`` and ``{value}`` are filled in.
QUESTIONS: dict[str, tuple[str, list[str]]] = {
    "birthplace": (
        "Where was {name} born?",
        ["{name} was born in {value}.", "{value} is the birthplace of {name}.", "{name} comes from {value}."],
    ),
    "birth_year": (
        "In which year was {name} born?",
        [
            "{name} was born in {value}.",
            "The year {name} was born is {value}.",
            "{value}, the year of {name}'s birth.",
        ],
    ),
    "profession": (
        "What does {name} do for a living?",
        [
            "{name} works as {value}.",
            "By profession, {name} is {value}.",
            "{name} earns a living as {value}.",
        ],
    ),
    "colour": (
        "What is {name}'s favourite colour?",
        [
            "{name}'s favourite colour is {value}.",
            "{name} likes {value} best.",
            "{value} is the colour {name} loves.",
        ],
    ),
    "instrument": (
        "Which instrument does {name} play?",
        [
            "{name} plays {value}.",
            "The instrument {name} plays is {value}.",
            "{name} is a player of {value}.",
        ],
    ),
    "book": (
        "What is the title of {name}'s first book?",
        [
            "{name}'s first book is {value}.",
            "{value} was the first book {name} wrote.",
            "{name} debuted with {value}.",
        ],
    ),
}


def value_pools(people: list[dict]) -> dict[str, list[str]]:
    """The values each attribute can take (for perturbed answers: wrong values of the same kind)."""
    return {
        "birthplace": sorted({p["birthplace"] for p in people}),
        "birth_year": [str(year) for year in range(1920, 2000)],
        "profession": list(PROFESSIONS),
        "colour": list(COLOURS),
        "instrument": list(INSTRUMENTS),
        "book": [f"The {a} {n}" for a in TITLE_ADJECTIVES for n in TITLE_NOUNS],
    }


def qa_rows(people: list[dict], pools: dict[str, list[str]], seed: int) -> dict[str, list]:
    """TRL conversational rows (``prompt``, ``completion``) with TOFU's ``paraphrased_completion`` and
    ``perturbed_completions``, plus ``person`` and ``attribute``; seeded phrasings and wrong values."""
    rng = np.random.default_rng([seed, 6151])
    columns: dict[str, list] = {
        k: []
        for k in (
            "prompt",
            "completion",
            "paraphrased_completion",
            "perturbed_completions",
            "person",
            "attribute",
        )
    }
    for person in people:
        for attribute, (question, phrasings) in QUESTIONS.items():
            name, value = person["name"], person[attribute]
            shape = int(rng.integers(len(phrasings)))
            other = phrasings[(shape + 1 + int(rng.integers(len(phrasings) - 1))) % len(phrasings)]
            wrong = rng.choice([v for v in pools[attribute] if v != value], N_PERTURBED, replace=False)
            columns["prompt"].append([{"role": "user", "content": question.format(name=name)}])
            answer = phrasings[shape].format(name=name, value=value)
            columns["completion"].append([{"role": "assistant", "content": answer}])
            columns["paraphrased_completion"].append(other.format(name=name, value=value))
            columns["perturbed_completions"].append([other.format(name=name, value=str(v)) for v in wrong])
            columns["person"].append(name)
            columns["attribute"].append(attribute)
    return columns


class TofuLlamaScenario(TinyCausalLMBuilder):
    name = NAME
    architecture = "llama"
    vocab_size, max_length, hidden_size, num_layers = VOCAB_SIZE, MAX_LENGTH, HIDDEN_SIZE, NUM_LAYERS
    data_config = {"n_perturbed": N_PERTURBED}
    group_column = "person"  # sequential requests keep a person's questions together
    description = (
        "TOFU in miniature (fully synthetic): 120 made-up people (syllable names, birthplace, birth year, "
        "profession, favourite colour, instrument, first book), six chat-format questions each "
        "(user: 'Where was X born?', assistant: 'X was born in Town.'), each answered in one of three phrasings, "
        "with TOFU's paraphrased answer (another phrasing) and three perturbed answers (that phrasing, wrong "
        "values). A tiny Llama (LlamaForCausalLM from config, BPE tokenizer with BOS and a Llama-3-style chat "
        "template) memorizes 100 people; 10 ask to be forgotten (forget01-style: 60 questions). Golden is the "
        "same initialization trained on the other 90; the 20 further people are the held-out (holdout) split."
    )
    recipe = TrainRecipe(learning_rate=3e-3, epochs=24, batch_size=32, warmup_ratio=0.05)
    unlearning_defaults = suggested_unlearning(learning_rate=3e-4, max_steps=200, batch_size=16)
    #: ``evaluate_unlearning`` options for this scenario: generate answers (TOFU's ROUGE-L, model utility).
    evaluation = {"generation": True, "max_new_tokens": 32}
    #: The original's forget NLL is ~0.004, so a loss target (1.1x that) waits on the last 1% of the loss; the
    #: answers' token accuracy (golden starts at 0.5) measures the recovery of the facts themselves.
    relearning = {"relearn_learning_rate": 1e-3, "relearn_max_steps": 100, "relearn_target": "accuracy"}

    def make_tokenizer(self, seed: int):
        from ..tiny import TINY_CHAT_TEMPLATE, train_tokenizer

        data = self._columns(seed)
        texts = [
            "<|user|>"
            + p[0]["content"]
            + "<|assistant|>"
            + c[0]["content"]
            + " "
            + para
            + " "
            + " ".join(pert)
            for split in data.values()
            for p, c, para, pert in zip(
                split["prompt"],
                split["completion"],
                split["paraphrased_completion"],
                split["perturbed_completions"],
            )
        ]
        return train_tokenizer(texts, vocab_size=VOCAB_SIZE, add_bos=True, chat_template=TINY_CHAT_TEMPLATE)

    def build_data(self, seed: int, tokenizer) -> dict:
        import datasets

        data = {split: datasets.Dataset.from_dict(columns) for split, columns in self._columns(seed).items()}
        data["info"] = {
            "n_forget_people": len(data["forget"]) // len(QUESTIONS),
            "n_retain_people": len(data["retain"]) // len(QUESTIONS),
            "n_test_people": len(data["test"]) // len(QUESTIONS),
            "questions_per_person": len(QUESTIONS),
            "perturbed_per_question": N_PERTURBED,
        }
        return data

    @staticmethod
    def _columns(seed: int) -> dict[str, dict[str, list]]:
        people = split_people(seed)
        pools = value_pools(people["forget"] + people["retain"] + people["test"])
        return {
            split: qa_rows(people[split], pools, seed + i)
            for i, split in enumerate(("forget", "retain", "test"))
        }
