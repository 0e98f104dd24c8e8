"""``hf-unlearn quickstart``'s rows: ``ft`` is naive fine-tuning (no reset, no stopping), ``mask+ft`` the same
after the reset, every other method at the scenario's defaults."""

from __future__ import annotations

import json
import os

import pytest

import hf_unlearn.scenarios as scenarios
from hf_unlearn.quickstart import DEFAULT_METHODS, parse_row, row_settings
from hf_unlearn.scenarios import TrainRecipe
from hf_unlearn.scenarios.base import suggested_unlearning
from hf_unlearn.scenarios.digits import DigitsRandom10

SCENARIO_DEFAULTS = suggested_unlearning(learning_rate=1e-3, max_steps=50, batch_size=32)


class TinyDigits(DigitsRandom10):
    """digits-random10 shrunk for a fast test: one epoch, a 4-channel ResNet, 2 unlearning steps."""

    name = "digits-tiny"
    hidden_size = 4
    recipe = TrainRecipe(learning_rate=3e-3, epochs=1, batch_size=64)
    unlearning_defaults = suggested_unlearning(learning_rate=1e-3, max_steps=2, batch_size=32)
    relearning = {"relearn_learning_rate": 1e-3, "relearn_max_steps": 2, "relearn_target": "loss"}

    def build_data(self, seed: int, tokenizer) -> dict:
        data = super().build_data(seed, tokenizer)
        sizes = {"forget": 16, "retain": 64, "test": 32}
        return {**data, **{split: data[split].select(range(n)) for split, n in sizes.items()}}


def test_ft_is_naive_and_mask_ft_adds_only_the_reset():
    assert SCENARIO_DEFAULTS["influence_removal"] == "mask" and SCENARIO_DEFAULTS["stopping"] != "none"
    name, ft = row_settings("ft", SCENARIO_DEFAULTS)
    assert name == "ft" and ft["influence_removal"] == "none" and ft["stopping"] == "none"
    name, masked = row_settings("mask+ft", SCENARIO_DEFAULTS)
    assert name == "mask + ft" and masked == {**ft, "influence_removal": "mask"}
    assert row_settings("mask + ft", SCENARIO_DEFAULTS) == (name, masked)
    # the other methods keep the scenario's defaults, reset and stopping included
    assert row_settings("dr", SCENARIO_DEFAULTS) == ("dr", {**SCENARIO_DEFAULTS, "method": "dr"})
    assert row_settings("rbm+npo", SCENARIO_DEFAULTS)[1]["influence_removal"] == "rbm"
    assert [parse_row(spec)[0] for spec in DEFAULT_METHODS] == ["ft", "mask + ft", "dr", "ieu"]


@pytest.mark.parametrize("spec", ["fx", "mask+", "noise+ft", "mask+rbm+ft"])
def test_a_bad_row_is_refused_with_the_forms_it_takes(spec):
    with pytest.raises(ValueError, match="unknown method|'<removal>\\+<method>'"):
        parse_row(spec)


def test_the_cli_runs_the_quickstart_default_rows(monkeypatch):
    import hf_unlearn.quickstart
    from hf_unlearn.cli import cmd_quickstart

    asked = {}
    fake = lambda **kwargs: asked.update(kwargs) or {"table": "", "seconds": 0.0}  # noqa: E731
    monkeypatch.setattr(hf_unlearn.quickstart, "quickstart", fake)
    assert cmd_quickstart(["--no_progress"]) == 0
    assert asked["methods"] is None  # the scenario's default rows (DEFAULT_METHODS; digits-ddpm has its own)
    cmd_quickstart(["--no_progress", "--methods", "ft, dr"])
    assert asked["methods"] == ["ft", "dr"]


def test_quickstart_runs_ft_naive_and_mask_ft_with_the_reset(tmp_path, monkeypatch):
    builders = scenarios._builders()
    monkeypatch.setattr(scenarios, "_builders", lambda: {**builders, TinyDigits.name: TinyDigits})
    from hf_unlearn.quickstart import quickstart

    result = quickstart(str(tmp_path), scenario=TinyDigits.name, methods=["ft", "mask+ft"], progress=False)
    assert list(result["metrics"]) == ["original", "golden", "ft", "mask + ft"]
    assert "| mask + ft |" in result["table"]
    reports = {}
    for folder in ("ft", "mask+ft"):
        with open(os.path.join(tmp_path, folder, "unlearning_report.json")) as f:
            reports[folder] = json.load(f)["hyperparameters"]
    assert reports["ft"].get("influence_removal", "none") == "none" and "stopping" not in reports["ft"]
    assert reports["mask+ft"]["influence_removal"] == "mask" and "stopping" not in reports["mask+ft"]
