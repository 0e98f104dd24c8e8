"""Image classifier datasets: ``{"image", "label"}`` through the model's image processor, or pre-processed
``{"pixel_values", "label"}``.

Canonical image rows hold ``pixel_values`` (a float tensor ``[C, H, W]``, a view into one tensor per dataset)
and ``labels`` instead of token ids; everything downstream (collation, the trainer's forward, the metrics)
reads the model inputs through ``model_inputs``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: Raw image columns, as ``datasets`` image layouts name them (``img``: CIFAR-10/100 on the Hub).
IMAGE_COLUMNS = ("image", "img")
#: Images go through the processor this many at a time (bounded memory for large datasets).
PROCESS_CHUNK = 256


def image_column(columns: set[str]) -> str | None:
    """The column holding the images (``pixel_values`` first), or None."""
    for key in ("pixel_values", *IMAGE_COLUMNS):
        if key in columns:
            return key
    return None


def image_rows(preparer: Any, dataset: Any, column: str, labels: list[int], name: str) -> list[dict]:
    """Canonical rows ``{"pixel_values", "labels"}`` of an image classifier dataset."""
    if column == "pixel_values":
        pixels = _stack_pixel_values(list(dataset[column]), name)
    else:
        pixels = _process_images(preparer, dataset, column, name)
    _check_pixels(preparer, pixels, name, column)
    return [{"pixel_values": pixels[i], "labels": y} for i, y in enumerate(labels)]


def _stack_pixel_values(values: list, name: str) -> torch.Tensor:
    try:
        arrays = [np.asarray(v, dtype=np.float32) for v in values]
        shapes = {a.shape for a in arrays}
    except (TypeError, ValueError):
        raise ValueError(f"{name}: 'pixel_values' must hold numeric arrays [C, H, W].") from None
    if len(shapes) != 1:
        raise ValueError(
            f"{name}: 'pixel_values' arrays differ in shape ({sorted(shapes)[:3]}...): resize them to one size."
        )
    stacked = torch.from_numpy(np.stack(arrays))
    if stacked.dim() == 3:  # [N, H, W]: one channel
        stacked = stacked.unsqueeze(1)
    if stacked.dim() != 4:
        raise ValueError(
            f"{name}: each 'pixel_values' entry must be [C, H, W] (or [H, W] for one channel), got shape "
            f"{tuple(stacked.shape[1:])}."
        )
    return stacked


def _process_images(preparer: Any, dataset: Any, column: str, name: str) -> torch.Tensor:
    processor = _image_processor(preparer.tokenizer, name, column)
    mode = {1: "L", 3: "RGB"}.get(preparer.num_channels or 3)
    chunks = []
    for start in range(0, len(dataset), PROCESS_CHUNK):
        images = [_to_pil(img, mode, name, column) for img in dataset[start : start + PROCESS_CHUNK][column]]
        try:
            out = processor(images=images, return_tensors="pt")
        except (ValueError, TypeError) as err:
            raise ValueError(f"{name}: the image processor could not process '{column}': {err}") from None
        chunks.append(out["pixel_values"].float())
    return torch.cat(chunks)


def _image_processor(processing_class: Any, name: str, column: str):
    from transformers import PreTrainedTokenizerBase
    from transformers.image_processing_base import ImageProcessingMixin

    hint = "e.g. AutoImageProcessor.from_pretrained(model_path), or pre-process to a 'pixel_values' column"
    if processing_class is None:
        raise ValueError(
            f"{name} holds images ('{column}'): pass processing_class= (the image processor, {hint})."
        )
    if isinstance(processing_class, PreTrainedTokenizerBase):
        raise ValueError(
            f"{name} holds images ('{column}') but processing_class is a tokenizer "
            f"({type(processing_class).__name__}); pass the model's image processor ({hint})."
        )
    processor = getattr(processing_class, "image_processor", processing_class)  # a multimodal Processor
    if not isinstance(processor, ImageProcessingMixin):
        raise ValueError(
            f"{name} holds images ('{column}'): processing_class must be an image processor, got "
            f"{type(processing_class).__name__} ({hint})."
        )
    return processor


def _to_pil(image: Any, mode: str | None, name: str, column: str):
    """A PIL image in the model's colour mode (grey scale for one channel, RGB for three)."""
    from PIL import Image

    if isinstance(image, dict) and image.get("bytes"):  # an undecoded ``datasets`` image (parquet struct)
        import io

        image = Image.open(io.BytesIO(image["bytes"]))
    if not isinstance(image, Image.Image):
        try:
            array = np.asarray(image)
            if array.dtype != np.uint8:
                array = np.clip(array, 0, 255).astype(np.uint8)
            image = Image.fromarray(array)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name}: '{column}' must hold images (PIL images or uint8 arrays [H, W] / [H, W, C]), got "
                f"{type(image).__name__}."
            ) from None
    return image.convert(mode) if mode and image.mode != mode else image


def _check_pixels(preparer: Any, pixels: torch.Tensor, name: str, column: str) -> None:
    channels = preparer.num_channels
    if channels is not None and pixels.shape[1] != channels:
        raise ValueError(
            f"{name}: the images have {pixels.shape[1]} channel(s) but the model expects {channels} "
            f"(config.num_channels); convert them (e.g. PIL's .convert('RGB'))."
        )
    size = preparer.image_size
    if size is not None and tuple(pixels.shape[2:]) != size:
        raise ValueError(
            f"{name}: the images are {tuple(pixels.shape[2:])} pixels but the model takes {size} "
            f"(config.image_size); resize them{' in the image processor' if column != 'pixel_values' else ''}."
        )
    if not bool(torch.isfinite(pixels).all()):
        raise ValueError(f"{name}: 'pixel_values' holds non-finite values (NaN or inf).")


def fixed_image_size(config: Any) -> tuple[int, int] | None:
    """The input size a patch-based model (ViT, DeiT, ...) requires, or None (convolutional nets take any)."""
    size = getattr(config, "image_size", None)
    if getattr(config, "patch_size", None) is None or size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return tuple(int(s) for s in size)[:2]
