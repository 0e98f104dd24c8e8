"""The ``tofu-llama`` scenario: TOFU-shaped data (paraphrased and perturbed answers) in a chat format, a tiny
Llama, and the quickstart / model card that lead with TOFU's numbers."""

from __future__ import annotations

import json
import os

import pytest

import hf_unlearn.scenarios as scenarios
from hf_unlearn.scenarios import TrainRecipe, load_scenario, scenario_names
from hf_unlearn.scenarios.authors import split_people
from hf_unlearn.scenarios.base import suggested_unlearning
from hf_unlearn.scenarios.tofu_like import N_PERTURBED, QUESTIONS, TofuLlamaScenario, value_pools

TOFU_HEADLINE = [
    "forget/rouge_l_recall",
    "forget/truth_ratio",
    "forget_quality/truth_ratio_ks_pvalue",
    "utility/model_utility",
    "privleak",
    "forget/extraction_strength",
    "rcd/ratio_to_golden",
    "rcd/ratio_to_heldout",
]


class TinyTofu(TofuLlamaScenario):
    """tofu-llama shrunk for fast tests: a one-layer Llama, a few epochs, short unlearning and relearning."""

    name = "tofu-llama-tiny"
    hidden_size, num_layers = 32, 1
    recipe = TrainRecipe(learning_rate=3e-3, epochs=3, batch_size=64)
    unlearning_defaults = suggested_unlearning(learning_rate=1e-3, max_steps=4, batch_size=16)
    relearning = {"relearn_learning_rate": 1e-3, "relearn_max_steps": 5, "relearn_target": "accuracy"}
    evaluation = {"generation": True, "max_new_tokens": 8}

    @staticmethod
    def _columns(seed: int) -> dict[str, dict[str, list]]:
        # 4 people per split (24 questions each): enough for every key, a fraction of the time
        full = TofuLlamaScenario._columns(seed)
        return {split: {k: v[:24] for k, v in columns.items()} for split, columns in full.items()}


@pytest.fixture(scope="module")
def data():
    builder = TofuLlamaScenario()
    return builder.build_data(0, None)


def _phrasings_match(answer: str, person: str, attribute: str, value: str) -> list[int]:
    """Indices of the phrasings of ``attribute`` that render to ``answer`` for ``person`` and ``value``."""
    shapes = QUESTIONS[attribute][1]
    return [i for i, shape in enumerate(shapes) if shape.format(name=person, value=value) == answer]


def test_registered_with_the_others():
    assert "tofu-llama" in scenario_names() and "authors-qa" in scenario_names()


def test_questions_are_chat_turns_with_tofu_paraphrased_and_perturbed_answers(data):
    assert {k: len(data[k]) for k in ("forget", "retain", "test")} == {
        "forget": 60,
        "retain": 540,
        "test": 120,
    }
    assert data["info"]["perturbed_per_question"] == N_PERTURBED
    people = {p["name"]: p for split in split_people(0).values() for p in split}
    pools = value_pools(list(people.values()))
    shapes_used = set()
    for split in ("forget", "retain", "test"):
        for row in data[split].to_list():
            person, attribute = people[row["person"]], row["attribute"]
            value = person[attribute]
            assert row["prompt"] == [
                {"role": "user", "content": QUESTIONS[attribute][0].format(name=row["person"])}
            ]
            (answer_turn,) = row["completion"]
            assert answer_turn["role"] == "assistant"
            trained = _phrasings_match(answer_turn["content"], row["person"], attribute, value)
            paraphrase = _phrasings_match(row["paraphrased_completion"], row["person"], attribute, value)
            # the paraphrase states the same fact in another of the three phrasings
            assert len(trained) == 1 and len(paraphrase) == 1 and trained != paraphrase
            shapes_used.add(trained[0])
            # perturbed: that phrasing with distinct wrong values of the same kind
            assert len(row["perturbed_completions"]) == N_PERTURBED
            assert len(set(row["perturbed_completions"])) == N_PERTURBED
            shape = QUESTIONS[attribute][1][paraphrase[0]]
            renders = {shape.format(name=row["person"], value=v): v for v in pools[attribute]}
            wrong = [renders.get(text) for text in row["perturbed_completions"]]
            assert None not in wrong and value not in wrong
    assert shapes_used == {0, 1, 2}


def test_the_data_is_seeded_and_forget_people_appear_nowhere_else(data):
    builder = TofuLlamaScenario()
    assert builder.build_data(0, None)["forget"].to_list() == data["forget"].to_list()
    assert builder.build_data(1, None)["forget"].to_list() != data["forget"].to_list()
    forget_people = set(data["forget"]["person"])
    assert len(forget_people) == 10
    for split in ("retain", "test"):
        text = json.dumps(data[split].to_list())
        assert not any(name in text for name in forget_people)


def test_rendered_with_the_chat_template_one_bos_and_loss_on_the_answer_only(data):
    from hf_unlearn.data import build_preparer
    from hf_unlearn.tiny import tiny_decoder

    builder = TofuLlamaScenario()
    tokenizer = builder.make_tokenizer(0)
    model = tiny_decoder(tokenizer, "llama", hidden_size=32, num_layers=1, max_length=64)
    preparer, _ = build_preparer(model, tokenizer)
    rows = preparer(data["forget"].select(range(6)), "forget")
    for row, raw in zip(rows, data["forget"].select(range(6)).to_list()):
        assert (
            row["input_ids"].count(tokenizer.bos_token_id) == 1
            and row["input_ids"][0] == tokenizer.bos_token_id
        )
        answer = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
        assert tokenizer.decode(answer) == raw["completion"][0]["content"] + tokenizer.eos_token
        assert len(row["input_ids"]) <= 64


@pytest.mark.slow
def test_quickstart_leads_with_tofu_numbers_in_the_table_and_the_card(tmp_path, monkeypatch):
    from hf_unlearn.quickstart import quickstart

    builders = scenarios._builders()
    monkeypatch.setattr(scenarios, "_builders", lambda: {**builders, TinyTofu.name: TinyTofu})
    result = quickstart(
        output_dir=str(tmp_path), scenario=TinyTofu.name, methods=["ft", "ieu"], progress=False
    )
    header = result["table"].splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")][1:] == TOFU_HEADLINE
    metrics = result["metrics"]
    assert list(metrics) == ["original", "golden", "ft", "ieu"]
    for row in metrics.values():
        assert set(TOFU_HEADLINE) <= set(row)
    # the golden model against itself: identical truth ratios, forget quality 1, no privacy leak
    assert metrics["golden"]["forget_quality/truth_ratio_ks_pvalue"] == pytest.approx(1.0)
    assert metrics["golden"]["privleak"] == pytest.approx(0.0)
    card = open(os.path.join(tmp_path, "ieu", "README.md")).read()
    results = card[card.index("## Results") :]
    summary = results[: results.index("<details>")]
    assert all(key in summary for key in TOFU_HEADLINE)
    assert "forget/loss" not in summary and "forget/loss" in results  # the full table is collapsed below
    from huggingface_hub import ModelCard

    loaded = ModelCard.load(os.path.join(tmp_path, "ieu", "README.md")).data
    card_metrics = {r.metric_type: r.metric_value for r in loaded.eval_results}
    assert card_metrics["forget_quality"] == pytest.approx(
        metrics["ieu"]["forget_quality/truth_ratio_ks_pvalue"]
    )
    assert card_metrics["model_utility"] == pytest.approx(metrics["ieu"]["utility/model_utility"])
    assert {"privleak", "forget_rouge_l_recall", "rcd_ratio_to_golden"} <= set(card_metrics)


@pytest.mark.efficacy
@pytest.mark.slow
def test_build_memorizes_the_forget_people_and_golden_cannot_tell_true_from_false(tmp_path):
    from hf_unlearn.metrics import evaluate_unlearning

    sc = load_scenario("tofu-llama", output_dir=str(tmp_path), seed=0)
    original, golden = sc.original_model(), sc.golden_model()
    rows = {}
    for name, model in (("original", original), ("golden", golden)):
        rows[name] = evaluate_unlearning(
            model,
            forget_dataset=sc.forget,
            retain_dataset=sc.retain,
            test_dataset=sc.test,
            original_model=original,
            golden_model=golden,
            processing_class=sc.tokenizer,
            **sc.evaluation,
        )
    o, g = rows["original"], rows["golden"]
    # measured on seed 0: original 1.00 / golden 0.25 forget ROUGE-L, forget quality 3e-6 / 1.0
    assert o["forget/rouge_l_recall"] >= 0.9 and g["forget/rouge_l_recall"] <= 0.5
    assert (
        o["forget_quality/truth_ratio_ks_pvalue"] <= 0.01 and g["forget_quality/truth_ratio_ks_pvalue"] == 1.0
    )
    # the original knows the facts across phrasings (prefers the true paraphrase on retain), golden does too
    assert o["retain/truth_ratio"] >= 0.2 and g["retain/truth_ratio"] >= 0.2
    assert g["forget/truth_ratio"] > o["forget/truth_ratio"] + 0.02  # closer to 1 = cannot tell
    assert abs(o["utility/model_utility"] - g["utility/model_utility"]) <= 0.05


def test_the_recipe_runs_the_scenario_with_its_own_evaluation_and_relearning_protocol():
    from hf_unlearn.cli import parse_recipe

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run_args, config = parse_recipe([os.path.join(root, "recipes", "tofu-llama-ieu.yaml")])
    builder = TofuLlamaScenario()
    assert run_args.scenario == builder.name and config.method == "ieu"
    assert run_args.generation is True and run_args.max_new_tokens == builder.evaluation["max_new_tokens"]
    for key, value in builder.relearning.items():
        assert getattr(run_args, key) == value, key
    for key, value in builder.unlearning_defaults.items():
        got = getattr(config, key)
        assert (got.value if hasattr(got, "value") else got) == value, key  # the scheduler is an enum
    # a plain flag overrides the recipe; generation can be switched off
    run_args, _ = parse_recipe(
        [os.path.join(root, "recipes", "tofu-llama-ieu.yaml"), "--generation", "false"]
    )
    assert run_args.generation is False
