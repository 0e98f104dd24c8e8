"""The ``digits-ddpm`` scenario: registered, built small and fast, cached and reloaded; the full scenario's
original generates the forgotten digit and its golden model does not (slow)."""

import json
import os

import pytest
import torch

from hf_unlearn.scenarios import build_scenario, get_builder, list_scenarios  # noqa: E402
from hf_unlearn.scenarios.definition import TrainRecipe  # noqa: E402
from hf_unlearn.scenarios.digits_ddpm import DigitsDDPM  # noqa: E402


def small_builder() -> DigitsDDPM:
    return DigitsDDPM(
        recipe=TrainRecipe(learning_rate=2e-3, epochs=1, batch_size=64),
        block_out_channels=(8, 16),
        judge_epochs=1,
        num_samples_per_class=2,
        num_inference_steps=2,
    )


def test_registered_and_described():
    assert "digits-ddpm" in list_scenarios()
    builder = get_builder("digits-ddpm")
    assert builder.task == "diffusion" and "not Inception FID" in builder.description


def test_small_build_then_load_from_cache(tmp_path, monkeypatch):
    builder = small_builder()
    scenario = build_scenario(builder, str(tmp_path), seed=0)
    assert not scenario.from_cache
    assert scenario.forget_classes == (3,) and 3 not in scenario.retain_classes
    assert set(scenario.forget["label"]) == {3} and 3 not in set(scenario.retain["label"])
    assert len(scenario.forget) + len(scenario.retain) + len(scenario.test) == 1797
    assert set(scenario.train_seconds) == {"original", "golden", "judge"}
    assert {"original", "golden", "judge"} <= set(scenario.metrics)
    assert 0 <= scenario.metrics["golden"]["forget/generation_accuracy"] <= 1
    assert "quality/frechet_distance" in scenario.metrics["original"]

    original, golden = scenario.original_model(), scenario.golden_model()
    assert original.config.num_class_embeds == 11 and original.config.sample_size == 8
    assert any((a != b).any() for a, b in zip(original.parameters(), golden.parameters()))
    assert scenario.noise_scheduler().config.num_train_timesteps == 1000
    assert scenario.diffusion_args().null_class == 10
    assert scenario.judge_model().config.num_labels == 10
    assert scenario.real_images().shape == (len(scenario.retain), 1, 8, 8)
    meta = json.load(open(os.path.join(tmp_path, "digits-ddpm", "scenario.json")))
    assert meta["config"]["block_out_channels"] == [8, 16]

    grid = scenario.save_grid(original, str(tmp_path / "grid.png"), per_class=2)
    assert os.path.getsize(grid) > 0

    # the second load trains nothing
    import hf_unlearn.diffusion.ddpm_training as training

    monkeypatch.setattr(training, "train_ddpm", lambda *a, **k: pytest.fail("retrained a cached scenario"))
    again = build_scenario(small_builder(), str(tmp_path), seed=0)
    assert again.from_cache
    for a, b in zip(again.original_model().parameters(), original.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_ddpm_training_is_seeded():
    from diffusers import DDPMScheduler

    from hf_unlearn.diffusion.ddpm_training import train_ddpm

    builder = small_builder()
    pixels, labels = torch.rand(20, 1, 8, 8) * 2 - 1, torch.arange(20) % 10
    recipe = TrainRecipe(learning_rate=1e-3, epochs=1, batch_size=8)
    weights = []
    for _ in range(2):
        unet = builder.init_model(None, seed=0)
        train_ddpm(unet, pixels, labels, DDPMScheduler(), recipe, seed=1, null_class=10, label_dropout=0.5)
        weights.append([p.detach().clone() for p in unet.parameters()])
    for a, b in zip(*weights):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="null_class"):
        train_ddpm(unet, pixels, labels, DDPMScheduler(), recipe, seed=1, label_dropout=0.5)


@pytest.mark.slow
def test_full_scenario_original_generates_the_class_golden_does_not(tmp_path):
    scenario = build_scenario(get_builder("digits-ddpm"), str(tmp_path), seed=0)
    original, golden = scenario.metrics["original"], scenario.metrics["golden"]
    assert scenario.metrics["judge"]["test_accuracy"] >= 0.95
    assert original["forget/generation_accuracy"] >= 0.7
    assert golden["forget/generation_accuracy"] <= 0.2
    assert original["forget/generation_accuracy"] - golden["forget/generation_accuracy"] >= 0.5
    for row in (original, golden):
        assert row["retain/generation_accuracy"] >= 0.7


def test_quickstart_on_a_small_digits_ddpm(tmp_path, monkeypatch):
    import hf_unlearn.scenarios as scenarios
    from hf_unlearn.quickstart import quickstart

    builder = small_builder()
    builder.unlearning_defaults = {**builder.unlearning_defaults, "max_steps": 2}
    builder.relearning = {"relearn_learning_rate": 1e-3, "relearn_max_steps": 2}
    monkeypatch.setattr(scenarios, "get_builder", lambda name: builder)
    out = tmp_path / "qs"
    result = quickstart(str(out), scenario="digits-ddpm", methods=["ft", "esd"], progress=False)
    assert list(result["metrics"]) == ["original", "golden", "ft", "esd"]
    for row in result["metrics"].values():
        for key in (
            "forget/generation_accuracy",
            "retain/generation_accuracy",
            "quality/frechet_distance",
            "mia/auc",
        ):
            assert 0 <= row[key] < float("inf"), key
    assert result["metrics"]["esd"]["time/ratio_to_retraining"] > 0
    assert "forget/generation_accuracy" in result["table"] and "| esd |" in result["table"]
    for name in ("original", "golden", "ft", "esd"):
        assert (out / f"samples_{name}.png").stat().st_size > 0
    assert (out / "esd" / "config.json").exists() and (out / "summary.md").exists()
