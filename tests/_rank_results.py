"""What a 2-process test worker hands back to its test (read by ``conftest.two_rank_results``)."""

import json
import os

import torch.distributed as dist
from safetensors.torch import save_file


def write_rank_results(out: str, rank: int, tensors: dict, found: dict) -> None:
    """Write this rank's tensors and findings, then leave the process group with the other ranks."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, f"rank{rank}.safetensors"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(found, f)
    dist.barrier()
    dist.destroy_process_group()
