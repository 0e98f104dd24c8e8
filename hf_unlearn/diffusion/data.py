"""Datasets of a class-conditional UNet: ``{"image", "label"}`` (PIL images or uint8 arrays, grey or RGB, any
size) or ``{"pixel_values", "label"}`` (float ``[C, H, W]`` already in ``[-1, 1]``), normalised into canonical
rows ``{"pixel_values", "labels", "index"}``: ``[C, H, W]`` float tensors in ``[-1, 1]`` with the UNet's
``in_channels`` and ``sample_size``, and collated into batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IMAGE_KEYS = ("image", "img")
LABEL_KEYS = ("label", "labels")
TASK = "diffusion"
_LUMA = torch.tensor([0.299, 0.587, 0.114])


class DiffusionPreparer:
    """``preparer(data, name)`` -> canonical rows, for a UNet of ``channels`` input channels, ``size`` pixels
    and the class labels ``classes``."""

    task = TASK

    def __init__(self, channels: int, size: tuple[int, int], classes: Sequence[int]):
        self.channels, self.size, self.classes = channels, size, set(classes)

    def __call__(self, data: Any, name: str, with_wrong_labels: bool = False) -> list[dict]:
        rows = _rows_of(data, name)
        keys = set(rows[0])
        label_key = next((k for k in LABEL_KEYS if k in keys), None)
        image_key = next((k for k in ("pixel_values", *IMAGE_KEYS) if k in keys), None)
        if label_key is None or image_key is None:
            raise ValueError(
                f"{name} has the columns {sorted(keys)}: a class-conditional UNet needs {{'image', 'label'}} "
                "(PIL images or uint8 arrays) or {'pixel_values', 'label'} (float [C, H, W] in [-1, 1])."
            )
        out = []
        for i, row in enumerate(rows):
            label = self._label(row[label_key], name, i)
            if image_key == "pixel_values":
                pixels = _pixel_tensor(row[image_key], name, i)
            else:
                pixels = _image_tensor(row[image_key], name, i) * 2 - 1
            out.append({"pixel_values": self._fit(pixels, name, i), "labels": label, "index": i})
        return out

    def _label(self, value: Any, name: str, i: int) -> int:
        try:
            label = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{i}]: the label must be an int class, got {value!r}.") from None
        if label not in self.classes:
            raise ValueError(
                f"{name}[{i}]: label {label} is not one of the UNet's classes {sorted(self.classes)}; check "
                "the labels or DiffusionArguments.num_classes / null_class."
            )
        return label

    def _fit(self, pixels: torch.Tensor, name: str, i: int) -> torch.Tensor:
        """``[C, H, W]`` with the UNet's channels (grey <-> RGB) and size (bilinear, antialiased)."""
        channels = pixels.shape[0]
        if channels != self.channels:
            if channels == 1 and self.channels == 3:
                pixels = pixels.expand(3, -1, -1)
            elif channels == 3 and self.channels == 1:
                pixels = (pixels * _LUMA.view(3, 1, 1)).sum(0, keepdim=True)
            else:
                raise ValueError(
                    f"{name}[{i}]: an image of {channels} channels for a UNet of in_channels={self.channels}."
                )
        if tuple(pixels.shape[1:]) != self.size:
            pixels = torch.nn.functional.interpolate(
                pixels[None], size=self.size, mode="bilinear", antialias=True, align_corners=False
            )[0]
        return pixels.contiguous().float()


class DiffusionCollator:
    """Rows -> ``{"pixel_values" [B, C, H, W], "labels" [B], "index" [B]}``; paired items (``PairedDataset``) ->
    ``{"retain": batch, "forget": batch}``."""

    def __call__(self, items: list[dict]) -> dict:
        if "retain" in items[0]:
            return {part: self([item[part] for item in items]) for part in ("retain", "forget")}
        return {
            "pixel_values": torch.stack([row["pixel_values"] for row in items]),
            "labels": torch.tensor([row["labels"] for row in items], dtype=torch.long),
            "index": torch.tensor([row["index"] for row in items], dtype=torch.long),
        }


def _rows_of(data: Any, name: str) -> list[dict]:
    """A ``datasets.Dataset``, a list of dicts or a dict of lists, as a list of dicts."""
    if hasattr(data, "features") and hasattr(data, "__getitem__"):  # a datasets.Dataset
        if hasattr(data, "keys") and not hasattr(data, "column_names"):
            raise ValueError(f"{name} is a DatasetDict; pass one split, e.g. {name}=ds['train'].")
        rows = [data[i] for i in range(len(data))]
    elif isinstance(data, dict):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise ValueError(
                f"{name}: the columns of a dict of lists must have one length, got {sorted(lengths)}."
            )
        rows = [dict(zip(data, values)) for values in zip(*data.values())]
    elif isinstance(data, Sequence) and not isinstance(data, str) and all(isinstance(r, dict) for r in data):
        rows = list(data)
    else:
        raise ValueError(f"{name} must be a datasets.Dataset, a list of dicts or a dict of lists.")
    if not rows:
        raise ValueError(f"{name} is empty: it needs at least one example.")
    return rows


def _image_tensor(image: Any, name: str, i: int) -> torch.Tensor:
    """A PIL image or uint8 array (``[H, W]``, ``[H, W, C]``) -> float ``[C, H, W]`` in ``[0, 1]``."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL
        image = image.convert("L" if image.mode in ("1", "L", "I", "F") else "RGB")
    array = np.asarray(image)
    # a datasets.Dataset stores a uint8 array as lists of Python ints (read back as int64): integers in 0-255 are
    # pixel values as well; floats are refused (0-1 or 0-255 cannot be told apart)
    if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() <= 255:
        array = array.astype(np.uint8)
    if array.dtype != np.uint8:
        raise ValueError(
            f"{name}[{i}]: 'image' must be a PIL image or an integer array of pixel values (0-255), got dtype "
            f"{array.dtype}; convert it, or pass 'pixel_values' already scaled to [-1, 1]."
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{name}[{i}]: 'image' must be [H, W] or [H, W, C] (C 1, 3 or 4), got {array.shape}."
        )
    return torch.from_numpy(array[:, :, :3].copy()).permute(2, 0, 1).float() / 255.0


def _pixel_tensor(value: Any, name: str, i: int) -> torch.Tensor:
    try:
        pixels = torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError):
        raise ValueError(f"{name}[{i}]: 'pixel_values' must be a numeric array [C, H, W].") from None
    if pixels.dim() == 2:
        pixels = pixels[None]
    if pixels.dim() != 3:
        raise ValueError(
            f"{name}[{i}]: 'pixel_values' must be [C, H, W] (or [H, W]), got {tuple(pixels.shape)}."
        )
    return pixels
