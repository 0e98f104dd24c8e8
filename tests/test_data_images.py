"""Image classifier datasets: pixel values and raw images through the image processor, and clear errors."""

import numpy as np
import pytest
import torch

from hf_unlearn import UnlearningTrainer
from hf_unlearn.data import build_preparer
from hf_unlearn.tiny import tiny_image_classifier, tiny_image_processor


def _pixels(n, channels=1, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, size=(channels, size, size)).astype(np.float32) for _ in range(n)]


def _images(n, mode="L", size=8, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    return [Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode) for _ in range(n)]


def _prepare(model, data, processor=None):
    preparer, collator = build_preparer(model, processor)
    return preparer(data, "forget_dataset"), collator


@pytest.mark.parametrize("architecture", ["resnet", "vit"])
def test_pixel_values_and_processed_images_become_the_same_canonical_rows(architecture):
    model = tiny_image_classifier(architecture)
    processor = tiny_image_processor(num_channels=1)
    images = _images(5)
    labels = [0, 1, 2, 3, 9]
    raw, collator = _prepare(model, {"image": images, "label": labels}, processor)
    expected = processor(images=images, return_tensors="pt")["pixel_values"]
    pre, _ = _prepare(model, {"pixel_values": expected.numpy().tolist(), "label": labels})
    flat, _ = _prepare(model, {"pixel_values": expected[:, 0].numpy().tolist(), "label": labels})  # [H, W]
    for rows in (raw, pre, flat):
        batch = collator(rows)
        assert set(batch) == {"pixel_values", "labels", "index"}
        assert batch["pixel_values"].shape == (5, 1, 8, 8)
        torch.testing.assert_close(batch["pixel_values"], expected)
        assert batch["labels"].tolist() == labels
    logits = model(pixel_values=collator(raw)["pixel_values"]).logits
    assert logits.shape == (5, 10)


def test_cifar_layout_rgb_images_under_img_are_read_and_grey_images_converted():
    import datasets

    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    cifar = datasets.Dataset.from_dict(
        {"img": _images(4, "RGB", 32), "label": [0, 3, 5, 9]}, features=features
    )
    model = tiny_image_classifier("resnet", num_channels=3)
    rows, collator = _prepare(model, cifar, tiny_image_processor(num_channels=3))
    assert collator(rows)["pixel_values"].shape == (4, 3, 32, 32)
    grey, _ = _prepare(model, {"image": _images(2, "L", 32), "label": [1, 2]}, tiny_image_processor(3))
    assert grey[0]["pixel_values"].shape == (3, 32, 32)


def test_bad_image_input_gets_clear_errors(mislabeled):
    resnet, vit = tiny_image_classifier("resnet"), tiny_image_classifier("vit", image_size=8)
    images = {"image": _images(2), "label": [0, 1]}
    with pytest.raises(ValueError, match="pass processing_class"):
        _prepare(resnet, images)
    with pytest.raises(ValueError, match="is a tokenizer"):
        _prepare(resnet, images, mislabeled.tokenizer)
    with pytest.raises(ValueError, match="3 channel.*expects 1"):
        _prepare(resnet, {"pixel_values": _pixels(2, channels=3), "label": [0, 1]})
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        _prepare(resnet, {"pixel_values": _pixels(2), "label": [0, 10]})
    with pytest.raises(ValueError, match="config.image_size"):
        _prepare(vit, {"pixel_values": _pixels(2, size=16), "label": [0, 1]})
    with pytest.raises(ValueError, match="differ in shape"):
        _prepare(resnet, {"pixel_values": _pixels(1, size=8) + _pixels(1, size=16), "label": [0, 1]})
    with pytest.raises(ValueError, match="non-finite"):
        _prepare(resnet, {"pixel_values": [np.full((1, 8, 8), np.nan, np.float32)], "label": [0]})
    with pytest.raises(ValueError, match="needs an 'image'"):
        _prepare(resnet, {"text": ["a digit"], "label": [0]})
    from hf_unlearn.tiny import tiny_classifier

    with pytest.raises(ValueError, match="text classifier"):
        _prepare(tiny_classifier(mislabeled.tokenizer), images, mislabeled.tokenizer)


def test_duplicate_images_in_forget_and_retain_are_refused(tmp_path):
    from conftest import make_config

    pixels = _pixels(4)
    forget = {"pixel_values": pixels[:2], "label": [0, 1]}
    retain = {"pixel_values": pixels[1:], "label": [1, 2, 3]}
    with pytest.raises(ValueError, match="exact duplicates"):
        UnlearningTrainer(
            tiny_image_classifier(), make_config(tmp_path), forget_dataset=forget, retain_dataset=retain
        )
