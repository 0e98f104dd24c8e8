"""Peak memory: the resident set size on CPU (``VmHWM``, reset through ``/proc/self/clear_refs``), the CUDA
allocator's peak on CUDA, and fresh processes so that a peak belongs to one measurement only."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, flags=re.M)
    return int(match.group(1)) if match else 0


def rss_bytes() -> int:
    """Current resident set size."""
    return _status_kb("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS (``VmHWM``) to the current RSS (Linux >= 4.0). False where not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since the process start or the last ``reset_peak_rss``."""
    hwm = _status_kb("VmHWM")
    if hwm:
        return hwm * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


class PeakMemory:
    """Context manager: ``.peak`` = peak bytes above the level at entry (CPU RSS or CUDA allocated)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.peak = 0
        self.base = 0

    def __enter__(self):
        import gc

        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            reset_peak_rss()
            self.base = rss_bytes()
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = peak_rss_bytes() - self.base
        return False


def in_fresh_process(fn: Callable, kwargs_list: list[dict], preload: list[str] | None = None) -> list[Any]:
    """Run ``fn(**kwargs)`` for each item, each in a fresh process forked from a preloaded fork server (so that
    a peak RSS belongs to one measurement only), one at a time, in the given order."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # Freed tensors must go back to the OS (mmap) rather than stay in glibc's heap between phases.
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(preload or [])
    results = []
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as pool:
        for kwargs in kwargs_list:
            results.append(pool.submit(fn, **kwargs).result())
    return results


def fmt_bytes(n: float) -> str:
    """Bytes in MiB, one decimal."""
    return f"{n / 2**20:.1f} MiB"
