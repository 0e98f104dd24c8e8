"""Hub model card and unlearning report.

The card's ``model-index`` carries the unlearning results. It never contains forget-set content: only the
number of forget examples and a SHA-256 fingerprint of them, so that an auditor holding the forget set can
check which set was removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPORT_FILE = "unlearning_report.json"
#: The card's Jinja template (``huggingface_hub.ModelCard.from_template``), shipped with the package.
TEMPLATE_FILE = Path(__file__).with_name("model_card_template.md")
# (report key, metric name on the card); "model-index" gets one entry per metric present.
CARD_METRICS = [
    ("forget/accuracy", "forget_accuracy"),
    ("retain/accuracy", "retain_accuracy"),
    ("test/accuracy", "test_accuracy"),
    ("forget/loss", "forget_loss"),
    ("retain/loss", "retain_loss"),
    ("test/loss", "test_loss"),
    ("forget/perplexity", "forget_perplexity"),
    ("retain/perplexity", "retain_perplexity"),
    ("test/perplexity", "test_perplexity"),
    ("forget/token_accuracy", "forget_token_accuracy"),
    ("retain/token_accuracy", "retain_token_accuracy"),
    ("mia/auc", "mia_auc"),
    ("mia/min_k_auc", "mia_min_k_auc"),
    ("forget_quality/ks_pvalue", "forget_quality_ks_pvalue"),
    # TOFU / MUSE keys (docs/metrics.md: OpenUnlearning's forget_Q_A_ROUGE, forget_truth_ratio, forget_quality, ...)
    ("forget/rouge_l_recall", "forget_rouge_l_recall"),
    ("retain/rouge_l_recall", "retain_rouge_l_recall"),
    ("forget/probability", "forget_probability"),
    ("forget/truth_ratio", "forget_truth_ratio"),
    ("forget_quality/truth_ratio_ks_pvalue", "forget_quality"),
    ("utility/model_utility", "model_utility"),
    ("forget/extraction_strength", "extraction_strength"),
    ("forget/exact_memorization", "exact_memorization"),
    ("mia/min_k_04_auc", "mia_min_k_04_auc"),
    ("mia/min_k_plus_plus_auc", "mia_min_k_plus_plus_auc"),
    ("mia/zlib_auc", "mia_zlib_auc"),
    ("privleak", "privleak"),
    # diffusion models (judged generation metrics, docs/metrics.md)
    ("forget/generation_accuracy", "forget_generation_accuracy"),
    ("retain/generation_accuracy", "retain_generation_accuracy"),
    ("quality/frechet_distance", "frechet_distance_judge_features"),
    ("quality/clip_score", "clip_score"),
    ("forget/clip_score", "forget_clip_score"),
    ("rcd/steps", "relearning_steps"),
    ("rcd/ratio_to_golden", "rcd_ratio_to_golden"),
    ("rcd/ratio_to_heldout", "rcd_ratio_to_heldout"),
]


def forget_fingerprint(examples: Any) -> dict:
    """Count and SHA-256 of a dataset (order-independent): the hash of the sorted per-example hashes of each
    example's canonical JSON. Reveals nothing of the content; anyone holding the set can recompute it."""
    rows = examples.to_list() if hasattr(examples, "to_list") else list(examples)
    digests = sorted(
        hashlib.sha256(json.dumps(r, sort_keys=True, default=str).encode()).hexdigest() for r in rows
    )
    return {"count": len(rows), "sha256": hashlib.sha256("".join(digests).encode()).hexdigest()}


def build_model_card(report: dict) -> Any:
    """A ``huggingface_hub.ModelCard`` from an unlearning report (see ``write_report``)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    adapter = _is_adapter(report)
    metadata = card_metadata(report, adapter)
    task_type = metadata["pipeline_tag"]
    dataset_name = report.get("scenario") or "custom"
    metrics = report.get("metrics", {}).get("unlearned", {})
    eval_results = [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            metric_type=name,
            metric_value=float(metrics[key]),
        )
        for key, name in CARD_METRICS
        if isinstance(metrics.get(key), (int, float))
    ]
    card_data = ModelCardData(
        base_model=report.get("base_model") if is_hub_model_id(report.get("base_model")) else None,
        library_name=metadata["library_name"],
        # the base model's license (its own card's), never one we made up
        license=report.get("license"),
        license_name=report.get("license_name"),
        license_link=report.get("license_link"),
        model_name=report.get("model_name", f"unlearned-{report.get('method', 'model')}"),
        tags=["hf_unlearn", "machine-unlearning", f"unlearning-{report.get('method')}"]
        + (["lora", "peft"] if adapter else []),
        eval_results=eval_results or None,
        pipeline_tag=task_type,
    )
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE_FILE.read_text(), **_template_fields(report)
    )


def _kind(report: dict):
    """The model kind of the reported model: its task, and its architecture's class name when recorded."""
    from ..kinds import kind_for_task

    return kind_for_task(report.get("task"), str(report.get("architecture") or ""))


def card_metadata(report: dict, adapter: bool = False) -> dict:
    """The card's ``pipeline_tag`` and ``library_name``, by the reported model's kind."""
    return _kind(report).card_metadata(adapter)


def pipeline_tag(report: dict) -> str:
    """The Hub's pipeline tag of the reported model: from its kind (its architecture's class name when
    recorded)."""
    return _kind(report).pipeline_tag


def _template_fields(report: dict) -> dict:
    from .citations import bibtex
    from .headline import DEFINITIONS, headline_keys
    from .palette import ordered
    from .robustness import robustness_tables
    from .sequential import sequential_table

    rows = report.get("metrics", {})
    rows = {name: rows[name] for name in ordered(list(rows))}
    keys = sorted({k for m in rows.values() for k, v in m.items() if _is_number(v)})
    headline = [k for k in headline_keys(report.get("task", "classification"), rows) if k in keys]
    return {
        "summary_table": _markdown_table(rows, headline),
        "rows_text": _rows_text(list(rows)),
        "definitions": [(key, DEFINITIONS[key]) for key in headline if key in DEFINITIONS],
        # the attack/* keys are in the Robustness tables
        "results_table": _transposed_table(
            rows, [k for k in keys if not _repeats_golden(k, rows) and not k.startswith("attack/")]
        ),
        "robustness": robustness_tables(rows, _fmt),
        "sequential": sequential_table(
            report.get("sequential"), _fmt, getattr(_kind(report), "primary_forget_metrics", ())
        ),
        "sequential_k": (report.get("sequential") or {}).get("k"),
        "sequential_rcd": any(
            "current/rcd/steps" in r for r in (report.get("sequential") or {}).get("table", [])
        ),
        "model_name": report.get("model_name", f"unlearned-{report.get('method', 'model')}"),
        "method": report.get("method"),
        "base": _base_text(report),
        "adapter": _adapter_snippet(report) if _is_adapter(report) else None,
        "hyperparameters": json.dumps(
            report.get("hyperparameters", {}), indent=2, sort_keys=True, default=str
        ),
        "steps": _steps_text(report.get("hyperparameters", {})),
        "reproducibility": report.get("reproducibility") or {},
        "fingerprint": report.get("forget_fingerprint", {}),
        "flags": report.get("flags", []),
        "plots": report.get("plots", []),
        "stopping": report.get("stopping"),
        "versions": report.get("versions", {}),
        "scenario": report.get("scenario") or "user data",
        "citations": bibtex(set(keys)),
    }


def _steps_text(hyperparameters: dict) -> str | None:
    """The optimizer steps that ran, next to those asked for (they differ when a stopping rule ended the run)."""
    if "steps_run" not in hyperparameters:
        return None
    asked = ", ".join(
        f"`{k}`: {hyperparameters[k]}" for k in ("max_steps", "num_train_epochs") if k in hyperparameters
    )
    steps = hyperparameters["steps_run"]
    return f"**{steps}** optimizer step{'' if steps == 1 else 's'} ran ({asked})."


def _rows_text(names: list[str]) -> str:
    """What each row of the results tables is."""
    known = {
        "original": "the model before unlearning",
        "golden": "the model retrained from the same start without the forget set: the target",
    }
    known["unlearned"] = "this model"
    parts = [f"`{name}`: {known.get(name, 'unlearned with that method')}" for name in names]
    if "golden" in names:
        advice = (
            "Unlearning worked when an unlearned row is close to the golden row on the forget-set columns (not "
            "at an extreme) while the utility columns stay near the original's."
        )
    else:
        advice = "There is no golden model: compare with the original and read the golden-free columns."
    return f"Rows: {'; '.join(parts)}. {advice}"


# -- the model unlearning started from --------------------------------------------------------------------
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def is_hub_model_id(value: Any) -> bool:
    """Whether ``value`` has the shape of a Hub model id (``org/name`` or ``name``): the card's ``base_model`` takes
    nothing else (the Hub refuses a card whose ``base_model`` is a local path)."""
    return isinstance(value, str) and bool(_REPO_ID.match(value)) and ".." not in value


def base_model_facts(name_or_path: str | None) -> dict:
    """What the report records of the model a run started from: ``base_model`` (a Hub model id or ``None``),
    ``base_model_folder`` (the name of a local folder, never its full path) and the base model's ``license``
    (with ``license_name`` and ``license_link`` for ``license: other``) from the folder's own model card.

    A folder of the Hub cache (``.../models--org--name/snapshots/<sha>``) gives its Hub id; another local folder
    has none (the card names the folder in its text instead)."""
    if not name_or_path:
        return {"base_model": None}
    if not os.path.isdir(name_or_path):
        return {"base_model": name_or_path if is_hub_model_id(name_or_path) else None}
    folder = os.path.realpath(name_or_path)
    cached = re.search(r"models--([^/]+?)--([^/]+)/snapshots/[^/]+$", folder)
    facts: dict[str, Any] = {
        "base_model": f"{cached[1]}/{cached[2]}" if cached else None,
        "base_model_folder": os.path.basename(folder),
    }
    facts.update(_card_license(os.path.join(folder, "README.md")))
    return facts


def _card_license(readme: str) -> dict:
    from huggingface_hub.repocard import metadata_load

    if not os.path.isfile(readme):
        return {}
    try:
        meta = metadata_load(readme) or {}
    except Exception as err:  # a malformed card is the user's, not a reason to fail the run
        logger.warning("Could not read the license from %s: %s", readme, err)
        return {}
    return {
        k: str(meta[k]) for k in ("license", "license_name", "license_link") if isinstance(meta.get(k), str)
    }


def _base_text(report: dict) -> str | None:
    if report.get("scenario"):
        description = report.get("scenario_description") or ""
        return f"the original model of the built-in scenario `{report['scenario']}`. {description}".strip()
    if is_hub_model_id(report.get("base_model")):
        return f"`{report['base_model']}`."
    if report.get("base_model_folder"):
        return f"a local model folder, `{report['base_model_folder']}` (not a Hub model)."
    return None


def _is_adapter(report: dict) -> bool:
    return bool(report.get("hyperparameters", {}).get("lora"))


def _adapter_snippet(report: dict) -> str:
    """The lines that load this LoRA adapter onto its base model."""
    adapter = (
        'PeftModel.from_pretrained(base, "path/to/this/adapter")  # this folder, or its Hub repository id'
    )
    if report.get("scenario"):
        seed = (report.get("reproducibility") or {}).get("seed", 0)  # the seed the scenario was built with
        return "\n".join(
            [
                "from hf_unlearn.scenarios import load_scenario",
                "from peft import PeftModel",
                "",
                f'base = load_scenario("{report["scenario"]}", seed={seed}).original_model()',
                f"model = {adapter}",
            ]
        )
    auto = _kind(report).auto_class
    base = report["base_model"] if is_hub_model_id(report.get("base_model")) else None
    base = base or f"path/to/{report.get('base_model_folder') or 'the-base-model'}"
    return "\n".join(
        [
            "from peft import PeftModel",
            f"from transformers import {auto}",
            "",
            f'base = {auto}.from_pretrained("{base}")  # the model unlearning started from',
            f"model = {adapter}",
        ]
    )


def _repeats_golden(key: str, rows: dict[str, dict]) -> bool:
    # "golden/forget/ua" on every row is the golden column's "forget/ua"
    return key.startswith("golden/") and "golden" in rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _markdown_table(rows: dict[str, dict], keys: list[str]) -> str:
    """One row per model, one column per key (the headline: narrow enough for the Hub's page)."""
    table = ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, values in rows.items():
        table.append(f"| {name} | " + " | ".join(_fmt(values.get(k)) for k in keys) + " |")
    return "\n".join(table)


def _transposed_table(rows: dict[str, dict], keys: list[str]) -> str:
    """One row per metric, one column per model (every metric, still a few columns wide)."""
    names = list(rows)
    table = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in keys:
        table.append(f"| {key} | " + " | ".join(_fmt(rows[n].get(key)) for n in names) + " |")
    return "\n".join(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.3g}" if abs(value) < 1e-3 else f"{value:.3f}"
    return "" if value is None else str(value)


def write_report(output_dir: str, report: dict) -> dict:
    """Write ``unlearning_report.json`` and the model card ``README.md`` into ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    report = {**report, "versions": report.get("versions") or framework_versions()}
    with open(os.path.join(output_dir, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True, default=_json_default)
    build_model_card(report).save(os.path.join(output_dir, "README.md"))
    return report


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def framework_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in (
        "hf-unlearn",
        "transformers",
        "torch",
        "peft",
        "accelerate",
        "datasets",
        "huggingface_hub",
        "diffusers",
    ):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def push_to_hub(output_dir: str, repo_id: str, token: str | None = None, private: bool = True) -> str | None:
    """Upload ``output_dir`` (weights, card, report, plots) to the Hub. Returns the repo URL, or ``None`` when
    offline. Raises ``ValueError`` when no token is available."""
    from huggingface_hub import HfApi, get_token

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        logger.warning("HF_HUB_OFFLINE is set: skipping push_to_hub of %s.", output_dir)
        return None
    token = token or get_token()
    if not token:
        raise ValueError("push_to_hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN.")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        folder_path=output_dir, repo_id=repo_id, ignore_patterns=["checkpoint-*", "*.pt", "*.pth"]
    )
    return f"https://huggingface.co/{repo_id}"
