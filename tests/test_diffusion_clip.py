"""Text-to-image generation metrics (``hf_unlearn.diffusion.clip_metrics``): the CLIP score formula on hand-made
embeddings, the candidate labels of prompts, judged accuracies with a scripted judge, seeded prompt sampling,
and ``evaluate_unlearning`` on the tiny pipeline with a tiny CLIP (in memory and from a folder) or a classifier
judge; the options refused where they do not belong."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hf_unlearn.diffusion import clip_metrics, configure_pipeline
from hf_unlearn.diffusion.clip_metrics import clip_score, clip_scores, concept_labels, score_prompt_samples
from hf_unlearn.diffusion.prompt_sampling import sample_prompts
from hf_unlearn.metrics import evaluate_unlearning
from hf_unlearn.testing.tiny_pipeline import concept_task, tiny_sd_pipeline
from hf_unlearn.tiny import tiny_clip, tiny_image_classifier, tiny_unet

FORGET = ["a cat", "a photo of a cat"]
KEPT = ["a bird", "a dog", "a red car", "a tree"]
FEW = {"generation_samples": 2, "generation_steps": 2, "batch_size": 8}


@pytest.fixture(scope="module")
def pipes():
    pipe, golden = tiny_sd_pipeline(seed=0), tiny_sd_pipeline(seed=1)
    configure_pipeline(pipe)
    configure_pipeline(golden)
    return pipe, golden


@pytest.fixture(scope="module")
def task():
    return concept_task()


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


def test_clip_score_is_100_times_the_clipped_cosine_averaged_over_samples():
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [1.0, 1.0]])
    texts = torch.tensor([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    # cosines 1, 0, 0.6, -1 -> 100, 0, 60, 0 (the negative one clipped per sample)
    assert clip_scores(images, texts).tolist() == pytest.approx([100.0, 0.0, 60.0, 0.0])
    assert clip_score(images, texts) == pytest.approx(40.0)
    assert clip_score(images[:0], texts[:0]) != clip_score(images[:0], texts[:0])  # nan for no pairs


def test_candidate_labels_are_the_prompts_or_the_concepts_they_contain():
    default = concept_labels(FORGET, KEPT, anchor="a photo")
    assert default.names == [*FORGET, *KEPT, "a photo"]
    assert default.forget == {0, 1} and default.of_prompt["a tree"] == 5
    named = concept_labels(FORGET, KEPT + ["a house"], concepts=["car", "red car", "cat", "dog", "Tree"])
    assert named.of_prompt == {"a cat": 2, "a photo of a cat": 2, "a bird": None, "a dog": 3,
                               "a red car": 1, "a tree": 4, "a house": None}  # fmt: skip
    assert named.forget == {2}
    assert concept_labels(["a category"], [], concepts=["category", "cat"]).of_prompt == {"a category": 0}
    with pytest.raises(ValueError, match="contain none of the concepts"):
        concept_labels(["a kitten"], KEPT, concepts=["cat", "dog"])
    with pytest.raises(ValueError, match="distinct non-empty"):
        concept_labels(FORGET, KEPT, concepts=["cat", "cat"])


def test_judged_accuracies_with_a_scripted_judge():
    labels = concept_labels(FORGET, ["a dog", "a tree"])  # names: the 2 forget prompts, then dog, tree
    prompts = ["a cat", "a cat", "a photo of a cat", "a dog", "a dog", "a tree"]
    top = [
        1,
        2,
        0,
        2,
        3,
        3,
    ]  # forget: 1 (another phrasing of the concept: counts), 2, 0 -> 2/3; kept: 1/2, 1/1
    probabilities = torch.nn.functional.one_hot(torch.tensor(top), 4).float() * 0.7 + 0.075
    out = score_prompt_samples(torch.zeros(6, 3, 4, 4), prompts, FORGET, labels, probabilities)
    assert out["forget/generation_accuracy"] == pytest.approx(2 / 3)
    assert out["forget/ua"] == pytest.approx(1 / 3)
    assert out["retain/generation_accuracy"] == pytest.approx(2 / 3)
    assert out["forget/generation_probability"] == pytest.approx((0.85 + 0.15 + 0.85) / 3)
    assert "quality/clip_score" not in out


def test_clip_scores_pair_each_sample_with_its_own_prompt(monkeypatch):
    prompts = ["a cat", "a dog", "a dog"]
    image = {0: [1.0, 0.0], 1: [0.0, 1.0], 2: [0.6, 0.8]}
    text = {"a cat": [0.0, 1.0], "a dog": [0.0, 1.0]}
    monkeypatch.setattr(
        clip_metrics, "clip_image_embeddings", lambda m, p, images: torch.tensor([image[i] for i in range(3)])
    )
    monkeypatch.setattr(
        clip_metrics, "clip_text_embeddings", lambda m, p, texts: torch.tensor([text[t] for t in texts])
    )
    out = score_prompt_samples(
        torch.zeros(3, 3, 4, 4), prompts, ["a cat"], concept_labels(["a cat"], ["a dog"]), clip=(None, None)
    )
    assert out == pytest.approx({"forget/clip_score": 0.0, "quality/clip_score": (100 + 80) / 2})


def test_prompt_samples_are_seeded_per_image_whatever_the_batch(pipes):
    unet = pipes[0].unet
    prompts = ["a cat", "a dog", "a tree"]
    one = sample_prompts(unet, prompts, num_inference_steps=2, seed=3, batch_size=1)
    three = sample_prompts(unet, prompts, num_inference_steps=2, seed=3, batch_size=3)
    assert one.shape == (3, 3, 16, 16) and one.abs().max() <= 1
    torch.testing.assert_close(one, three, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(one, sample_prompts(unet, prompts, num_inference_steps=2, seed=4))
    assert not torch.allclose(one[:1], sample_prompts(unet, ["a bird"], num_inference_steps=2, seed=3))


def test_evaluate_unlearning_with_clip_writes_the_keys_in_range(pipes, task, clip, tmp_path):
    pipe, golden = pipes
    kwargs = {"forget_dataset": task.forget, "retain_dataset": task.retain, **FEW}
    metrics = evaluate_unlearning(
        pipe.unet, golden_model=golden.unet, clip_model=clip[0], clip_processor=clip[1], **kwargs
    )
    for prefix in ("", "golden/"):
        for key in (
            "forget/generation_accuracy",
            "retain/generation_accuracy",
            "forget/generation_probability",
        ):
            assert 0 <= metrics[prefix + key] <= 1, key
        assert metrics[prefix + "forget/ua"] == pytest.approx(
            1 - metrics[prefix + "forget/generation_accuracy"]
        )
        for key in ("quality/clip_score", "forget/clip_score"):
            assert 0 <= metrics[prefix + key] <= 100, key
    assert (
        metrics["quality/clip_score"] != metrics["golden/quality/clip_score"]
    )  # other weights, other images
    clip[0].save_pretrained(tmp_path, safe_serialization=True)
    clip[1].save_pretrained(tmp_path)
    from_folder = evaluate_unlearning(pipe.unet, clip_model=str(tmp_path), **kwargs)
    assert from_folder["quality/clip_score"] == pytest.approx(metrics["quality/clip_score"], abs=1e-4)
    named = evaluate_unlearning(pipe.unet, clip_model=str(tmp_path), concepts=["cat", "dog", "car"], **kwargs)
    assert named["quality/clip_score"] == pytest.approx(metrics["quality/clip_score"], abs=1e-4)
    assert 0 <= named["retain/generation_accuracy"] <= 1  # over "a dog" and "a red car" only


def test_a_classifier_judges_by_its_label_names(pipes, task):
    judge = tiny_image_classifier(num_labels=3, num_channels=3, image_size=16)
    judge.config.id2label = {0: "cat", 1: "dog", 2: "tree"}
    metrics = evaluate_unlearning(
        pipes[0].unet, forget_dataset=task.forget, retain_dataset=task.retain, judge_model=judge, **FEW
    )
    assert 0 <= metrics["forget/generation_accuracy"] <= 1 and 0 <= metrics["retain/generation_accuracy"] <= 1
    assert "quality/clip_score" not in metrics
    with pytest.raises(ValueError, match="leave them out with judge_model"):
        evaluate_unlearning(
            pipes[0].unet,
            forget_dataset=task.forget,
            retain_dataset=task.retain,
            judge_model=judge,
            concepts=["cat"],
            **FEW,
        )


def test_clip_options_are_refused_where_they_do_not_belong(pipes, task, clip):
    unet = tiny_unet(num_classes=3)
    rows = [{"pixel_values": torch.zeros(1, 8, 8), "label": i % 3} for i in range(4)]
    with pytest.raises(ValueError, match="clip_model: not an option of class_conditional_unet"):
        evaluate_unlearning(unet, forget_dataset=rows[:2], retain_dataset=rows[2:], clip_model=clip[0])
    with pytest.raises(ValueError, match="generation_samples needs judge_model or clip_model"):
        evaluate_unlearning(
            pipes[0].unet, forget_dataset=task.forget, retain_dataset=task.retain, generation_samples=2
        )
    with pytest.raises(ValueError, match="clip_model needs clip_processor"):
        evaluate_unlearning(
            pipes[0].unet, forget_dataset=task.forget, retain_dataset=task.retain, clip_model=clip[0]
        )
    with pytest.raises(ValueError, match="is not a folder"):
        evaluate_unlearning(
            pipes[0].unet, forget_dataset=task.forget, retain_dataset=task.retain, clip_model="/no/clip"
        )


def test_eval_cli_passes_clip_through():
    from hf_unlearn.pipeline.evaluate_dir import judge_options

    assert judge_options(SimpleNamespace(judge=None, clip="/models/clip", generation_samples=3)) == {
        "clip_model": "/models/clip",
        "generation_samples": 3,
    }


def test_the_headline_leads_with_the_generation_keys_when_measured():
    from hf_unlearn.diffusion import TextConditionedUNetKind
    from hf_unlearn.reporting.headline import DEFINITIONS

    kind = TextConditionedUNetKind()
    assert set(kind.headline()) <= set(DEFINITIONS) and "forget/clip_score" in DEFINITIONS
    assert kind.headline({"m": {"forget/loss": 1.0}}, short=True) == [
        "forget/loss",
        "retain/loss",
        "rcd/ratio_to_golden",
    ]
    clip_only = {"m": {"quality/clip_score": 20.0, "forget/generation_accuracy": 0.5}}
    assert kind.headline(clip_only, short=True) == ["forget/generation_accuracy", "quality/clip_score"]
    assert kind.headline({"m": {"forget/loss": 1.0}})[0] == "forget/loss"
