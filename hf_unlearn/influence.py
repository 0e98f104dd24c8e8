"""Weight-space operators: IEU's decay + noise step hook, and influence removal by masking.

These are the only places that touch weights outside the optimizer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

import torch

_SEED_STRIDE = 1_000_003


def noise_schedule(name: str, step: int, max_steps: int) -> float:
    """Multiplier of the noise std at ``step`` out of ``max_steps`` ('constant', 'linear' or 'cosine')."""
    progress = min(step / max(max_steps, 1), 1.0)
    if name == "constant":
        return 1.0
    if name == "linear":
        return 1.0 - progress
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"Unknown noise schedule {name!r}; choose 'constant', 'linear' or 'cosine'.")


class DecayNoiseHook:
    """Optimizer step post-hook: ``theta <- (1 - lr_t * decay) * theta + sigma_t * eps`` for every parameter
    the optimizer holds (full tensors under DDP, local shards under FSDP, the fp32 master partition under
    DeepSpeed).

    The noise for step ``t`` comes from a dedicated generator re-seeded with ``(seed, t, rank_offset)``, so it is
    a pure function of the step: replicas draw identical noise (``rank_offset=0``), shards draw independent
    noise (``rank_offset=rank``), and a resumed run replays exactly the noise of an uninterrupted one with
    no generator state to checkpoint. Noise is drawn into one reusable flat buffer per (device, dtype) and
    applied with fused ``torch._foreach_*`` ops.

    Args:
        decay: lambda >= 0.
        noise_std: sigma >= 0 (before the schedule).
        schedule: 'constant', 'linear' or 'cosine'.
        seed: base seed (``args.seed``).
        step_fn: returns the index of the optimizer step being taken (``state.global_step`` before increment).
        max_steps_fn: returns the total number of steps (for the schedule).
        every: inject noise every ``every`` steps with std ``sigma * sqrt(every)``.
        rank_offset: added to the seed (the process rank when parameters are sharded).
    """

    def __init__(
        self,
        decay: float,
        noise_std: float,
        schedule: str,
        seed: int,
        step_fn: Callable[[], int],
        max_steps_fn: Callable[[], int],
        every: int = 1,
        rank_offset: int = 0,
    ):
        self.decay, self.noise_std, self.schedule = decay, noise_std, schedule
        self.seed, self.every, self.rank_offset = seed, every, rank_offset
        self.step_fn, self.max_steps_fn = step_fn, max_steps_fn
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._generators: dict[torch.device, torch.Generator] = {}

    def __call__(self, optimizer: torch.optim.Optimizer, *args, **kwargs) -> None:
        if self.decay > 0:
            self.apply_decay(optimizer.param_groups)
        step = self.step_fn()
        if self.noise_std > 0 and (step + 1) % self.every == 0:
            sigma = self.noise_std * math.sqrt(self.every)
            sigma *= noise_schedule(self.schedule, step, self.max_steps_fn())
            if sigma > 0:
                self.apply_noise(optimizer.param_groups, sigma, step)

    @torch.no_grad()
    def apply_decay(self, param_groups: Iterable[dict]) -> None:
        for group in param_groups:
            params = [p for p in group["params"] if p.requires_grad]
            factor = 1.0 - float(group["lr"]) * self.decay
            if params and factor != 1.0:
                torch._foreach_mul_(params, factor)

    @torch.no_grad()
    def apply_noise(self, param_groups: Iterable[dict], sigma: float, step: int) -> None:
        buckets: dict[tuple, list[torch.Tensor]] = defaultdict(list)
        for group in param_groups:
            for p in group["params"]:
                if p.requires_grad and p.numel():
                    buckets[(p.device, p.dtype)].append(p)
        for (device, dtype), params in buckets.items():
            generator = self._generator(device)
            generator.manual_seed(self.seed * _SEED_STRIDE + step * 7919 + self.rank_offset)
            flat = self._buffer(device, dtype, sum(p.numel() for p in params))
            flat.normal_(0.0, sigma, generator=generator)
            noise = [chunk.view_as(p) for chunk, p in zip(flat.split([p.numel() for p in params]), params)]
            torch._foreach_add_(params, noise)

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device)
        return self._generators[device]

    def _buffer(self, device: torch.device, dtype: torch.dtype, numel: int) -> torch.Tensor:
        key = (device, dtype)
        if key not in self._buffers or self._buffers[key].numel() != numel:
            self._buffers[key] = torch.empty(numel, device=device, dtype=dtype)
        return self._buffers[key]


def gradient_magnitudes(
    model: torch.nn.Module, batches: Iterable[dict], loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Sum over batches of ``|d loss / d theta|`` for every trainable parameter (model left in eval mode)."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    totals = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    was_training = model.training
    model.eval()
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        for name, p in params.items():
            if p.grad is not None:
                totals[name] += p.grad.detach().abs().float()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return totals


def forget_only_scores(
    forget_grads: dict[str, torch.Tensor], retain_grads: dict[str, torch.Tensor], n_forget: int, n_retain: int
) -> dict[str, torch.Tensor]:
    """Score = mean forget-gradient magnitude / (mean retain-gradient magnitude + eps): high for weights that
    only the forget set moves (the neural analogue of the forget-only coordinates of the linear theory)."""
    scale = torch.cat([g.flatten() for g in retain_grads.values()]).mean() / max(n_retain, 1)
    eps = float(scale) * 1e-3 + 1e-12
    return {
        name: (forget_grads[name] / max(n_forget, 1)) / (retain_grads[name] / max(n_retain, 1) + eps)
        for name in forget_grads
    }


def mask_top_scores(model: torch.nn.Module, scores: dict[str, torch.Tensor], ratio: float) -> int:
    """Zero the ``ratio`` fraction of trainable weights with the highest score. Returns how many were reset."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = max(1, int(ratio * flat.numel()))
    threshold = torch.topk(flat, k, sorted=False).values.min()
    reset = 0
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, score in scores.items():
            mask = (score >= threshold).to(params[name].device)
            reset += int(mask.sum())
            params[name].masked_fill_(mask, 0.0)
    return reset
