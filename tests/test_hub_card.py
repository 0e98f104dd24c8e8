"""What the model card tells a reader: the columns it shows, explained; the base model's license and Hub id (never
a made-up license or a local path); a LoRA output as an adapter with the lines that load it; warnings before the
tables; the optimizer steps that ran; no repository paths."""

import json
import re
from types import SimpleNamespace

import pytest
from conftest import make_config
from test_cli import write_model_dirs, write_recipe
from test_hub import CLASSIFIER_ROW, TOFU_ROW, _report, _section

from hf_unlearn.cli import main
from hf_unlearn.kinds import model_kinds
from hf_unlearn.pipeline import RunArguments, hyperparameters
from hf_unlearn.reporting.card import base_model_facts, build_model_card, is_hub_model_id
from hf_unlearn.reporting.headline import DEFINITIONS

CAUSAL_ROW = {
    "forget/loss": 3.2,
    "retain/token_accuracy": 0.9,
    "test/perplexity": 30.0,
    "mia/auc": 0.6,
    "forget_quality/ks_pvalue": 0.2,
    "rcd/steps": 7.0,
}


def _card(report: dict) -> str:
    return str(build_model_card(report))


def _columns(card: str) -> list[tuple[str, str]]:
    """The ``Columns:`` list under the summary table: ``(key, text)`` per line."""
    block = card[card.index("Columns:\n") :].split("\n\n")[0]
    return re.findall(r"^- `([^`]+)`: (.+)\.$", block, flags=re.M)


def _summary_header(card: str) -> list[str]:
    line = next(line for line in card.splitlines() if line.startswith("| model |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_every_summarized_key_has_a_definition():
    tofu = {"m": {"utility/model_utility": 0.5}}
    keys = {k for kind in model_kinds() for rows in (None, tofu) for short in (False, True)
            for k in kind.headline(rows, short)}  # fmt: skip
    assert keys - set(DEFINITIONS) == set()


@pytest.mark.parametrize("row,task", [(CLASSIFIER_ROW, "classification"), (CAUSAL_ROW, "causal_lm"),
                                      (TOFU_ROW, "causal_lm")])  # fmt: skip
def test_the_card_explains_exactly_the_columns_of_its_summary(row, task):
    card = _card(_report(row, task))
    shown = _summary_header(card)
    assert [key for key, _ in _columns(card)] == shown
    assert all(text == DEFINITIONS[key] for key, text in _columns(card))


def test_a_classifier_card_speaks_of_its_own_metrics_only():
    card = _card(_report(CLASSIFIER_ROW)).lower()
    for foreign in ("truth ratio", "privleak", "rouge", "perplexity"):
        assert foreign not in card, foreign
    assert "salun's avg. gap" in card and "mia-efficacy" in card
    assert "docs/" not in card  # a repository path a pip user cannot follow
    assert "metrics page of the `hf_unlearn` documentation" in card


def test_no_license_is_claimed_without_the_base_models_and_the_base_models_is_kept(tmp_path):
    card = build_model_card(_report(CLASSIFIER_ROW))
    assert card.data.license is None and "license:" not in str(card)
    folder = tmp_path / "my-minilm"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: mit\ntags: [x]\n---\n# A model\n")
    facts = base_model_facts(str(folder))
    assert facts == {"base_model": None, "base_model_folder": "my-minilm", "license": "mit"}
    card = build_model_card({**_report(CLASSIFIER_ROW), "scenario": None, **facts})
    assert card.data.license == "mit" and card.data.base_model is None
    assert "Base model: a local model folder, `my-minilm`" in str(card) and str(tmp_path) not in str(card)


def test_base_model_is_a_hub_id_never_a_local_path(tmp_path):
    snapshot = tmp_path / "hub" / "models--acme--tiny-bert" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "README.md").write_text(
        "---\nlicense: other\nlicense_name: acme\nlicense_link: LICENSE\n---\n"
    )
    facts = base_model_facts(str(snapshot))
    assert facts["base_model"] == "acme/tiny-bert" and facts["license_name"] == "acme"
    card = build_model_card({**_report(CLASSIFIER_ROW), "scenario": None, **facts})
    assert card.data.base_model == "acme/tiny-bert" and card.data.license == "other"
    assert card.data.license_name == "acme" and "Base model: `acme/tiny-bert`" in str(card)
    local = tmp_path / "models" / "mine"
    local.mkdir(parents=True)
    assert base_model_facts(str(local))["base_model"] is None  # a folder is no Hub id, whatever its shape
    assert is_hub_model_id("acme/tiny-bert") and is_hub_model_id("gpt2")
    assert not any(is_hub_model_id(p) for p in ("/abs/path", "./rel", "../up", "a/b/c", "", None))


def test_a_scenario_card_describes_the_scenarios_original_model():
    report = {
        **_report(TOFU_ROW, "causal_lm"),
        "scenario_description": "TOFU in miniature (fully synthetic).",
    }
    card = _card(report)
    assert "Base model: the original model of the built-in scenario `unit`. TOFU in miniature" in card


def _lora(report: dict) -> dict:
    hyper = {**report["hyperparameters"], "lora": {"lora_r": 4, "lora_alpha": 16}}
    return {**report, "hyperparameters": hyper}


@pytest.mark.parametrize("architecture,auto", [("LlamaForCausalLM", "AutoModelForCausalLM"),
                                               ("ResNetForImageClassification", "AutoModelForImageClassification"),
                                               ("BertForSequenceClassification", "AutoModelForSequenceClassification")])  # fmt: skip
def test_a_lora_card_says_it_is_an_adapter_and_how_to_load_it(architecture, auto):
    task = "causal_lm" if "Causal" in architecture else "classification"
    report = {**_lora(_report(CAUSAL_ROW, task)), "scenario": None, "architecture": architecture}
    report.update(base_model="acme/base", base_model_folder="base")
    card = build_model_card(report)
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    text = str(card)
    assert "**This is a PEFT LoRA adapter, not a full model.**" in text
    snippet = re.search(r"```python\n(.*?)```", text, flags=re.S)[1]
    compile(snippet, "snippet", "exec")  # the lines are valid Python
    assert f'base = {auto}.from_pretrained("acme/base")' in snippet
    assert "model = PeftModel.from_pretrained(base, " in snippet
    plain = _card({**_report(CAUSAL_ROW, task), "architecture": architecture})
    assert "adapter" not in plain.lower() and "library_name: transformers" in plain


def test_a_lora_card_of_a_scenario_loads_the_base_from_the_scenario():
    text = _card(_lora(_report(TOFU_ROW, "causal_lm")))
    assert 'base = load_scenario("unit", seed=3).original_model()' in text  # the run's seed built it


def test_warnings_come_before_the_tables():
    flags = ["unlearned: retain/accuracy fell from 0.755 (original) to 0.434; read with care."]
    card = _card({**_report(CLASSIFIER_ROW), "flags": flags})
    assert card.index("**Warnings:**") < card.index("| model |") < card.index("<details>")
    assert f"- {flags[0]}" in _section(card, "Results")


def test_the_card_records_the_optimizer_steps_that_ran(tmp_path):
    config = make_config(tmp_path, method="ga", max_steps=40)
    trainer = SimpleNamespace(state=SimpleNamespace(global_step=12))  # e.g. a stopping rule ended the run
    values = hyperparameters(config, RunArguments(), trainer)
    assert values["steps_run"] == 12 and values["max_steps"] == 40
    card = _card({**_report(CLASSIFIER_ROW), "hyperparameters": values})
    assert "**12** optimizer steps ran (`max_steps`: 40)." in _section(card, "Unlearning hyperparameters")
    assert "steps_run" not in hyperparameters(config, RunArguments())  # no trainer, no claim


def test_a_lora_run_of_a_users_folder_writes_an_adapter_card_with_the_base_license(tmp_path, mislabeled):
    dirs = write_model_dirs(tmp_path, mislabeled)
    (tmp_path / "original" / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# the user's model\n")
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, dirs, out, max_steps=2, lora_r=2, relearn="false")
    assert main(["run", recipe]) == 0
    report = json.loads((out / "unlearning_report.json").read_text())
    assert report["hyperparameters"]["steps_run"] == 2 and report["license"] == "cc-by-4.0"
    assert report["base_model"] is None and report["base_model_folder"] == "original"
    assert report["architecture"].endswith("ForSequenceClassification")
    card = (out / "README.md").read_text()
    assert "license: cc-by-4.0" in card and "library_name: peft" in card and "apache" not in card
    assert "from transformers import AutoModelForSequenceClassification" in card
    assert 'from_pretrained("path/to/original")' in card and str(tmp_path) not in card
    # the card's lines load the adapter onto the user's folder
    snippet = re.search(r"```python\n(.*?)```", card, flags=re.S)[1]
    snippet = snippet.replace("path/to/original", dirs["model"]).replace("path/to/this/adapter", str(out))
    loaded: dict = {}
    exec(snippet, loaded)
    assert type(loaded["model"]).__name__ == "PeftModelForSequenceClassification"
    assert "**2** optimizer steps ran (`max_steps`: 2)." in card
