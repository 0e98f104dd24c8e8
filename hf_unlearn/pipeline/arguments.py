"""``RunArguments``: the options of ``hf-unlearn run`` that are not ``UnlearningConfig`` fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: ``RunArguments``' RCD options -> the ``RelearnConfig`` field each sets (as a run's report records it)
RELEARN_FIELDS = {
    "relearn_learning_rate": "learning_rate",
    "relearn_max_steps": "max_steps",
    "relearn_batch_size": "batch_size",
    "relearn_target": "target",
}


def option(default: Any, text: str) -> Any:
    """A dataclass field with its ``--help`` text, as ``HfArgumentParser`` reads it."""
    return field(default=default, metadata={"help": text})


def _source_names() -> str:
    """The registered benchmark loaders of ``hf_unlearn.sources``, quoted (that package imports no torch)."""
    from ..sources import SOURCES

    return ", ".join(repr(name) for name in sorted(SOURCES))


def settings_mapping(value: Any, name: str) -> dict | None:
    """A mapping option's value: a mapping as it is (a recipe's block), a YAML/JSON string parsed into one (the
    command line); ``ValueError`` for anything else."""
    if value is None or isinstance(value, dict):
        return value or None
    import yaml

    try:
        parsed = yaml.safe_load(value) if isinstance(value, str) else value
    except yaml.YAMLError:
        parsed = value
    if parsed in (None, ""):
        return None
    if not isinstance(parsed, dict):
        raise ValueError(
            f"{name} must be a mapping of setting: value (e.g. '{{esd_eta: 2.0}}'), got {value!r}."
        )
    return parsed


@dataclass
class RunArguments:
    """What to unlearn from what: a built-in scenario, or a local model directory with dataset files."""

    scenario: str | None = option(
        None,
        "Built-in scenario (polarity-minilm, news-gpt2, authors-qa, tofu-llama, digits-random10, "
        "digits-random50, digits-class): model, data, original, golden.",
    )
    model_name_or_path: str | None = option(
        None, "Local model directory (safetensors) to unlearn, when no scenario is given."
    )
    golden_model_path: str | None = option(
        None, "Local golden model directory (retrained without the forget set)."
    )
    forget_dataset: str | None = option(
        None,
        "Forget set: a .json/.jsonl/.csv file or a datasets.save_to_disk folder (comma-separated: one per request, "
        "unlearned one after another).",
    )
    retain_dataset: str | None = option(None, "Retain set, same formats.")
    test_dataset: str | None = option(None, "Held-out set for test metrics and the MIA.")
    data_source: str | None = option(
        None,
        f"A public benchmark's local copy ({_source_names()}, see docs/benchmarks.md) gives the forget, "
        "retain and test sets instead of forget_dataset/retain_dataset/test_dataset.",
    )
    data_dir: str | None = option(
        None, "The benchmark's folder (e.g. hf download locuslab/TOFU --repo-type dataset --local-dir DIR)."
    )
    data_subset: str | None = option(
        None,
        "The benchmark's forget subset (TOFU: forget01, forget05, forget10 (default); MUSE: forget "
        "(default), scal_forget_K, sust_forget_K; CIFAR: random10 (default), random50, class).",
    )
    forget_class: int = option(0, "CIFAR's class-wise protocol (data_subset=class): the class to forget.")
    scenario_cache_dir: str = option("outputs/scenarios", "Where scenario original/golden models are cached.")
    sequential_requests: int = option(
        0,
        "Unlearning requests that keep coming: cut the forget set into this many requests (a scenario's by person, "
        "with the golden model of each prefix), unlearned one after another; a comma-separated forget_dataset "
        "(and golden_model_path) list gives one file per request instead. 0: one request.",
    )
    lora_r: int = option(0, "LoRA rank; 0 trains the full weights.")
    lora_alpha: int = option(16, "LoRA alpha.")
    lora_dropout: float = option(0.0, "LoRA dropout.")
    lora_target_modules: list[str] | None = option(
        None, "Modules to adapt (default: PEFT's choice for the architecture)."
    )
    evaluate: bool = option(True, "Compute evaluate_unlearning metrics after unlearning.")
    generation: bool | None = option(
        None,
        "Causal LMs: also generate greedy answers and score them (ROUGE-L, TOFU model utility). "
        "Default: the scenario's choice (on for tofu-llama), off for your own data.",
    )
    max_new_tokens: int | None = option(
        None, "Generation budget per answer (default: the scenario's, else 200 as TOFU)."
    )
    relearn: bool = option(True, "Compute the relearning convergence delay (RCD).")
    relearn_max_steps: int = option(100, "RCD: relearning step budget.")
    relearn_learning_rate: float = option(1e-4, "RCD: relearning learning rate.")
    relearn_batch_size: int = option(8, "RCD: relearning batch size.")
    relearn_target: str | None = option(
        None,
        "RCD: what must recover, 'loss' or 'accuracy' (default: loss for causal LMs, accuracy for "
        "classifiers).",
    )
    attacks: str | None = option(
        None,
        "Attacks as evaluation, comma-separated (quantize_8bit, quantize_4bit, relearn_partial; torchao_int8, "
        "torchao_int4 with the quantization extra): the forget metrics "
        "of attacked copies of each model, against the golden model under the same attack (attack/* keys).",
    )
    attack_relearn_steps: int = option(
        25,
        "relearn_partial: fine-tuning steps on half the forget set (learning rate and batch size: the RCD ones).",
    )
    eval_attention_mask: str = option(
        "length",
        "Metrics of causal LMs: 'length' masks padding only; 'pad_token' masks every token equal to the pad id, "
        "as OpenUnlearning's collator does (a tokenizer without a pad token pads with EOS, so EOS inside a "
        "sequence is masked too): use it to match OpenUnlearning's published numbers.",
    )
    diffusion: str | None = option(
        None,
        "Diffusion models: DiffusionArguments fields as a mapping (a recipe's `diffusion:` block, or on the command "
        "line YAML/JSON such as '{esd_eta: 2.0, anchor_prompt: a dog}', which updates the recipe's mapping key "
        "by key): min_timestep, max_timestep, eval_seed, esd_eta, null_class, anchor_class, num_classes, "
        "anchor_prompt (docs/diffusion.md).",
    )
    sample_grids: bool = option(
        True,
        "Diffusion models: draw a grid of samples of the unlearned, golden and original models into the card "
        "(samples_<model>.png: one row per class, or per forget / kept prompt; the same noise for every model).",
    )
    overwrite_output_dir: bool = option(
        False,
        "Allow writing into a non-empty output_dir (resuming from a checkpoint in it needs no such permission).",
    )
    trust_remote_code: bool = option(
        False, "Allow custom model code from the model directory (off by default)."
    )

    def __post_init__(self) -> None:
        self.diffusion = settings_mapping(self.diffusion, "diffusion")
        if self.diffusion:  # unknown DiffusionArguments fields fail before anything is loaded
            from ..diffusion.args import check_settings  # imports no diffusers

            check_settings(self.diffusion)
        if self.attacks:  # unknown names fail before anything is trained
            from ..metrics.attacks import parse_attacks

            parse_attacks(self.attacks)
        if self.attack_relearn_steps < 1:
            raise ValueError(f"attack_relearn_steps must be >= 1, got {self.attack_relearn_steps}.")
