"""A judge classifier on generated images: class probabilities and penultimate features of any ``transformers``
image classifier (e.g. ``hf_unlearn.tiny.tiny_image_classifier``), with the images brought to its input size,
channels and normalization."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["classifier_head", "judge_images", "to_judge_inputs"]


def classifier_head(judge: torch.nn.Module) -> torch.nn.Linear:
    """The judge's last ``nn.Linear`` with one output per class (``config.num_labels``): its input is the
    penultimate feature vector."""
    num_labels = getattr(getattr(judge, "config", None), "num_labels", None)
    linears = [m for m in judge.modules() if isinstance(m, torch.nn.Linear)]
    matching = [m for m in linears if num_labels is None or m.out_features == num_labels]
    if not matching:
        raise ValueError(
            "The judge has no nn.Linear classification head with config.num_labels outputs; pass a "
            "transformers image classifier (e.g. ResNetForImageClassification)."
        )
    return matching[-1]


def _field(size: Any, key: str) -> Any:
    """``size[key]`` of a processor's size (a dict or ``transformers``' ``SizeDict``), None when absent."""
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def _input_geometry(judge: torch.nn.Module, processor: Any) -> tuple[int | None, tuple[int, int] | None]:
    """``(channels, (height, width))`` the judge takes (None where any works)."""
    config = getattr(judge, "config", None)
    channels = getattr(config, "num_channels", None)
    if processor is not None and getattr(processor, "do_resize", True):
        size = getattr(processor, "size", None)
        height, width = _field(size, "height"), _field(size, "width")
        if height and width:
            return channels, (int(height), int(width))
        if _field(size, "shortest_edge"):
            return channels, (int(_field(size, "shortest_edge")),) * 2
    image_size = getattr(config, "image_size", None)
    if processor is None and isinstance(image_size, int) and getattr(config, "model_type", "") != "resnet":
        return channels, (image_size, image_size)
    return channels, None


def to_judge_inputs(images: torch.Tensor, judge: torch.nn.Module, processor: Any = None) -> torch.Tensor:
    """``images`` (``[N, C, H, W]`` in [-1, 1]) as the judge's ``pixel_values``: channels matched (grey
    repeated to RGB, RGB averaged to grey), resized (bilinear) to the processor's size (or a fixed-size
    model's ``config.image_size``), then normalized with the processor's ``image_mean`` / ``image_std``
    applied to [0, 1] pixels; without a processor the [-1, 1] pixels go in as they are (the normalization of
    ``hf_unlearn.tiny.tiny_image_processor``)."""
    channels, size = _input_geometry(judge, processor)
    x = images.float()
    if channels is not None and x.shape[1] != channels:
        if x.shape[1] == 1:
            x = x.repeat(1, channels, 1, 1)
        elif channels == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise ValueError(f"Images with {x.shape[1]} channels cannot feed a judge of {channels} channels.")
    if size is not None and tuple(x.shape[-2:]) != size:
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    if processor is None:
        return x
    mean = torch.as_tensor(getattr(processor, "image_mean", None) or [0.5] * x.shape[1], dtype=x.dtype)
    std = torch.as_tensor(getattr(processor, "image_std", None) or [0.5] * x.shape[1], dtype=x.dtype)
    return ((x + 1) / 2 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


@torch.no_grad()
def judge_images(
    judge: torch.nn.Module, images: torch.Tensor, processor: Any = None, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities [N, K], penultimate features [N, D])`` of the judge on ``images`` ([-1, 1]), on the
    CPU in float32; the judge is put in eval mode."""
    judge.eval()
    head = classifier_head(judge)
    device = next(judge.parameters()).device
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].flatten(1).float().cpu()))
    probs = []
    try:
        for start in range(0, len(images), batch_size):
            x = to_judge_inputs(images[start : start + batch_size], judge, processor).to(device)
            logits = judge(pixel_values=x).logits
            probs.append(torch.softmax(logits.float(), dim=-1).cpu())
    finally:
        hook.remove()
    if not probs:
        return torch.zeros(0, 0), torch.zeros(0, 0)
    return torch.cat(probs), torch.cat(captured)
