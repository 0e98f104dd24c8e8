"""The diffusion package's core (``hf_unlearn.diffusion``): a tiny class-conditional ``UNet2DModel`` on scikit-learn's
handwritten digits 0-2 (8x8, grey) trained through the model-kind seam by every registered method that supports it,
full and LoRA; exact resume; evaluation draws fixed per example; RCD with the loss target; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_config, state_copy
from diffusers import DDPMScheduler, UNet2DModel  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from hf_unlearn.diffusion import (  # noqa: E402
    ClassConditionalUNetKind,
    DiffusionArguments,
    DiffusionUnlearningTrainer,
)
from hf_unlearn.kinds import kind_for_task  # noqa: E402
from hf_unlearn.kinds.base import ForwardContext  # noqa: E402
from hf_unlearn.methods import METHODS, get_method  # noqa: E402

KIND = ClassConditionalUNetKind()
DIFFUSION_METHODS = sorted(name for name, method in METHODS.items() if method.supports(KIND))
LORA_TARGETS = KIND.lora_defaults()["target_modules"]


def tiny_unet(seed: int = 0, num_class_embeds: int | None = 3) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        norm_num_groups=8,
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        num_class_embeds=num_class_embeds,
    )


@pytest.fixture(scope="module")
def digits():
    """``(forget, retain)``: digits 0 to forget, 1 and 2 to keep, as ``{"image" uint8 [8, 8], "label"}``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rows = [
        {"image": (x.reshape(8, 8) * 15.9).astype(np.uint8), "label": int(y)}
        for x, y in zip(data.data, data.target)
        if y < 3
    ]
    return [r for r in rows if r["label"] == 0][:12], [r for r in rows if r["label"] != 0][:24]


def trainer_for(tmp_path, digits, method="grad_diff", unet=None, diffusion_args=None, **kwargs):
    forget, retain = digits
    peft_config = kwargs.pop("peft_config", None)
    config = make_config(tmp_path, method=method, **{"learning_rate": 1e-3, "max_steps": 2, **kwargs})
    return DiffusionUnlearningTrainer(
        unet if unet is not None else tiny_unet(),
        config,
        forget_dataset=forget,
        retain_dataset=retain,
        noise_scheduler=DDPMScheduler(num_train_timesteps=100),
        diffusion_args=diffusion_args,
        peft_config=peft_config,
    )


def test_the_registry_runs_the_loss_methods_and_the_diffusion_ones_and_refuses_dr(tmp_path):
    assert {"ft", "ga", "grad_diff", "ieu", "npo", "rl", "salun", "esd"} <= set(DIFFUSION_METHODS)
    assert "dr" not in DIFFUSION_METHODS and "undial" not in DIFFUSION_METHODS
    with pytest.raises(ValueError, match="'dr' is defined for .* not diffusion \\(it needs logits\\)"):
        get_method("dr")(make_config(tmp_path, method="dr"), KIND)
    for task in ("classification", "causal_lm"):  # esd needs guidance: diffusion kinds only
        assert not get_method("esd").supports(kind_for_task(task))


def test_lora_on_the_unet_trains_the_adapters_of_the_attention_projections(tmp_path, digits):
    """The kind's LoRA defaults (the every-method x {full, LoRA} matrix of test_trainer.py runs the UNet too)."""
    from peft import LoraConfig

    trainer = trainer_for(
        tmp_path, digits, "grad_diff", peft_config=LoraConfig(r=4, lora_alpha=8, **KIND.lora_defaults())
    )
    assert isinstance(trainer.kind, ClassConditionalUNetKind) and trainer.task == "diffusion"
    trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    assert all(any(f".{target}.lora_A." in n for n in trained) for target in LORA_TARGETS)
    start = state_copy(trainer.model)
    trainer.train()
    after = trainer.model.state_dict()
    assert any(not torch.equal(start[k], after[k]) for k in start), "no weight changed"


def test_evaluation_losses_are_fixed_per_example(tmp_path, digits):
    trainer = trainer_for(tmp_path, digits)
    forget = digits[0]
    first = trainer.per_example_losses(forget)
    assert torch.equal(first, trainer.per_example_losses(forget))
    assert torch.equal(first, trainer.per_example_losses(forget, batch_size=5))  # whatever the batching
    assert first.shape == (12,) and bool((first > 0).all())
    again = trainer_for(tmp_path, digits, diffusion_args=DiffusionArguments(eval_seed=1))
    assert not torch.equal(first, again.per_example_losses(forget))  # the draw is the eval seed's


def test_training_draws_follow_seed_step_and_part_and_the_frozen_pass_sees_the_same_noise(tmp_path, digits):
    trainer = trainer_for(tmp_path, digits)
    batch = trainer.data_collator(trainer.forget_rows[:4])
    model = trainer.model.eval()
    both = {k: torch.cat([v, v]) for k, v in batch.items()}
    context = ForwardContext(seed=0, step=3, parts=(("retain", 4), ("forget", 4)))
    with torch.no_grad():
        step3, _ = KIND.training_forward(model, both, context)
        again, _ = KIND.training_forward(model, both, context)
        step4, _ = KIND.training_forward(model, both, ForwardContext(0, 4, context.parts))
        frozen, _ = KIND.training_forward(model, batch, ForwardContext(0, 3, (("forget", 4),), frozen=True))
    assert torch.equal(step3.noisy, again.noisy) and torch.equal(step3.prediction, again.prediction)
    assert not torch.equal(step3.noisy, step4.noisy)
    retain_part, forget_part = step3.split([4, 4])
    assert not torch.equal(retain_part.noisy, forget_part.noisy)  # same rows, another part: another draw
    assert torch.equal(frozen.noisy, forget_part.noisy) and frozen.unconditional is not None


def test_the_unconditional_prediction_is_the_null_class_or_the_mean_over_classes(tmp_path, digits):
    unet = tiny_unet(num_class_embeds=4)
    trainer = trainer_for(tmp_path, digits, "esd", unet=unet, diffusion_args=DiffusionArguments(null_class=3))
    batch = trainer.data_collator(trainer.forget_rows[:3])
    with torch.no_grad():
        pred, _ = KIND.forward(unet, batch)
        null = unet(pred.noisy, pred.timesteps, class_labels=torch.full((3,), 3)).sample
        assert torch.allclose(KIND.unconditional(unet, pred), null)
        mean_trainer = trainer_for(tmp_path, digits, "esd", unet=tiny_unet())
        unet3 = mean_trainer.model
        pred, _ = KIND.forward(unet3, batch)
        each = [unet3(pred.noisy, pred.timesteps, class_labels=torch.full((3,), c)).sample for c in range(3)]
        assert torch.allclose(KIND.unconditional(unet3, pred), torch.stack(each).mean(0), atol=1e-6)
    assert trainer.diffusion.classes == (0, 1, 2) and mean_trainer.diffusion.classes == (0, 1, 2)


class _StopAfter(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


@pytest.mark.parametrize("method", ["rl", "esd"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, digits, method):
    common = dict(max_steps=4, save_strategy="steps", save_steps=2)
    full = trainer_for(tmp_path / "full", digits, method, **common)
    full.train()
    stopped = trainer_for(tmp_path / "part", digits, method, **common)
    stopped.add_callback(_StopAfter(2))  # the first half, checkpointed at step 2 ...
    stopped.train()
    checkpoint = tmp_path / "part" / "out" / "checkpoint-2"
    assert stopped.state.global_step == 2 and (checkpoint / "diffusion_pytorch_model.safetensors").is_file()
    resumed = trainer_for(tmp_path / "part", digits, method, **common)  # ... then a fresh trainer resumes
    resumed.train(resume_from_checkpoint=str(checkpoint))
    expected, got = full.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
    assert not torch.equal(expected["conv_in.weight"], tiny_unet().state_dict()["conv_in.weight"])


def test_the_ascent_cap_is_the_starting_forget_loss_plus_the_margin_times_one(tmp_path, digits):
    trainer = trainer_for(tmp_path, digits, "grad_diff")
    start = trainer.per_example_losses(trainer.forget_rows)
    trainer.train()
    assert KIND.loss_scale(trainer.model) == 1.0
    assert trainer.method.forget_loss_cap == pytest.approx(float(start.mean()) + 1.0, rel=1e-5)


def test_save_model_writes_a_diffusers_folder(tmp_path, digits):
    trainer = trainer_for(tmp_path, digits, "ga")
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    loaded = UNet2DModel.from_pretrained(str(tmp_path / "saved"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in trainer.model.state_dict().items())
    assert DDPMScheduler.from_pretrained(str(tmp_path / "saved")).config.num_train_timesteps == 100
    assert (tmp_path / "saved" / "diffusion_args.json").is_file()
    assert not list((tmp_path / "saved").glob("*.bin"))


def test_rcd_runs_on_the_unet_with_the_loss_target(tmp_path, digits):
    import copy

    from hf_unlearn.metrics import RelearnConfig, relearning_convergence_delay

    trainer = trainer_for(tmp_path, digits, "ga", max_steps=3, learning_rate=5e-3)
    original = copy.deepcopy(trainer.model)
    trainer.train()
    config = RelearnConfig(learning_rate=5e-3, max_steps=6, batch_size=4, progress_bar=False)
    result = relearning_convergence_delay(trainer.model, digits[0], original_model=original, config=config)
    assert result.target == "loss" and result.curve[0]["loss"] > result.threshold


def test_clear_errors_for_a_unet_without_classes_and_for_wrong_rows(tmp_path, digits):
    with pytest.raises(ValueError, match="num_class_embeds"):
        trainer_for(tmp_path, digits, unet=tiny_unet(num_class_embeds=None))
    config = make_config(tmp_path, method="ga")
    forget, retain = digits
    cases = [
        ([{"text": "a", "label": 0}], "needs \\{'image', 'label'\\}"),
        ([{"image": forget[0]["image"], "label": 7}], "label 7 is not one of the UNet's classes"),
        ([{"image": forget[0]["image"].astype(np.float32), "label": 0}], "integer array of pixel values"),
        ([{"image": forget[0]["image"].astype(np.int64) + 300, "label": 0}], "integer array of pixel values"),
        ([{"pixel_values": np.zeros((2, 8, 8)), "label": 0}], "2 channels"),
    ]
    for rows, message in cases:
        with pytest.raises(ValueError, match=message):
            DiffusionUnlearningTrainer(tiny_unet(), config, forget_dataset=rows, retain_dataset=retain)


def test_images_of_any_size_and_mode_become_unet_sized_pixels_in_minus_one_to_one(tmp_path, digits):
    from PIL import Image

    trainer = trainer_for(tmp_path, digits)
    rgb = Image.fromarray(np.full((20, 12, 3), 255, dtype=np.uint8))
    grey = Image.fromarray(np.zeros((8, 8), dtype=np.uint8))
    rows = trainer.preparer([{"image": rgb, "label": 1}, {"image": grey, "label": 2}], "data")
    assert [tuple(r["pixel_values"].shape) for r in rows] == [(1, 8, 8), (1, 8, 8)]
    assert torch.allclose(rows[0]["pixel_values"], torch.ones(1, 8, 8), atol=1e-5)
    assert torch.equal(rows[1]["pixel_values"], -torch.ones(1, 8, 8))


def test_import_hf_unlearn_leaves_diffusers_alone_and_a_diffusers_model_finds_its_kind():
    import subprocess
    import sys

    from conftest import worker_env

    code = (
        "import sys, hf_unlearn\n"
        "assert 'diffusers' not in sys.modules and 'hf_unlearn.diffusion' not in sys.modules\n"
        "from diffusers import UNet2DModel\n"
        "from hf_unlearn.kinds import get_model_kind\n"
        "unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), "
        "norm_num_groups=8, num_class_embeds=3, down_block_types=('DownBlock2D', 'DownBlock2D'), "
        "up_block_types=('UpBlock2D', 'UpBlock2D'))\n"
        "print(type(get_model_kind(unet)).__name__, get_model_kind(unet).card_metadata())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=worker_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ClassConditionalUNetKind" in done.stdout and "'library_name': 'diffusers'" in done.stdout


def test_held_out_stopping_runs_on_the_unet(tmp_path, digits):
    """The held-out rule compares the forget set's denoising losses with unseen images of the same class."""
    from sklearn.datasets import load_digits

    data = load_digits()
    zeros = [(x.reshape(8, 8) * 15.9).astype(np.uint8) for x, y in zip(data.data, data.target) if y == 0]
    heldout = [{"image": image, "label": 0} for image in zeros[12:20]]  # digits[0] holds the first 12
    forget, retain = digits
    config = make_config(tmp_path, method="grad_diff", learning_rate=1e-3, max_steps=4, stopping="heldout")
    config.stopping_eval_steps = 2
    trainer = DiffusionUnlearningTrainer(
        tiny_unet(), config, forget_dataset=forget, retain_dataset=retain, eval_dataset=heldout
    )
    trainer.train()
    history = trainer.stopping.record.history
    assert [entry["step"] for entry in history][0] == 0 and len(history) >= 2


def test_evaluate_unlearning_measures_a_unet_through_its_kind(digits):
    """The denoising losses per split, the loss attack and the KS forget quality against golden, fixed per example
    (two calls give the same numbers): ``evaluate_unlearning`` goes through the kind's batch statistics."""
    from hf_unlearn.metrics import evaluate_unlearning

    forget, retain = digits
    model, golden = tiny_unet(seed=0), tiny_unet(seed=1)
    first = evaluate_unlearning(model, forget_dataset=forget, retain_dataset=retain, test_dataset=retain[:12],
                                golden_model=golden)  # fmt: skip
    again = evaluate_unlearning(model, forget_dataset=forget, retain_dataset=retain, test_dataset=retain[:12],
                                golden_model=golden)  # fmt: skip
    assert first == again
    for key in ("forget/loss", "retain/loss", "test/loss", "mia/auc", "golden/forget/loss",
                "forget_quality/ks_pvalue", "distance/l2_to_golden"):  # fmt: skip
        assert key in first and np.isfinite(first[key]), key
    assert first["forget/loss"] != first["golden/forget/loss"]
    assert "forget/accuracy" not in first and "forget/kl_to_golden" not in first  # no classes, no logits


def test_sequential_requests_train_the_unet_with_its_kinds_trainer(tmp_path, digits):
    """``unlearn_sequentially`` builds the kind's trainer (``DiffusionUnlearningTrainer``) and passes its arguments:
    the given scheduler's timesteps and ``DiffusionArguments`` reach every request, and the weights change."""
    from hf_unlearn.diffusion import DiffusionArguments
    from hf_unlearn.diffusion.args import diffusion_setup
    from hf_unlearn.pipeline import unlearn_sequentially

    forget, retain = digits
    unet = tiny_unet()
    before = state_copy(unet)
    scheduler = DDPMScheduler(num_train_timesteps=50)
    args = DiffusionArguments(eval_seed=7)
    config = make_config(tmp_path, method="grad_diff", learning_rate=1e-3, max_steps=2)
    result = unlearn_sequentially(
        unet, config, [forget[:6], forget[6:]], retain, evaluate=False,
        trainer_kwargs={"noise_scheduler": scheduler, "diffusion_args": args},
    )  # fmt: skip
    assert result.steps == [2, 2]
    setup = diffusion_setup(result.model)
    assert setup.scheduler.config.num_train_timesteps == 50 and setup.args.eval_seed == 7
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())
