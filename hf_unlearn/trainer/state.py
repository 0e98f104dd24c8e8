"""What an ``UnlearningTrainer`` checkpoint holds besides ``Trainer``'s: the reference log-probs, SalUn's
update masks and the run state (the resolved ascent cap, the stopping record), and how they come back."""

from __future__ import annotations

import json
import os

import torch

REFERENCE_FILE = "npo_reference.safetensors"
MASK_FILE = "saliency_mask.safetensors"  # salun's update mask, computed once on the original model
STATE_FILE = "unlearning_state.json"


def resolve_checkpoint(output_dir: str, resume_from_checkpoint: str | bool | None) -> str | None:
    """The checkpoint folder ``train(resume_from_checkpoint=...)`` resumes from (``True``: the last one in
    ``output_dir``), or None."""
    if resume_from_checkpoint is True:
        from transformers.trainer_utils import get_last_checkpoint

        found = get_last_checkpoint(output_dir)
        if found is None:
            raise ValueError(f"No checkpoint found in output_dir {output_dir!r} to resume from.")
        return found
    return resume_from_checkpoint or None


def save_run_state(trainer, folder: str, masks: dict[str, torch.Tensor] | None = None) -> None:
    """Write the trainer's reference cache, update masks (``masks``, the full ones; default
    ``trainer.update_masks``) and run state into checkpoint ``folder``."""
    from safetensors.torch import save_file

    if trainer.ref_logprob is not None:
        cache = {"ref_logprob": trainer.ref_logprob, "ref_alt_logprob": trainer.ref_alt_logprob}
        cache = {k: v.contiguous() for k, v in cache.items() if v is not None}
        save_file(cache, os.path.join(folder, REFERENCE_FILE))
    masks = trainer.update_masks if masks is None else masks
    if masks is not None:
        masks = {name: mask.to(torch.uint8).contiguous() for name, mask in masks.items()}
        save_file(masks, os.path.join(folder, MASK_FILE))
    state = {}
    if trainer.forget_loss_cap_source in ("default", "heldout"):
        state["forget_loss_cap"] = trainer.method.forget_loss_cap
    if trainer.stopping is not None:
        state["stopping"] = trainer.stopping.record.to_dict()
        trainer.stopping.save(folder)
    if state:
        with open(os.path.join(folder, STATE_FILE), "w") as f:
            json.dump(state, f)


def load_reference(checkpoint: str) -> dict[str, torch.Tensor] | None:
    """The reference log-probs saved in ``checkpoint``, or None."""
    path = os.path.join(checkpoint, REFERENCE_FILE)
    if not os.path.isfile(path):
        return None
    from safetensors.torch import load_file

    return load_file(path)


def load_masks(checkpoint: str) -> dict[str, torch.Tensor] | None:
    """SalUn's update masks saved in ``checkpoint``, or None."""
    path = os.path.join(checkpoint, MASK_FILE)
    if not os.path.isfile(path):
        return None
    from safetensors.torch import load_file

    return {name: mask.bool() for name, mask in load_file(path).items()}


def load_state(checkpoint: str | None) -> dict:
    """The run state saved in ``checkpoint`` (``{}`` when there is none)."""
    path = os.path.join(checkpoint, STATE_FILE) if checkpoint else ""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)
