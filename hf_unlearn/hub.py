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
from typing import Any

logger = logging.getLogger(__name__)

REPORT_FILE = "unlearning_report.json"
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

    task = report.get("task", "classification")
    task_type = "text-classification" if task == "classification" else "text-generation"
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
        base_model=report.get("base_model"),
        library_name="transformers",
        license=report.get("license", "apache-2.0"),
        model_name=report.get("model_name", f"unlearned-{report.get('method', 'model')}"),
        tags=["hf_unlearn", "machine-unlearning", f"unlearning-{report.get('method')}"],
        eval_results=eval_results or None,
        pipeline_tag=task_type,
    )
    return ModelCard.from_template(card_data, template_str=_TEMPLATE, **_template_fields(report))


def _template_fields(report: dict) -> dict:
    from .citations import bibtex
    from .headline import headline_keys
    from .palette import ordered

    rows = report.get("metrics", {})
    rows = {name: rows[name] for name in ordered(list(rows))}
    keys = sorted({k for m in rows.values() for k, v in m.items() if _is_number(v)})
    headline = [k for k in headline_keys(report.get("task", "classification"), rows) if k in keys]
    return {
        "summary_table": _markdown_table(rows, headline),
        "results_table": _transposed_table(rows, [k for k in keys if not _repeats_golden(k, rows)]),
        "model_name": report.get("model_name", f"unlearned-{report.get('method', 'model')}"),
        "method": report.get("method"),
        "hyperparameters": json.dumps(report.get("hyperparameters", {}), indent=2, sort_keys=True),
        "reproducibility": report.get("reproducibility") or {},
        "fingerprint": report.get("forget_fingerprint", {}),
        "flags": report.get("flags", []),
        "plots": report.get("plots", []),
        "stopping": report.get("stopping"),
        "versions": report.get("versions", {}),
        "scenario": report.get("scenario") or "user data",
        "citations": bibtex(set(keys)),
    }


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


_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

This model was produced with `hf_unlearn` by **machine unlearning** (`{{ method }}`):
the influence of a forget set was removed from the original model ({{ scenario }}) without retraining,
and the result was compared with the *golden* model, retrained from the same initialization without the
forget set.

## Forget set (fingerprint only)

The forget set's content is not part of this card. It held **{{ fingerprint.count }}** examples;
SHA-256 fingerprint (sorted per-example hashes of the canonical JSON of each example):
`{{ fingerprint.sha256 }}`.

## Results

Rows: the original model, the golden model, and this unlearned model. Every forget-set number should be
close to the golden model's, not at an extreme: forget accuracy or ROUGE-L near golden's, forget quality
(the KS-test p-value of the truth ratios against golden's) high, PrivLeak near 0 (negative: the forget set
is still recognizable; positive: it was pushed past what a model that never saw it does);
`rcd/ratio_to_golden` is the relearning convergence delay relative to the golden model (1.0 is ideal, near
0 means the forgotten data is still recoverable). Read them next to retain utility. Definitions: the
`hf_unlearn` documentation, `docs/metrics.md`.

{{ summary_table }}

<details>
<summary>All metrics</summary>

{{ results_table }}

</details>
{% if flags %}
**Warnings:**
{% for flag in flags %}- {{ flag }}
{% endfor %}{% endif %}

{% if plots %}
## Figures

The same colour is the same model in every figure (original grey, golden black).
{% for plot in plots %}
![{{ plot }}]({{ plot }}){% endfor %}
{% endif %}
{% if stopping %}
## When unlearning stopped

Held-out-referenced stopping (`stopping="{{ stopping.rule }}"`, no golden model involved): every {{ stopping.every }}
steps the forget set's per-example losses were compared with those of held-out data of the same kind.
{% if stopping.stopped_step is not none %}Stopped at step **{{ stopping.stopped_step }}**{% elif stopping.kept_step is not none %}Kept the weights of step **{{ stopping.kept_step }}**{% else %}It did not stop early{% endif %}: {{ stopping.reason }}.
{% endif %}
## Unlearning hyperparameters

The `UnlearningConfig` fields this run used: the training fields, those `{{ method }}` reads and those of the
options that were on (forget-loss cap, held-out stopping, influence removal).

```json
{{ hyperparameters }}
```

## Reproducibility
{% for name, v in reproducibility.items() %}
- {{ name }}: {{ v }}{% endfor %}{% for name, v in versions.items() %}
- {{ name }}: {{ v }}{% endfor %}

## Citation

```bibtex
{{ citations }}
```
"""
