"""Diffusion models through the evaluation seam: the judged generation metrics of ``evaluate_unlearning`` (through
``ClassConditionalUNetKind.suite_metrics``), the options refused for other kinds, the kind's headline, and loading a
saved UNet folder (``load_model``, ``hf-unlearn eval``)."""

import json

import pytest
import torch

from hf_unlearn.diffusion import DiffusionArguments, configure_unet, diffusion_setup
from hf_unlearn.diffusion.generation_metrics import generation_metrics
from hf_unlearn.kinds import get_model_kind
from hf_unlearn.loading import load_model
from hf_unlearn.metrics import evaluate_unlearning
from hf_unlearn.reporting.headline import DEFINITIONS
from hf_unlearn.tiny import tiny_image_classifier, tiny_unet

GENERATION_KEYS = (
    "forget/generation_accuracy",
    "forget/ua",
    "forget/generation_probability",
    "retain/generation_accuracy",
    "quality/frechet_distance",
)


def _rows(labels: list[int], seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"pixel_values": torch.rand(1, 8, 8, generator=g) * 2 - 1, "label": y} for y in labels]


@pytest.fixture(scope="module")
def task():
    """A 3-class UNet (class 0 forgotten), a golden UNet, a judge, and the forget / retain rows."""
    unet, golden = tiny_unet(num_classes=3, seed=0), tiny_unet(num_classes=3, seed=1)
    for model in (unet, golden):
        configure_unet(model, diffusion_args=DiffusionArguments(eval_seed=5))
    judge = tiny_image_classifier(num_labels=3, image_size=8, seed=0).eval()
    return unet, golden, judge, _rows([0] * 4, 0), _rows([1, 2] * 4, 1)


def test_evaluate_unlearning_gives_the_generation_metrics_of_generation_metrics(task):
    unet, golden, judge, forget, retain = task
    unet.train()  # modes are restored
    golden.eval()
    metrics = evaluate_unlearning(
        unet,
        forget_dataset=forget,
        retain_dataset=retain,
        golden_model=golden,
        judge_model=judge,
        generation_samples=3,
        generation_steps=2,
        batch_size=8,
    )
    assert unet.training and not golden.training
    direct = generation_metrics(
        unet,
        judge,
        forget_classes=[0],  # the forget set's labels
        retain_classes=[1, 2],  # the retain set's other labels
        real_images=torch.stack([r["pixel_values"] for r in retain]),
        num_samples_per_class=3,
        noise_scheduler=diffusion_setup(unet).scheduler,
        num_inference_steps=2,
        seed=5,  # DiffusionArguments.eval_seed
        batch_size=8,
        golden_unet=golden,
    )
    assert set(direct) == {*GENERATION_KEYS, *(f"golden/{k}" for k in GENERATION_KEYS)}
    assert {k: metrics[k] for k in direct} == direct
    assert metrics["forget/ua"] == 1 - metrics["forget/generation_accuracy"]
    assert metrics["quality/frechet_distance"] > 0
    assert "forget/loss" in metrics and "golden/forget/loss" in metrics  # the shared keys are still there
    again = evaluate_unlearning(
        unet, forget_dataset=forget, retain_dataset=retain, judge_model=judge, generation_samples=3,
        generation_steps=2, batch_size=8,
    )  # fmt: skip
    assert {k: again[k] for k in GENERATION_KEYS} == {k: metrics[k] for k in GENERATION_KEYS}  # seeded


def test_the_generation_metrics_follow_the_forget_sets_labels(task):
    unet, _, judge, forget, retain = task
    relabelled = [{**r, "label": 2} for r in forget]
    options = {"judge_model": judge, "generation_samples": 2, "generation_steps": 1, "batch_size": 8}
    metrics = evaluate_unlearning(unet, forget_dataset=relabelled, retain_dataset=retain, **options)
    direct = generation_metrics(
        unet, judge, forget_classes=[2], retain_classes=[1], real_images=torch.stack(
            [r["pixel_values"] for r in retain if r["label"] == 1]), num_samples_per_class=2,
        noise_scheduler=diffusion_setup(unet).scheduler, num_inference_steps=1, seed=5, batch_size=8,
    )  # fmt: skip
    assert {k: metrics[k] for k in direct} == direct


def test_mia_compares_the_forget_images_with_held_out_images_of_their_class(task):
    """``mia/auc``: forget (class 0) vs the test images of class 0 only, on the losses of the whole test set's
    fixed draws (the draw follows the example's position in its dataset)."""
    from hf_unlearn.metrics.evaluation import per_example_losses
    from hf_unlearn.metrics.mia import membership_auc

    unet, golden, _, forget, retain = task
    test = _rows([0, 1, 0, 2, 0, 1, 0, 2], 7)
    metrics = evaluate_unlearning(
        unet,
        forget_dataset=forget,
        retain_dataset=retain,
        test_dataset=test,
        golden_model=golden,
        batch_size=8,
    )
    for prefix, model in (("", unet), ("golden/", golden)):
        f, t = per_example_losses(model, forget), per_example_losses(model, test)
        same_class = t[[i for i, row in enumerate(test) if row["label"] == 0]]
        assert metrics[f"{prefix}mia/auc"] == membership_auc(-f, -same_class)
        assert membership_auc(-f, -same_class) != membership_auc(-f, -t)  # the other classes would change it
    no_class = _rows([1, 2, 1, 2], 8)  # no held-out image of class 0: every test image, as for other kinds
    metrics = evaluate_unlearning(unet, forget_dataset=forget, retain_dataset=retain, test_dataset=no_class)
    f, t = per_example_losses(unet, forget), per_example_losses(unet, no_class)
    assert metrics["mia/auc"] == membership_auc(-f, -t)


def test_without_a_judge_there_are_no_generation_keys_and_the_headline_falls_back(task):
    unet, _, _, forget, retain = task
    metrics = evaluate_unlearning(unet, forget_dataset=forget, retain_dataset=retain, batch_size=8)
    assert not set(GENERATION_KEYS) & set(metrics)
    kind = get_model_kind(unet)
    assert kind.headline()[:3] == ["forget/generation_accuracy", "retain/generation_accuracy",
                                   "quality/frechet_distance"]  # fmt: skip
    assert kind.headline({"m": metrics}, short=True) == ["forget/loss", "retain/loss", "rcd/ratio_to_golden"]
    assert (
        kind.headline({"m": {"forget/generation_accuracy": 0.1}}, short=True)[0]
        == "forget/generation_accuracy"
    )
    assert set(kind.headline()) <= set(DEFINITIONS)
    assert kind.default_rcd_target == "loss"


def test_judge_options_are_refused_where_there_is_no_judged_generation(task):
    unet, _, judge, forget, retain = task
    classifier = tiny_image_classifier(num_labels=3)
    with pytest.raises(ValueError, match="judged generation metrics are for class-conditional diffusion"):
        evaluate_unlearning(classifier, forget_dataset=forget, retain_dataset=retain, judge_model=judge)
    with pytest.raises(ValueError, match="generation_samples needs judge_model"):
        evaluate_unlearning(unet, forget_dataset=forget, retain_dataset=retain, generation_samples=3)


def test_load_model_loads_a_saved_unet_folder_with_its_scheduler_and_arguments(tmp_path, task):
    from diffusers import DDPMScheduler, UNet2DModel

    unet = task[0]
    unet.save_pretrained(tmp_path, safe_serialization=True)
    DDPMScheduler(num_train_timesteps=50, prediction_type="v_prediction").save_pretrained(tmp_path)
    (tmp_path / "diffusion_args.json").write_text(json.dumps({"eval_seed": 7, "max_timestep": 40}))
    loaded = load_model(str(tmp_path))
    assert type(loaded) is UNet2DModel and not loaded.training
    assert get_model_kind(loaded) is get_model_kind(unet)
    for name, value in unet.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    setup = diffusion_setup(loaded)
    assert (
        setup.prediction_type == "v_prediction" and setup.timesteps == (0, 40) and setup.args.eval_seed == 7
    )


def test_load_model_refuses_a_unet_folder_without_safetensors(tmp_path, task):
    task[0].save_pretrained(tmp_path, safe_serialization=False)
    with pytest.raises(ValueError, match="no .safetensors weights"):
        load_model(str(tmp_path))


def test_the_digits_ddpm_quickstart_writes_a_report_and_a_card_per_row(tmp_path, monkeypatch):
    from test_scenarios_digits_ddpm import small_builder

    import hf_unlearn.scenarios as scenarios
    from hf_unlearn.quickstart import quickstart

    builder = small_builder()
    builder.unlearning_defaults = {**builder.unlearning_defaults, "max_steps": 1}
    builder.relearning = {"relearn_learning_rate": 1e-3, "relearn_max_steps": 2}
    monkeypatch.setattr(scenarios, "get_builder", lambda name: builder)
    out = tmp_path / "qs"
    result = quickstart(str(out), scenario="digits-ddpm", methods=["ga"], progress=False)
    folder = out / "ga"
    report = json.loads((folder / "unlearning_report.json").read_text())
    assert (
        report["method"] == "ga" and report["task"] == "diffusion" and report["architecture"] == "UNet2DModel"
    )
    assert report["metrics"]["unlearned"] == result["metrics"]["ga"]
    assert set(report["metrics"]) == {"original", "golden", "unlearned"}
    assert report["relearning"]["unlearned"]["target"] == "loss"
    assert report["forget_fingerprint"]["count"] == report["sizes"]["n_forget"] > 0
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: unconditional-image-generation" in card and "library_name: diffusers" in card
    for grid in ("samples_ga.png", "samples_golden.png", "samples_original.png"):
        assert f"![{grid}]({grid})" in card and (folder / grid).stat().st_size > 0
    assert "forget_generation_accuracy" in card  # the model-index
    assert (
        "| model | forget/generation_accuracy | retain/generation_accuracy | quality/frechet_distance |"
        in card
    )
    assert (folder / "diffusion_pytorch_model.safetensors").exists()
    _the_quickstart_row_is_evaluate_unlearning(result["metrics"]["ga"], str(folder), str(out / "scenarios"))


def _the_quickstart_row_is_evaluate_unlearning(row: dict, folder: str, scenarios: str) -> None:
    """The quickstart's row of a saved model: ``evaluate_unlearning`` with the scenario's judge and the held-out
    images of the forgotten class as its test set; its generation keys those of ``evaluate_generation`` and its
    ``mia/auc`` the attack on forget vs those held-out images (the quickstart's definitions before it went
    through ``evaluate_unlearning``)."""
    from hf_unlearn.metrics.evaluation import per_example_losses
    from hf_unlearn.metrics.mia import membership_auc
    from hf_unlearn.scenarios import load_scenario

    sc = load_scenario("digits-ddpm", scenarios, seed=0, progress=False)
    model, judge = load_model(folder), sc.judge_model()
    heldout = sc.test.select([i for i, y in enumerate(sc.test["label"]) if y in sc.forget_classes])
    metrics = evaluate_unlearning(
        model, forget_dataset=sc.forget, retain_dataset=sc.retain, test_dataset=heldout, judge_model=judge,
        judge_processor=sc.judge_processor(), generation_samples=sc.generation["num_samples_per_class"],
        generation_steps=sc.generation["num_inference_steps"], batch_size=128,
    )  # fmt: skip
    assert {k: row[k] for k in metrics} == {k: round(v, 4) for k, v in metrics.items()}
    generation = sc.evaluate_generation(model, judge=judge)
    assert {k: row[k] for k in generation} == {k: round(v, 4) for k, v in generation.items()}
    forget, held = per_example_losses(model, sc.forget), per_example_losses(model, heldout)
    assert row["mia/auc"] == round(membership_auc(-forget, -held), 4)


def test_hf_unlearn_eval_on_a_saved_unet_folder_with_a_judge(tmp_path, task, capsys):
    from hf_unlearn.cli import main

    unet, golden, judge, forget, retain = task
    for name, model in (("model", unet), ("golden", golden), ("judge", judge)):
        model.save_pretrained(tmp_path / name, safe_serialization=True)
    for name, rows in (("forget", forget), ("retain", retain)):
        lines = [json.dumps({"pixel_values": r["pixel_values"].tolist(), "label": r["label"]}) for r in rows]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines))
    argv = ["eval", "--model", str(tmp_path / "model"), "--golden", str(tmp_path / "golden"), "--forget_dataset",
            str(tmp_path / "forget.jsonl"), "--retain_dataset", str(tmp_path / "retain.jsonl"), "--no_relearn",
            "--judge", str(tmp_path / "judge"), "--generation_samples", "2", "--output", str(tmp_path / "m.json")]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= metrics["forget/generation_accuracy"] <= 1 and metrics["forget/ua"] == 1 - metrics[
        "forget/generation_accuracy"]  # fmt: skip
    assert "golden/retain/generation_accuracy" in metrics and metrics["quality/frechet_distance"] > 0
    assert metrics["forget/loss"] > 0


def test_a_judge_without_the_unets_null_class_scores_the_real_classes_and_refuses_the_null_one():
    """A UNet with 4 class embeddings (classes 0-2 and the null class 3, as digits-ddpm's 11 for 10 digits) and a
    judge over the 3 real classes: the metrics sample the data's classes only, the null class is not a class of
    the rows, and generating it for the judge is refused with a clear error."""
    from hf_unlearn.metrics import RelearnConfig, relearning_convergence_delay

    unet = tiny_unet(num_classes=4, seed=0)
    configure_unet(unet, diffusion_args=DiffusionArguments(null_class=3, eval_seed=5))
    assert diffusion_setup(unet).classes == (0, 1, 2)
    judge = tiny_image_classifier(num_labels=3, image_size=8, seed=0).eval()
    forget, retain = _rows([0] * 4, 0), _rows([1, 2] * 4, 1)
    options = {"judge_model": judge, "generation_samples": 3, "generation_steps": 2, "batch_size": 8}
    metrics = evaluate_unlearning(unet, forget_dataset=forget, retain_dataset=retain, **options)
    direct = generation_metrics(
        unet, judge, forget_classes=[0], retain_classes=[1, 2], real_images=torch.stack(
            [r["pixel_values"] for r in retain]), num_samples_per_class=3,
        noise_scheduler=diffusion_setup(unet).scheduler, num_inference_steps=2, seed=5, batch_size=8,
    )  # fmt: skip
    assert {k: metrics[k] for k in GENERATION_KEYS} == {k: direct[k] for k in GENERATION_KEYS}
    assert all(0 <= metrics[k] <= 1 for k in GENERATION_KEYS if "frechet" not in k)
    with pytest.raises(ValueError, match="label 3 is not one of the UNet's classes"):
        evaluate_unlearning(unet, forget_dataset=_rows([3], 0), retain_dataset=retain, **options)
    with pytest.raises(ValueError, match="judge scores 3 classes but samples were generated under class 3"):
        generation_metrics(unet, judge, forget_classes=[0], retain_classes=[1, 2, 3], num_samples_per_class=1,
                           num_inference_steps=1)  # fmt: skip
    config = RelearnConfig(max_steps=1, batch_size=4, target="generation_accuracy", generation_samples=2,
                           generation_steps=1, progress_bar=False)  # fmt: skip
    result = relearning_convergence_delay(unet, forget, original_model=unet, config=config, judge_model=judge)
    assert result.steps == 0 and 0 <= result.reference["generation_accuracy"] <= 1
