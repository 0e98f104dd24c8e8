"""Weight-space operators: IEU's decay + noise step hook, and influence removal by masking (``masking``,
re-exported here).

These are the only places that touch weights outside the optimizer.
"""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch

from .distributed import HookHandles, is_state_init_step, local_tensors, shard_offset
from .masking import (  # noqa: F401 (importable from here)
    forget_only_scores,
    gradient_magnitudes,
    mask_gradients,
    mask_top_scores,
    retention_scores,
    top_fraction,
)

_SEED_STRIDE = 1_000_003
# elements per independently seeded noise chunk (fixed sizes, so the noise does not depend on the thread count);
# the chunk is also the size of the scratch buffer the noise is drawn into (per CPU worker thread)
NOISE_CHUNK = 1 << 20
NOISE_CHUNK_ACCELERATOR = 1 << 24
FOLDED_DECAY_KEY = "ieu_folded_decay"  # param-group key: the lambda the optimizer's own weight decay applies
_REQUIRES_GRAD = operator.attrgetter("requires_grad")


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


def _chunk_seed(base: int, index: int, wide: bool = False) -> int:
    """A well-mixed seed for noise chunk ``index`` of the step seeded ``base`` (splitmix64): 32 bits unless ``wide``,
    because torch's CPU generator (mt19937) only uses the low 32 bits of a seed (offsets above them would give
    every chunk the same stream; two of ~77k chunk seeds coincide with even odds); accelerator generators
    (Philox) take all 64."""
    x = (base * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    return x if wide else (x ^ (x >> 32)) & 0xFFFFFFFF


def _chunk_plan(sizes: list[int], chunk: int) -> list[tuple[int, list[tuple]]]:
    """Cut a vector made of pieces of ``sizes`` into chunks of ``chunk`` elements (the last may be shorter): for
    each chunk, its size and the pieces ``(piece index, start, end, chunk start, chunk end)`` it covers."""
    plan: list[tuple[int, list[tuple]]] = []
    pieces: list[tuple] = []
    filled = 0
    for i, n in enumerate(sizes):
        start = 0
        while start < n:
            take = min(n - start, chunk - filled)
            pieces.append((i, start, start + take, filled, filled + take))
            start += take
            filled += take
            if filled == chunk:
                plan.append((filled, pieces))
                pieces, filled = [], 0
    if pieces:
        plan.append((filled, pieces))
    return plan


def _scale(params: list[torch.Tensor], factor: float) -> None:
    """``p <- p * factor`` in place on each of ``params`` (on the local shard of a DTensor)."""
    if params:
        torch._foreach_mul_(local_tensors(params), factor)


def _decoupled_adam(optimizer: torch.optim.Optimizer) -> bool:
    """A torch Adam/AdamW with decoupled weight decay: ``p <- p * (1 - lr * wd)`` inside its own step."""
    return isinstance(optimizer, torch.optim.Adam) and all(
        group.get("decoupled_weight_decay", False) for group in optimizer.param_groups
    )


class _Chunk(NamedTuple):
    """A noise chunk: drawn into ``noise`` (a scratch view), added to ``targets`` from ``sources`` (its slices)."""

    seed_index: int
    generator: torch.Generator
    noise: torch.Tensor
    targets: list[torch.Tensor]
    sources: list[torch.Tensor]


class _Bucket(NamedTuple):
    """The chunks of the trainable tensors of one (device, dtype), plain or DTensor shards."""

    wide: bool  # 64-bit seeds (accelerator generators)
    sharded: bool
    chunks: list[_Chunk]
    workers: int


def _shard_chunk_index(shard: tuple[int, ...], start: int) -> int:
    """A 64-bit name for the noise chunk starting at element ``start`` of a DTensor's local shard, ``shard`` =
    (parameter index, the shard's offset in the global tensor): the same on replicas of the shard, different
    for every other shard, whatever the process rank."""
    x = 0
    for value in (*shard, start):
        x = _chunk_seed(x, value, wide=True)
    return x


class DecayNoiseHook:
    """Optimizer step post-hook: ``theta <- (1 - lr_t * decay) * theta + sigma_t * eps`` for every parameter
    the optimizer holds (full tensors under DDP, the local shards of DTensor parameters under FSDP2, the fp32
    master partition under DeepSpeed).

    The noise for step ``t`` comes from dedicated generators re-seeded with ``(seed, t, ...)``, so it is a pure
    function of the step: a resumed run replays the noise of an uninterrupted one with no generator state to
    checkpoint. The trainable plain tensors of one (device, dtype) are seen as one concatenated vector cut into
    fixed-size chunks (``NOISE_CHUNK`` elements on CPU, ``NOISE_CHUNK_ACCELERATOR`` on accelerators), each drawn
    from its own generator seeded with ``(seed, t, rank_offset, chunk)`` into a small reusable scratch buffer and
    added to the weights it covers with one ``_foreach_add_`` (no full-size copy of the weights). Replicas draw
    identical noise (``rank_offset=0``), partitions (DeepSpeed) independent noise (``rank_offset=rank``).
    DTensor parameters (FSDP2) are noised on their local shards, chunked the same way, each chunk seeded by where
    it starts in the global tensors (parameter index, shard offset, position in the shard) instead of
    ``rank_offset``: every shard draws its own noise, replicas of a shard (HSDP) the same, and each element of
    the gathered tensor has std ``sigma``. On CPU the chunks are spread over ``torch.get_num_threads()``
    threads; the chunking does not depend on the thread count, so the noise does not either. The chunk
    layout is cached while the parameters' storages, sizes and trainability stay the same.

    Folded decay (``fold_decay=True``, the default): with a torch ``AdamW`` (or ``Adam`` with decoupled weight
    decay) whose param group has no weight decay of its own, the first call applies the decay itself and then
    adds ``decay`` to the group's ``weight_decay`` (marking the group with ``"ieu_folded_decay"``), so that from the
    next step on the optimizer applies ``(1 - lr_t * decay)`` inside its own (fused) update instead of this hook
    making an extra pass over the weights. For weights without gradient (zero gradient and zero moments, the
    documented contract) this is exactly ``theta <- (1 - lr_t * decay) * theta``; parameters that got no gradient
    at all (``grad is None``, which AdamW skips) are still decayed here. The trade-off: for weights *with* an
    update ``u``, AdamW decays before adding ``u`` where the hook decays after it, a difference of
    ``lr_t**2 * decay * u`` per step: that step's update is ``lr_t * decay`` (relatively) larger, e.g. 0.1% at
    lr 1e-3 and decay 1 (second order, and of no consequence to the contraction). The marker travels with
    the optimizer's state dict, so a resumed run does not fold twice (``attach`` makes that hold for sharded
    checkpoints too). Groups with their own weight decay, and other optimizers, keep the exact post-step decay
    (one ``_foreach_mul_`` pass).

    Args:
        decay: lambda >= 0.
        noise_std: sigma >= 0 (before the schedule).
        schedule: 'constant', 'linear' or 'cosine'.
        seed: base seed (``args.seed``).
        step_fn: returns the index of the optimizer step being taken (``state.global_step`` before increment).
        max_steps_fn: returns the total number of steps (for the schedule).
        every: inject noise every ``every`` steps with std ``sigma * sqrt(every)``.
        rank_offset: added to the seed of plain tensors (the process rank when they are partitions).
        fold_decay: fold the decay into a decoupled-weight-decay Adam's own update (see above).
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
        fold_decay: bool = True,
    ):
        self.decay, self.noise_std, self.schedule = decay, noise_std, schedule
        self.seed, self.every, self.rank_offset = seed, every, rank_offset
        self.step_fn, self.max_steps_fn = step_fn, max_steps_fn
        self.fold_decay = fold_decay
        self._skip_step = False  # set by attach's pre-step hook
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._generators: dict[tuple, torch.Generator] = {}
        self._layout: tuple | None = None
        self._buckets: list[_Bucket] = []
        self._pool = None

    # buffers, generators, chunk views and threads are caches: rebuilt on demand
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_buffers={}, _generators={}, _layout=None, _buckets=[], _pool=None)
        return state

    def attach(self, optimizer: torch.optim.Optimizer) -> HookHandles:
        """Register the hook on ``optimizer`` (returns a handle with ``remove()``), ready for sharded checkpoints:
        each param group gets the fold marker (None: not folded yet) before a checkpoint is loaded into it, since
        ``torch.distributed.checkpoint`` (accelerate's FSDP2 path) restores only the keys a group already has
        (without it a resumed run folds again and decays twice per step; the checkpoint must hold the marker, as
        any saved after attaching does); and the step it takes to create an empty optimizer's state is passed
        over (``is_state_init_step``: no training step, and its noise would land on freshly loaded weights)."""
        for group in optimizer.param_groups:
            group.setdefault(FOLDED_DECAY_KEY, None)
        pre = optimizer.register_step_pre_hook(self._note_state_init_step)
        return HookHandles(pre, optimizer.register_step_post_hook(self))

    def _note_state_init_step(self, optimizer: torch.optim.Optimizer, *args, **kwargs) -> None:
        self._skip_step = is_state_init_step(optimizer)

    def __call__(self, optimizer: torch.optim.Optimizer, *args, **kwargs) -> None:
        if self._skip_step:
            self._skip_step = False
            return
        if self.decay > 0:
            self.decay_step(optimizer)
        step = self.step_fn()
        if self.noise_std > 0 and (step + 1) % self.every == 0:
            sigma = self.noise_std * math.sqrt(self.every)
            sigma *= noise_schedule(self.schedule, step, self.max_steps_fn())
            if sigma > 0:
                self.apply_noise(optimizer.param_groups, sigma, step)

    @torch.no_grad()
    def decay_step(self, optimizer: torch.optim.Optimizer) -> None:
        """The decay of one step: applied here, or (folded) left to the optimizer for what it updates."""
        foldable = self.fold_decay and _decoupled_adam(optimizer)
        for group in optimizer.param_groups:
            factor = 1.0 - float(group["lr"]) * self.decay
            folded = group.get(FOLDED_DECAY_KEY)
            if folded is None:
                if factor != 1.0:  # this step ran without it
                    _scale([p for p in group["params"] if p.requires_grad], factor)
                if foldable and group.get("weight_decay", 0.0) == 0.0:
                    group["weight_decay"] = self.decay
                    group[FOLDED_DECAY_KEY] = self.decay
                continue
            if folded != self.decay:  # resumed with another lambda: the next steps use the new one
                group["weight_decay"] = group["weight_decay"] - folded + self.decay
                group[FOLDED_DECAY_KEY] = self.decay
            if factor != 1.0:  # AdamW leaves parameters without gradient alone
                _scale([p for p in group["params"] if p.grad is None and p.requires_grad], factor)

    @torch.no_grad()
    def apply_decay(self, param_groups: Iterable[dict]) -> None:
        """``theta <- (1 - lr * decay) * theta`` on every trainable parameter (no folding)."""
        for group in param_groups:
            factor = 1.0 - float(group["lr"]) * self.decay
            if factor != 1.0:
                _scale([p for p in group["params"] if p.requires_grad], factor)

    @torch.no_grad()
    def apply_noise(self, param_groups: Iterable[dict], sigma: float, step: int) -> None:
        """Add ``N(0, sigma^2)`` noise of step ``step`` to every trainable parameter of ``param_groups``."""
        base_seed = self.seed * _SEED_STRIDE + step * 7919
        for bucket in self._noise_buckets([p for group in param_groups for p in group["params"]]):
            self._noise_bucket(bucket, sigma, base_seed if bucket.sharded else base_seed + self.rank_offset)

    def _noise_bucket(self, bucket: _Bucket, sigma: float, base_seed: int) -> None:
        chunks, workers = bucket.chunks, bucket.workers
        seeds = [_chunk_seed(base_seed, chunk.seed_index, bucket.wide) for chunk in chunks]

        def run(worker: int) -> None:
            with torch.no_grad():  # grad mode is thread-local: worker threads need their own
                for index in range(worker, len(chunks), workers):
                    chunk = chunks[index]
                    chunk.generator.manual_seed(seeds[index])
                    chunk.noise.normal_(0.0, sigma, generator=chunk.generator)
                    torch._foreach_add_(chunk.targets, chunk.sources)

        if workers <= 1:
            run(0)
        else:
            list(self._thread_pool(workers).map(run, range(workers)))

    def _noise_buckets(self, params: list[torch.Tensor]) -> list[_Bucket]:
        """The noise chunks of ``params``, rebuilt only when their storages, sizes, trainability or the thread
        count change (views are cheap to keep and slow to rebuild; as they keep the storages alive, an equal
        ``data_ptr`` is the same storage)."""
        shards = local_tensors(params)
        layout = (
            min(torch.get_num_threads(), 64),
            tuple(map(_REQUIRES_GRAD, params)),
            tuple(map(torch.Tensor.data_ptr, shards)),
            tuple(map(torch.Tensor.numel, shards)),
        )
        if layout != self._layout:
            self._buckets = self._build_buckets(params, shards, layout[0])
            self._layout = layout
        return self._buckets

    def _build_buckets(self, params: list, shards: list, threads: int) -> list[_Bucket]:
        items: dict[tuple, list] = defaultdict(list)  # (device, dtype, sharded) -> [(tensor, shard name)]
        index = 0  # of the DTensor parameters: the same on every rank
        for param, shard in zip(params, shards):
            if not param.requires_grad or not param.numel():
                continue
            if shard is param:
                items[(param.device, param.dtype, False)].append((param, None))
                continue
            if shard.numel():
                items[(shard.device, shard.dtype, True)].append((shard, (index, *shard_offset(param))))
            index += 1
        return [
            self._bucket(device, dtype, chunked, threads) for (device, dtype, _), chunked in items.items()
        ]

    def _bucket(self, device, dtype, items: list[tuple], threads: int) -> _Bucket:
        """The chunks of the concatenated tensors of ``items`` (``(tensor, shard name or None)``)."""
        tensors = [tensor for tensor, _ in items]
        if not all(t.is_contiguous() for t in tensors):
            raise ValueError("IEU noise needs contiguous parameters; got a non-contiguous one.")
        cpu = device.type == "cpu"
        plan = _chunk_plan([t.numel() for t in tensors], NOISE_CHUNK if cpu else NOISE_CHUNK_ACCELERATOR)
        workers = max(1, min(threads if cpu else 1, len(plan)))
        size = max(n for n, _ in plan)
        buffers = [self._scratch(device, dtype, w, size) for w in range(workers)]
        flats = [t.view(-1) for t in tensors]
        chunks = []
        for position, (n, pieces) in enumerate(plan):
            noise = buffers[position % workers][:n]
            first, start = pieces[0][:2]
            shard = items[first][1]
            chunks.append(
                _Chunk(
                    position if shard is None else _shard_chunk_index(shard, start),
                    self._generator(device, position),  # created here, not in worker threads
                    noise,
                    [flats[i][a:b] for i, a, b, _, _ in pieces],
                    [noise[x:y] for _, _, _, x, y in pieces],
                )
            )
        return _Bucket(not cpu, items[0][1] is not None, chunks, workers)

    def _scratch(self, device, dtype, worker: int, numel: int) -> torch.Tensor:
        key = (device, dtype, worker)
        if key not in self._buffers or self._buffers[key].numel() < numel:
            self._buffers[key] = torch.empty(numel, device=device, dtype=dtype)
        return self._buffers[key]

    def _thread_pool(self, threads: int):
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None or self._pool._max_workers != threads:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ieu-noise")
        return self._pool

    def _generator(self, device: torch.device, index: int) -> torch.Generator:
        key = (device, index)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device)
        return self._generators[key]
