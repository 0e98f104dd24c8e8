"""RCD on a class-conditional UNet with ``target="generation_accuracy"``: a judge classifier scores samples of the
forgotten class at every evaluation; recovered at ``>= (1 - alpha)`` x the original's generation accuracy."""

import copy
from types import SimpleNamespace

import pytest
import torch

from hf_unlearn.diffusion import DiffusionArguments, configure_unet
from hf_unlearn.metrics import RelearnConfig, relearning_convergence_delay
from hf_unlearn.tiny import tiny_image_classifier, tiny_unet


class ScriptedJudge(torch.nn.Module):
    """A judge whose ``n``-th call assigns ``shares[n]`` of the images to the forgotten class 0 (the rest to 1)."""

    def __init__(self, shares: list[float], num_labels: int = 3):
        super().__init__()
        self.config = SimpleNamespace(num_labels=num_labels)
        self.head = torch.nn.Linear(2, num_labels)  # judge_images reads the head's input as the features
        self.shares, self.calls = list(shares), 0

    def forward(self, pixel_values):
        n = len(pixel_values)
        hits = round(self.shares[self.calls] * n)
        self.calls += 1
        self.head(torch.zeros(n, 2))
        logits = torch.zeros(n, self.config.num_labels)
        logits[:hits, 0], logits[hits:, 1] = 1.0, 1.0
        return SimpleNamespace(logits=logits)


def _rows(labels: list[int], seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"pixel_values": torch.rand(1, 8, 8, generator=g) * 2 - 1, "label": y} for y in labels]


def _unet(seed: int):
    unet = tiny_unet(num_classes=3, seed=seed)
    configure_unet(unet, diffusion_args=DiffusionArguments(eval_seed=3))
    return unet


def _config(**changes) -> RelearnConfig:
    settings = dict(
        learning_rate=1e-3,
        max_steps=6,
        batch_size=4,
        target="generation_accuracy",
        generation_samples=4,
        generation_steps=1,
        progress_bar=False,
    )
    return RelearnConfig(**{**settings, **changes})


FORGET = _rows([0] * 4, 0)


def test_steps_are_the_first_evaluation_whose_judged_accuracy_meets_the_target():
    # calls: the original (the reference, 1.0), then the model at steps 0, 1, 2, 3
    judge = ScriptedJudge([1.0, 0.0, 0.25, 0.5, 1.0, 1.0])
    model, original = _unet(1), _unet(0)
    result = relearning_convergence_delay(
        model, FORGET, original_model=original, config=_config(), judge_model=judge
    )
    assert result.target == "generation_accuracy" and result.reference["generation_accuracy"] == 1.0
    assert result.threshold == pytest.approx(0.9)  # (1 - alpha) x the original's, alpha = 0.1
    assert [row["generation_accuracy"] for row in result.curve] == [0.0, 0.25, 0.5, 1.0]
    assert result.steps == 3 and result.recovered and judge.calls == 5


def test_refinement_evaluates_the_kept_weights_with_the_judge():
    # eval_every=2: step 0, step 2 (met), then the kept weights of step 1 (met too): steps = 1
    judge = ScriptedJudge([0.5, 0.0, 0.5, 0.5])
    result = relearning_convergence_delay(
        _unet(1), FORGET, original_model=_unet(0), config=_config(eval_every=2), judge_model=judge
    )
    assert result.threshold == pytest.approx(0.45)
    assert [row["step"] for row in result.curve] == [0, 1] and result.steps == 1


def test_the_golden_model_against_itself_has_ratio_one_with_a_real_judge():
    """The samples come from the same noise at every evaluation: relearning golden twice with the same protocol
    gives the same curve, so its ratio to itself is 1."""
    judge = tiny_image_classifier(num_labels=3, image_size=8, seed=0).eval()
    golden, original = _unet(1), _unet(0)
    before = copy.deepcopy(golden.state_dict())
    result = relearning_convergence_delay(
        golden, FORGET, original_model=original, golden_model=golden, config=_config(), judge_model=judge
    )
    assert result.ratio_to_golden == 1.0 and result.curve == result.golden.curve
    assert all(0 <= row["generation_accuracy"] <= 1 for row in result.curve)
    assert all(torch.equal(before[k], v) for k, v in golden.state_dict().items())  # a copy was relearned


def test_clear_errors_without_a_judge_and_for_kinds_without_the_target():
    with pytest.raises(ValueError, match="needs judge_model"):
        relearning_convergence_delay(_unet(1), FORGET, original_model=_unet(0), config=_config())
    with pytest.raises(
        ValueError, match="judge_model / judge_processor are for target='generation_accuracy'"
    ):
        relearning_convergence_delay(
            _unet(1),
            FORGET,
            original_model=_unet(0),
            config=_config(target="loss"),
            judge_model=ScriptedJudge([1]),
        )
    classifier = tiny_image_classifier(num_labels=3, image_size=8, seed=0)
    rows = [{"pixel_values": torch.rand(1, 8, 8), "label": 0}]
    with pytest.raises(ValueError, match="not available for"):
        relearning_convergence_delay(classifier, rows, original_model=classifier, config=_config())
    with pytest.raises(ValueError, match="target must be one of"):
        RelearnConfig(target="fid")
