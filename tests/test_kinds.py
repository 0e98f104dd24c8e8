"""The model-kind seam (``hf_unlearn.kinds``): the built-in kinds, and a new kind added from this file alone.

``ToyRegressorKind`` below is a kind the library has never heard of: a linear regressor (a plain ``nn.Module``)
on ``{"x": [...], "y": float}`` rows with a squared-error per-example loss. It is registered here, and the
methods that need only per-example losses train it through ``UnlearningTrainer`` with no library file edited.
"""

from __future__ import annotations

import pytest
import torch
from conftest import make_config

from hf_unlearn import UnlearningTrainer
from hf_unlearn.kinds import (
    CausalLMKind,
    ImageClassifierKind,
    ModelKind,
    TextClassifierKind,
    get_model_kind,
    kind_for_task,
    register_model_kind,
    unregister_model_kind,
)
from hf_unlearn.methods import METHODS, get_method


# -- the toy kind: everything it needs lives in this file -------------------------------------------------
class ToyRegressor(torch.nn.Module):
    def __init__(self, features: int = 3):
        super().__init__()
        self.linear = torch.nn.Linear(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class ToyPreparer:
    task = "regression"

    def __call__(self, data, name: str, with_wrong_labels: bool = False) -> list[dict]:
        rows = data.to_list() if hasattr(data, "to_list") else list(data)
        return [
            {"x": [float(v) for v in row["x"]], "labels": float(row["y"]), "index": i}
            for i, row in enumerate(rows)
        ]


class ToyCollator:
    def __call__(self, items: list[dict]) -> dict:
        if "retain" in items[0]:
            return {part: self([item[part] for item in items]) for part in ("retain", "forget")}
        return {
            "x": torch.tensor([row["x"] for row in items]),
            "labels": torch.tensor([row["labels"] for row in items]),
            "index": torch.tensor([row["index"] for row in items]),
        }


class ToyRegressorKind(ModelKind):
    name = "toy_regressor"
    task = "regression"
    input_keys = ("x",)

    def recognises(self, model):
        return isinstance(model, ToyRegressor)

    def build_preparer(self, model, tokenizer=None, max_length=None, seed=0):
        return ToyPreparer(), ToyCollator()

    def forward(self, model, batch, **kwargs):
        predictions = model(**self.model_inputs(batch))
        return predictions, None

    def loss_of(self, predictions, labels):
        return (predictions.float() - labels.float()) ** 2


@pytest.fixture
def toy_kind():
    register_model_kind(ToyRegressorKind)
    yield
    unregister_model_kind(ToyRegressorKind.name)


def toy_rows(n: int, seed: int, shift: float = 0.0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + shift
    return [{"x": xi.tolist(), "y": float(yi)} for xi, yi in zip(x, y)]


@pytest.mark.parametrize("method", ["ft", "ga", "grad_diff", "ieu"])
def test_a_kind_registered_in_a_test_file_trains_the_per_example_loss_methods(tmp_path, toy_kind, method):
    torch.manual_seed(0)
    model = ToyRegressor()
    forget = toy_rows(8, seed=1, shift=3.0)  # a different target: the forget set's loss is high
    retain = toy_rows(32, seed=2)
    config = make_config(tmp_path, method=method, learning_rate=0.05, max_steps=4)
    trainer = UnlearningTrainer(model, config, forget_dataset=forget, retain_dataset=retain)
    assert isinstance(trainer.kind, ToyRegressorKind) and trainer.task == "regression"
    before = trainer.per_example_losses(forget)  # raw rows, prepared like the training data
    assert before.shape == (8,) and torch.equal(before, trainer.per_example_losses(trainer.forget_rows))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    assert not torch.equal(start["linear.weight"], model.linear.weight.detach())
    assert not torch.equal(before, trainer.per_example_losses(forget))
    logged = [entry for entry in trainer.state.log_history if "forget_loss" in entry]
    assert len(logged) == 4
    for entry in logged:  # the step loss is the retain loss (ft), or has the ascent term: below it
        assert (
            entry["loss"] == pytest.approx(entry["retain_loss"], rel=1e-4)
            if method == "ft"
            else (entry["loss"] < entry["retain_loss"])
        )
    if method != "ft":  # the ascent cap's default: starting mean forget loss + margin x the kind's scale (1)
        expected = float(before.mean()) + config.forget_loss_cap_margin * 1.0
        assert trainer.method.forget_loss_cap == pytest.approx(expected, rel=1e-5)


def test_the_toy_kind_gets_held_out_stopping_and_per_example_losses(tmp_path, toy_kind):
    torch.manual_seed(0)
    model = ToyRegressor()
    config = make_config(tmp_path, method="grad_diff", learning_rate=0.05, max_steps=4, stopping="heldout")
    config.stopping_eval_steps = 2
    trainer = UnlearningTrainer(
        model,
        config,
        forget_dataset=toy_rows(8, seed=1, shift=3.0),
        retain_dataset=toy_rows(32, seed=2),
        eval_dataset=toy_rows(8, seed=3),
    )
    trainer.train()
    assert [entry["step"] for entry in trainer.stopping.record.history][0] == 0


def test_rcd_runs_on_the_toy_kind_with_the_loss_as_its_target(toy_kind):
    """Relearning convergence delay: the kind prepares, batches and scores the forget set; without accuracy
    (no classes) the recovery target is the loss."""
    import copy

    from hf_unlearn.metrics import RelearnConfig, relearning_convergence_delay

    torch.manual_seed(0)
    original = ToyRegressor()
    unlearned = copy.deepcopy(original)
    with torch.no_grad():
        unlearned.linear.bias += 5.0  # far from the original on the forget set
    config = RelearnConfig(learning_rate=0.05, max_steps=20, batch_size=4, progress_bar=False)
    result = relearning_convergence_delay(
        unlearned, toy_rows(8, seed=1), original_model=original, config=config
    )
    assert result.target == "loss" and result.steps > 0
    assert result.curve[0]["loss"] > result.curve[-1]["loss"]


def test_methods_that_need_more_than_per_example_losses_refuse_the_toy_kind(tmp_path, toy_kind):
    kind = ToyRegressorKind()
    runs = sorted(name for name, method in METHODS.items() if method.supports(kind))
    assert {"ft", "ga", "grad_diff", "ieu", "npo", "simnpo"} <= set(runs)
    with pytest.raises(
        ValueError, match="'rl' is defined for .* not regression \\(it needs wrong_targets\\)"
    ):
        get_method("rl")(make_config(tmp_path, method="rl"), kind)


def test_built_in_kinds_are_recognised_by_the_registry_and_carry_their_card_metadata():
    from hf_unlearn.tiny import tiny_image_classifier

    image = get_model_kind(tiny_image_classifier("resnet"))
    assert isinstance(image, ImageClassifierKind) and image.task == "classification" and image.has_classes
    assert image.card_metadata() == {"pipeline_tag": "image-classification", "library_name": "transformers"}
    assert image.card_metadata(adapter=True)["library_name"] == "peft"
    assert image.lora_defaults() == {"modules_to_save": ["classifier"]}
    assert isinstance(kind_for_task("classification"), TextClassifierKind)
    assert isinstance(kind_for_task("classification", "ViTForImageClassification"), ImageClassifierKind)
    lm = kind_for_task("causal_lm")
    assert (
        isinstance(lm, CausalLMKind) and lm.token_level and lm.lora_defaults() == {"task_type": "CAUSAL_LM"}
    )


def test_an_image_classifier_card_is_tagged_image_classification():
    from hf_unlearn.reporting.card import build_model_card

    card = build_model_card(
        {"task": "classification", "architecture": "ResNetForImageClassification", "method": "rl"}
    )
    assert card.data.pipeline_tag == "image-classification" and card.data.library_name == "transformers"


def test_the_metrics_modules_import_no_cycle():
    """``metrics.evaluation`` imports ``generative`` and ``muse``; neither imports it back."""
    import ast
    from pathlib import Path

    import hf_unlearn.metrics as metrics

    folder = Path(metrics.__file__).parent
    for name in ("generative", "muse", "_stats"):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module is not None
        }
        assert "evaluation" not in imported, name


def test_every_registered_kind_has_test_models_in_the_method_matrices():
    """The every-method x every-kind tests (test_trainer, test_trainer_resume, test_data_chat) are built from
    the registries through conftest.KIND_TEST_MODELS: a kind registered without test models would escape them."""
    from conftest import KIND_TEST_MODELS, method_kind_matrix

    import hf_unlearn.diffusion  # noqa: F401 (registers the diffusion kinds)
    from hf_unlearn.kinds import model_kinds

    # every kind but the toys of this file and the stand-in that hands diffusers models to hf_unlearn.diffusion
    built_in = {kind.name for kind in model_kinds() if kind.task and not kind.name.startswith("toy")}
    assert built_in <= set(KIND_TEST_MODELS), built_in - set(KIND_TEST_MODELS)
    covered = {model for _, model in method_kind_matrix()}
    assert covered == {model for models in KIND_TEST_MODELS.values() for model in models}
    assert {m for m, _ in method_kind_matrix()} == set(METHODS)  # every method runs on some kind


def test_a_report_of_an_optional_kind_finds_its_kind_in_a_fresh_process():
    """A diffusion run's report (task "diffusion") can be turned into a card where hf_unlearn.diffusion was
    never imported: the task imports the package that registers its kinds."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom hf_unlearn.kinds import kind_for_task\n"
        "assert 'hf_unlearn.diffusion' not in sys.modules\n"
        "print(kind_for_task('diffusion', 'UNet2DModel').name)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "class_conditional_unet"
