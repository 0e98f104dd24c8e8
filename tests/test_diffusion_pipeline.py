"""Text-to-image pipelines in ``hf_unlearn.diffusion``: a tiny ``StableDiffusionPipeline`` built from config, saved
to a folder and loaded with ``from_pretrained``; every registered method that supports its UNet's kind trains
(full and LoRA) with the VAE and text encoder frozen; latents and prompt embeddings cached once; exact resume;
evaluation draws fixed per example; the unconditional branch and the anchor prompt; save and reload. (Erasure outcomes need a trained original: the tiny pipeline is untrained.)"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_config, state_copy
from diffusers import StableDiffusionPipeline
from transformers import TrainerCallback

from hf_unlearn import UnlearningTrainer
from hf_unlearn.diffusion import DiffusionArguments, DiffusionUnlearningTrainer, TextConditionedUNetKind
from hf_unlearn.kinds import get_model_kind
from hf_unlearn.kinds.base import ForwardContext
from hf_unlearn.methods import METHODS
from hf_unlearn.testing.tiny_pipeline import concept_task, save_tiny_sd_pipeline

KIND = TextConditionedUNetKind()
PIPELINE_METHODS = sorted(name for name, method in METHODS.items() if method.supports(KIND))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_sd_pipeline(str(tmp_path_factory.mktemp("tiny-sd")))


@pytest.fixture(scope="module")
def task():
    return concept_task()


def load(folder) -> StableDiffusionPipeline:
    return StableDiffusionPipeline.from_pretrained(folder)


def trainer_for(tmp_path, folder, task, method="grad_diff", pipe=None, diffusion_args=None, **kwargs):
    peft_config = kwargs.pop("peft_config", None)
    config = make_config(tmp_path, method=method, **{"learning_rate": 1e-3, "max_steps": 2, **kwargs})
    return DiffusionUnlearningTrainer(
        pipe if pipe is not None else load(folder),
        config,
        forget_dataset=task.forget,
        retain_dataset=task.retain,
        diffusion_args=diffusion_args,
        peft_config=peft_config,
    )


def test_the_kind_serves_the_pipeline_unet_and_the_registry_gives_its_methods(folder):
    pipe = load(folder)
    assert type(get_model_kind(pipe.unet)).__name__ == "TextConditionedUNetKind"
    assert KIND.card_metadata() == {"pipeline_tag": "text-to-image", "library_name": "diffusers"}
    assert {"ft", "ga", "grad_diff", "ieu", "npo", "esd", "rl", "salun"} <= set(PIPELINE_METHODS)
    assert "dr" not in PIPELINE_METHODS and "undial" not in PIPELINE_METHODS


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("method", PIPELINE_METHODS)
def test_every_method_trains_the_unet_and_leaves_the_vae_and_text_encoder_alone(
    tmp_path, folder, task, method, use_lora
):
    from peft import LoraConfig

    pipe = load(folder)
    vae, text_encoder = state_copy(pipe.vae), state_copy(pipe.text_encoder)
    lora = LoraConfig(r=4, lora_alpha=8, **KIND.lora_defaults()) if use_lora else None
    trainer = trainer_for(tmp_path, folder, task, method, pipe=pipe, peft_config=lora, learning_rate=1e-2)
    trained = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained and (not use_lora or all("lora_" in n for n in trained))
    trainer.train()
    steps = [row for row in trainer.state.log_history if "loss" in row]
    assert len(steps) == 2 and all(math.isfinite(row["loss"]) for row in steps)
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(trained[n], after[n]) for n in trained), "no trainable weight changed"
    for module, start in ((pipe.vae, vae), (pipe.text_encoder, text_encoder)):
        assert all(torch.equal(start[k], v) for k, v in module.state_dict().items())
        assert not any(p.requires_grad for p in module.parameters())


def test_latents_and_prompt_embeddings_are_computed_once_before_training(tmp_path, folder, task):
    pipe = load(folder)
    calls = {"vae": 0, "text": 0}
    pipe.vae.encoder.register_forward_hook(lambda *a: calls.__setitem__("vae", calls["vae"] + 1))
    pipe.text_encoder.register_forward_hook(lambda *a: calls.__setitem__("text", calls["text"] + 1))
    trainer = trainer_for(tmp_path, folder, task, "esd", pipe=pipe, max_steps=3)
    before = dict(calls)
    trainer.train()
    assert calls == before and before["vae"] >= 1 and before["text"] >= 1  # nothing encoded in training
    forget, retain = trainer.forget_rows, trainer.retain_rows
    assert forget[0]["encoder_hidden_states"] is forget[2]["encoder_hidden_states"]  # one per prompt
    assert all(not row["latents"].any() for row in forget)  # no image: the zero latent
    pixels = trainer.preparer.images._fit(torch.tensor(task.retain[0]["image"]).permute(2, 0, 1) / 255 * 2 - 1,
                                          "r", 0)  # fmt: skip
    with torch.no_grad():
        expected = pipe.vae.encode(pixels[None]).latent_dist.mean[0] * pipe.vae.config.scaling_factor
    assert retain[0]["latents"].shape == (4, 8, 8)
    torch.testing.assert_close(retain[0]["latents"], expected)


def test_evaluation_losses_are_fixed_per_example(tmp_path, folder, task):
    trainer = trainer_for(tmp_path, folder, task)
    first = trainer.per_example_losses(task.retain)
    assert torch.equal(first, trainer.per_example_losses(task.retain))
    # whatever the batching: the same draws (batched matmuls may differ in the last bits)
    torch.testing.assert_close(
        first, trainer.per_example_losses(task.retain, batch_size=5), atol=1e-6, rtol=1e-5
    )
    assert first.shape == (len(task.retain),) and bool((first > 0).all())
    again = trainer_for(tmp_path, folder, task, diffusion_args=DiffusionArguments(eval_seed=1))
    assert not torch.equal(first, again.per_example_losses(task.retain))


def test_the_unconditional_branch_is_the_empty_prompt_and_rl_targets_the_anchor_prompt(
    tmp_path, folder, task
):
    args = DiffusionArguments(anchor_prompt="a dog")
    trainer = trainer_for(tmp_path, folder, task, "rl", diffusion_args=args)
    unet, setup = trainer.model.eval(), trainer.diffusion
    batch = trainer.data_collator(trainer.forget_rows[:3])
    empty, dog = setup.encode_prompts(["", "a dog"])
    assert torch.equal(setup.empty, empty) and torch.equal(setup.anchor, dog)
    with torch.no_grad():
        frozen, _ = KIND.training_forward(unet, batch, ForwardContext(0, 1, (("forget", 3),), frozen=True))
        under = [unet(frozen.noisy, frozen.timesteps, encoder_hidden_states=e.expand(3, -1, -1)).sample
                 for e in (empty, dog)]  # fmt: skip
        torch.testing.assert_close(frozen.unconditional, under[0])

        class Part:
            logits = frozen

        wrong = KIND.wrong_target_loss(Part, seed=0, step=1)
    torch.testing.assert_close(wrong, (frozen.prediction - under[1]).pow(2).flatten(1).mean(1))


class _StopAfter(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


@pytest.mark.parametrize(("method", "use_lora"), [("esd", False), ("rl", True)], ids=["esd-full", "rl-lora"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, folder, task, method, use_lora):
    from peft import LoraConfig

    def trainer(where):
        lora = LoraConfig(r=4, lora_alpha=8, **KIND.lora_defaults()) if use_lora else None
        common = dict(max_steps=4, save_strategy="steps", save_steps=2, learning_rate=1e-2)
        return trainer_for(where, folder, task, method, peft_config=lora, **common)

    full = trainer(tmp_path / "full")
    full.train()
    stopped = trainer(tmp_path / "part")
    stopped.add_callback(_StopAfter(2))
    stopped.train()
    checkpoint = tmp_path / "part" / "out" / "checkpoint-2"
    assert (checkpoint / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (checkpoint / "adapter_model.safetensors").is_file() == use_lora
    resumed = trainer(tmp_path / "part")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    expected, got = full.model.state_dict(), resumed.model.state_dict()
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
    start = load(folder).unet.state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in full.model.merge_and_unload().state_dict().items()) \
        if use_lora else not torch.equal(expected["conv_in.weight"], start["conv_in.weight"])  # fmt: skip


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_save_model_writes_a_pipeline_that_loads_again(tmp_path, folder, task, use_lora):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, **KIND.lora_defaults()) if use_lora else None
    trainer = trainer_for(tmp_path, folder, task, "ga", peft_config=lora, learning_rate=1e-2)
    trainer.train()
    saved = tmp_path / "saved"
    trainer.save_model(str(saved))
    assert (saved / "model_index.json").is_file() and (saved / "diffusion_args.json").is_file()
    assert not list(saved.rglob("*.bin"))
    reloaded = load(str(saved))
    batch = trainer.data_collator(trainer.retain_rows[:3])
    with torch.no_grad():
        ours, _ = KIND.forward(trainer.model.eval(), batch)
        configured = trainer_for(tmp_path, folder, task, pipe=reloaded)  # the reloaded pipeline trains again
        theirs, _ = KIND.forward(configured.model.eval(), batch)
    assert not any("lora" in k for k in reloaded.unet.state_dict())
    torch.testing.assert_close(theirs.prediction, ours.prediction, atol=1e-5, rtol=1e-4)
    original = load(folder).unet.state_dict()
    assert any(not torch.equal(v, original[k]) for k, v in reloaded.unet.state_dict().items())


def test_clear_errors_for_rows_without_a_prompt_and_for_a_unet_without_its_pipeline(tmp_path, folder, task):
    config = make_config(tmp_path, method="ga")
    for rows in ([{"image": task.retain[0]["image"]}], [{"text": "a cat"}], [{"prompt": 3}]):
        with pytest.raises(ValueError, match="needs rows \\{'prompt'\\} or \\{'prompt', 'image'\\}"):
            DiffusionUnlearningTrainer(load(folder), config, forget_dataset=rows, retain_dataset=task.retain)
    with pytest.raises(ValueError, match="unlearned with its pipeline: DiffusionUnlearningTrainer\\(pipe"):
        UnlearningTrainer(load(folder).unet, config, forget_dataset=task.forget, retain_dataset=task.retain)


def test_evaluate_unlearning_measures_a_pipeline_unet_through_its_kind(folder, task):
    """Per-split denoising losses, the loss attack and forget quality against a golden UNet, fixed per example."""
    from hf_unlearn.diffusion import configure_pipeline
    from hf_unlearn.metrics import evaluate_unlearning
    from hf_unlearn.testing.tiny_pipeline import tiny_sd_pipeline

    model, golden = load(folder), tiny_sd_pipeline(seed=1)
    configure_pipeline(model)
    configure_pipeline(golden)
    kwargs = dict(forget_dataset=task.forget, retain_dataset=task.retain, test_dataset=task.test)
    first = evaluate_unlearning(model.unet, golden_model=golden.unet, **kwargs)
    assert first == evaluate_unlearning(model.unet, golden_model=golden.unet, **kwargs)
    for key in ("forget/loss", "retain/loss", "test/loss", "mia/auc", "golden/forget/loss"):
        assert key in first and math.isfinite(first[key]), key
    assert first["forget/loss"] != first["golden/forget/loss"]
