"""The machine description every result records, and the fixed torch thread count."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
from pathlib import Path

from .paths import ROOT


def default_threads() -> int:
    """One thread unless ``--threads`` says otherwise: single-threaded ratios are the most reproducible, and on a
    shared machine a multi-threaded op waits for its slowest thread (measured here under load: a 5.3M-element
    ``mul_`` took 1.7 ms on one thread and 8 ms on two). On a dedicated machine pass ``--threads N``."""
    return 1


def physical_cores() -> int | None:
    """Physical cores from ``/proc/cpuinfo`` (None where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    pairs = set(re.findall(r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", text, flags=re.S))
    return len(pairs) or None


def cpu_model() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def set_threads(threads: int) -> int:
    """``torch.set_num_threads(threads)``; returns the thread count torch reports afterwards."""
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on."""
    import torch
    import transformers

    info = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
