"""Seeded class-conditional sampling, the sample grid, the judge's inputs and features, and the generation
metrics (Fréchet distance, generation accuracy) on hand-made cases."""

import numpy as np
import pytest
import torch

from hf_unlearn.diffusion.generation_metrics import (  # noqa: E402
    frechet_distance,
    frechet_distance_from_moments,
    generation_accuracy,
    generation_metrics,
    inception_fid,
    score_samples,
)
from hf_unlearn.diffusion.judge import judge_images, to_judge_inputs  # noqa: E402
from hf_unlearn.diffusion.sampling import class_labels_for, sample_images, save_sample_grid  # noqa: E402


def tiny_unet(seed: int = 0, num_classes: int = 3):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        num_class_embeds=num_classes,
    ).eval()


class ScriptedJudge(torch.nn.Module):
    """A judge whose verdict is written into the image: class = round(mean pixel of the top-left quarter);
    features = the mean of each quarter (4-dimensional)."""

    def __init__(self, num_labels: int = 3):
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(num_labels=num_labels, num_channels=1)
        self.classifier = torch.nn.Linear(4, num_labels)
        with torch.no_grad():
            self.classifier.weight.zero_()
            self.classifier.bias.zero_()

    def forward(self, pixel_values):
        from types import SimpleNamespace

        x = pixel_values
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        quarters = [x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]]
        features = torch.stack([q.mean((1, 2, 3)) for q in quarters], 1)
        self.classifier(features)  # the penultimate features pass through the head
        verdict = features[:, 0].round().long().clamp(0, self.config.num_labels - 1)
        return SimpleNamespace(
            logits=torch.nn.functional.one_hot(verdict, self.config.num_labels).float() * 10
        )


def scripted_images(classes: list[int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(len(classes), 1, 8, 8, generator=g) * 0.2
    for i, c in enumerate(classes):
        images[i, :, :4, :4] = c
    return images


def test_sampling_same_seed_same_images_any_batch_size():
    unet = tiny_unet()
    labels = class_labels_for([0, 2], 3)
    assert labels.tolist() == [0, 0, 0, 2, 2, 2]
    first = sample_images(unet, labels, num_inference_steps=4, seed=7, batch_size=6)
    again = sample_images(unet, labels, num_inference_steps=4, seed=7, batch_size=4)
    other = sample_images(unet, labels, num_inference_steps=4, seed=8, batch_size=6)
    assert first.shape == (6, 1, 8, 8)
    assert first.min() >= -1 and first.max() <= 1
    torch.testing.assert_close(first, again, atol=1e-5, rtol=0)
    assert (first - other).abs().max() > 0.1
    assert not unet.training


def test_sampling_refuses_bad_inputs():
    from diffusers import UNet2DModel

    plain = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    )
    with pytest.raises(ValueError, match="num_class_embeds"):
        sample_images(plain, [0], num_inference_steps=2)
    with pytest.raises(ValueError, match="labels must lie"):
        sample_images(tiny_unet(), [3], num_inference_steps=2)
    with pytest.raises(ValueError, match="num_inference_steps"):
        sample_images(tiny_unet(), [0], num_inference_steps=0)


def test_sample_grid_has_one_row_per_class(tmp_path):
    from PIL import Image

    labels = torch.tensor([2, 0, 2, 0, 2])
    images = torch.full((5, 1, 8, 8), -1.0)
    images[labels == 2] = 1.0
    path = save_sample_grid(images, labels, str(tmp_path / "grid.png"), scale=1, title="t")
    picture = Image.open(path)
    assert picture.text["classes"] == "0,2"
    grid = np.asarray(picture)
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1)  # 2 rows (classes), 3 columns (the most samples of a class)
    assert grid[1:9, 1:9].max() == 0  # class 0 row: black images
    assert grid[10:18, 1:9].min() == 255  # class 2 row: white images


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 5)) @ np.diag([1.0, 2.0, 0.5, 3.0, 1.0])
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 1.0) == pytest.approx(5.0, rel=1e-6)  # the mean term alone


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    a, b = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 1.0, 0.5])
    rotation = np.linalg.qr(rng.normal(size=(4, 4)))[0]  # commuting covariances: same eigenvectors
    sigma1, sigma2 = rotation @ np.diag(a) @ rotation.T, rotation @ np.diag(b) @ rotation.T
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance_from_moments(mu1, sigma1, mu2, sigma2) == pytest.approx(closed, rel=1e-8)
    # from samples with exactly these moments (whitened, then coloured)
    samples = []
    for mu, sigma in ((mu1, sigma1), (mu2, sigma2)):
        z = rng.normal(size=(500, 4))
        z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)
        samples.append(z @ np.linalg.cholesky(sigma).T + mu)
    assert frechet_distance(*samples) == pytest.approx(closed, rel=1e-8)
    # non-commuting covariances: 1-d is the closed form (mu1-mu2)^2 + (s1 - s2)^2
    assert frechet_distance_from_moments([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9.0 + 1.0)


def test_frechet_distance_refuses_too_few_vectors():
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_generation_accuracy_with_a_scripted_judge():
    judge = ScriptedJudge()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    judged_as = [0, 1, 1, 1, 2, 0, 2, 0]  # class 0: 1 of 2 right; kept 1 and 2: 4 of 6
    images = scripted_images(judged_as)
    probs, features = judge_images(judge, images)
    assert probs.argmax(-1).tolist() == judged_as
    assert features.shape == (8, 4)
    assert generation_accuracy(probs, labels) == pytest.approx(5 / 8)
    out = score_samples(judge, images, labels, forget_classes=[0], real_images=images[2:])
    assert out["forget/generation_accuracy"] == pytest.approx(0.5)
    assert out["forget/ua"] == pytest.approx(0.5)
    assert out["retain/generation_accuracy"] == pytest.approx(4 / 6)
    assert out["quality/frechet_distance"] == pytest.approx(0.0, abs=1e-6)  # kept samples vs themselves
    assert out["forget/generation_probability"] == pytest.approx(0.5, abs=1e-3)


def test_generation_metrics_end_to_end_with_golden():
    unet, golden = tiny_unet(0), tiny_unet(1)
    judge = ScriptedJudge()
    real = scripted_images([1, 2, 1, 2])
    kwargs = {"forget_classes": [0], "retain_classes": [1, 2], "real_images": real, "num_inference_steps": 2}
    out = generation_metrics(unet, judge, num_samples_per_class=3, golden_unet=golden, **kwargs)
    keys = (
        "forget/generation_accuracy",
        "forget/ua",
        "retain/generation_accuracy",
        "quality/frechet_distance",
    )
    for key in keys:
        assert key in out and f"golden/{key}" in out
        assert np.isfinite(out[key])
    assert out["forget/ua"] == pytest.approx(1 - out["forget/generation_accuracy"])
    alone = generation_metrics(golden, judge, num_samples_per_class=3, **kwargs)
    assert alone["quality/frechet_distance"] == pytest.approx(out["golden/quality/frechet_distance"])
    with pytest.raises(ValueError, match="num_samples_per_class"):
        generation_metrics(unet, judge, num_samples_per_class=0, **kwargs)


def test_judge_inputs_resized_and_normalized():
    from hf_unlearn.tiny import tiny_image_classifier, tiny_image_processor

    judge = tiny_image_classifier("resnet", num_labels=3, num_channels=3)
    processor = tiny_image_processor(num_channels=3, image_size=16)
    images = torch.full((2, 1, 8, 8), 0.5)
    x = to_judge_inputs(images, judge, processor)
    assert x.shape == (2, 3, 16, 16)
    torch.testing.assert_close(
        x, torch.full_like(x, 0.5)
    )  # mean 0.5 / std 0.5 on [0, 1] maps back to [-1, 1]
    probs, features = judge_images(judge, images, processor)
    assert probs.shape == (2, 3) and features.shape[0] == 2
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))


def test_inception_fid_skipped_without_torchmetrics(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchmetrics", None)
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)
    assert inception_fid(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), torch.nn.Identity()) is None


def test_import_hf_unlearn_does_not_import_diffusers():
    import subprocess
    import sys

    code = "import sys, hf_unlearn, hf_unlearn.scenarios; hf_unlearn.scenarios.list_scenarios(); assert 'diffusers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
