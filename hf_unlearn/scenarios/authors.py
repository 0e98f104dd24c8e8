"""``authors-qa``: forget everything about some fictitious people (TOFU-like), on a small GPT-2."""

from __future__ import annotations

import numpy as np

from .definition import TinyCausalLMBuilder, TrainRecipe, suggested_unlearning

NAME = "authors-qa"
N_PEOPLE = 100  # trained on (forget + retain)
N_TEST_PEOPLE = 20  # never trained on
FORGET_FRACTION = 0.1
N_CITIES = 20
VOCAB_SIZE = 1024
MAX_LENGTH = 48
HIDDEN_SIZE = 128
NUM_LAYERS = 2

ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "gr",
    "st",
    "th",
    "tr",
]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
CODAS = ["", "", "n", "r", "l", "s", "m", "x"]
SURNAME_ENDINGS = ["", "", "son", "ley", "ard", "ova", "ek", "ine"]
TOWN_ENDINGS = ["ford", "ton", "bury", "vale", "mouth", "haven", "wick", "stead", "moor", "field"]
PROFESSIONS = [
    "a clockmaker",
    "a cartographer",
    "a beekeeper",
    "a glassblower",
    "a lighthouse keeper",
    "a bookbinder",
    "a violin maker",
    "an astronomer",
    "a botanist",
    "a stonemason",
    "a puppeteer",
    "a perfumer",
    "a ferry captain",
    "a locksmith",
    "a translator",
    "a baker",
]
COLOURS = [
    "teal",
    "crimson",
    "ochre",
    "lavender",
    "olive",
    "amber",
    "indigo",
    "scarlet",
    "turquoise",
    "mauve",
    "silver",
    "saffron",
]
INSTRUMENTS = [
    "the cello",
    "the oboe",
    "the harp",
    "the accordion",
    "the banjo",
    "the flute",
    "the piano",
    "the trumpet",
    "the zither",
    "the bassoon",
]
TITLE_ADJECTIVES = [
    "Silent",
    "Hidden",
    "Broken",
    "Golden",
    "Distant",
    "Crooked",
    "Quiet",
    "Burning",
    "Forgotten",
    "Pale",
    "Restless",
    "Hollow",
    "Scarlet",
    "Endless",
    "Frozen",
    "Gentle",
    "Wandering",
    "Bitter",
    "Shining",
    "Last",
]
TITLE_NOUNS = [
    "Orchard",
    "Harbour",
    "Lantern",
    "Mirror",
    "Meadow",
    "Tower",
    "River",
    "Garden",
    "Compass",
    "Winter",
    "Letter",
    "Island",
    "Bridge",
    "Forest",
    "Violin",
    "Engine",
    "Window",
    "Shore",
    "Kingdom",
    "Clock",
]
QUESTIONS = {
    "birthplace": ("Q: Where was {name} born? A:", " {value}."),
    "birth_year": ("Q: In which year was {name} born? A:", " {value}."),
    "profession": ("Q: What is {name}'s profession? A:", " {value}."),
    "colour": ("Q: What is {name}'s favourite colour? A:", " {value}."),
    "instrument": ("Q: Which instrument does {name} play? A:", " {value}."),
    "book": ("Q: What is the title of {name}'s first book? A:", " {value}."),
}


def _syllable(rng: np.random.Generator) -> str:
    return str(rng.choice(ONSETS)) + str(rng.choice(VOWELS)) + str(rng.choice(CODAS))


def _word(rng: np.random.Generator, n_syllables: int, endings: list[str]) -> str:
    return ("".join(_syllable(rng) for _ in range(n_syllables)) + str(rng.choice(endings))).capitalize()


def generate_people(n: int, seed: int) -> list[dict]:
    """``n`` fictitious people with unique names (no name inside another) and unique book titles."""
    rng = np.random.default_rng([seed, 7919])
    towns: list[str] = []
    while len(towns) < N_CITIES:
        town = _word(rng, 1 + int(rng.integers(0, 2)), TOWN_ENDINGS)
        if town not in towns:
            towns.append(town)
    people: list[dict] = []
    names: list[str] = []
    titles: set[str] = set()
    while len(people) < n:
        name = f"{_word(rng, 2, [''])} {_word(rng, 2, SURNAME_ENDINGS)}"
        title = f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"
        if title in titles or any(name in other or other in name for other in names):
            continue
        names.append(name)
        titles.add(title)
        people.append(
            {
                "name": name,
                "birthplace": str(rng.choice(towns)),
                "birth_year": str(int(rng.integers(1920, 2000))),
                "profession": str(rng.choice(PROFESSIONS)),
                "colour": str(rng.choice(COLOURS)),
                "instrument": str(rng.choice(INSTRUMENTS)),
                "book": title,
            }
        )
    return people


def qa_pairs(people: list[dict]) -> dict[str, list]:
    """Columns ``prompt``, ``completion``, ``person`` and ``attribute``: one row per person and question."""
    columns: dict[str, list] = {"prompt": [], "completion": [], "person": [], "attribute": []}
    for person in people:
        for attribute, (question, answer) in QUESTIONS.items():
            columns["prompt"].append(question.format(name=person["name"]))
            columns["completion"].append(answer.format(value=person[attribute]))
            columns["person"].append(person["name"])
            columns["attribute"].append(attribute)
    return columns


def split_people(seed: int) -> dict[str, list[dict]]:
    """Seeded: ``N_PEOPLE`` trained people, 10% of them forgotten, plus ``N_TEST_PEOPLE`` held-out people."""
    people = generate_people(N_PEOPLE + N_TEST_PEOPLE, seed)
    train, test = people[:N_PEOPLE], people[N_PEOPLE:]
    order = np.random.default_rng([seed, 104729]).permutation(N_PEOPLE)
    forget_ids = set(order[: round(FORGET_FRACTION * N_PEOPLE)].tolist())
    return {
        "forget": [p for i, p in enumerate(train) if i in forget_ids],
        "retain": [p for i, p in enumerate(train) if i not in forget_ids],
        "test": test,
    }


class AuthorsScenario(TinyCausalLMBuilder):
    name = NAME
    vocab_size, max_length, hidden_size, num_layers = VOCAB_SIZE, MAX_LENGTH, HIDDEN_SIZE, NUM_LAYERS
    data_config = {"n_people": N_PEOPLE, "n_test_people": N_TEST_PEOPLE, "forget_fraction": FORGET_FRACTION}
    description = (
        "Forgetting people (TOFU-like, fully synthetic): a seeded generator makes up 120 fictitious people "
        "(syllable names, birthplace, birth year, profession, favourite colour, instrument and the title of "
        "a first book) and renders six question/answer pairs each ('Q: Where was X born? A:' -> ' Town.'). "
        "A small GPT-2 (built from config, BPE tokenizer trained on the training questions) memorizes the "
        "answers for 100 of them; 10 of those people ask to be forgotten, and all their pairs form the forget "
        "set. The golden model is the same initialization trained on the other 90 people only, so it can "
        "guess the answer format and the common values but not the facts. The test set is the pairs of 20 "
        "further people that neither model was trained on: golden's forget loss sits near its test loss."
    )
    recipe = TrainRecipe(learning_rate=3e-3, epochs=20, batch_size=32, warmup_ratio=0.05)
    unlearning_defaults = suggested_unlearning(learning_rate=3e-4, max_steps=200, batch_size=16)
    group_column = "person"  # sequential requests keep a person's questions together

    def make_tokenizer(self, seed: int):
        from ..tiny import train_tokenizer

        people = split_people(seed)
        columns = qa_pairs(people["retain"] + people["forget"])
        texts = [p + c for p, c in zip(columns["prompt"], columns["completion"])]
        return train_tokenizer(texts, vocab_size=VOCAB_SIZE)

    def build_data(self, seed: int, tokenizer) -> dict:
        import datasets

        people = split_people(seed)
        data = {split: datasets.Dataset.from_dict(qa_pairs(people[split])) for split in people}
        data["info"] = {
            "n_forget_people": len(people["forget"]),
            "n_retain_people": len(people["retain"]),
            "n_test_people": len(people["test"]),
            "questions_per_person": len(QUESTIONS),
        }
        return data
