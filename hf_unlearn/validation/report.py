"""Write the linear-theory report: ``theory.json``, ``theory.md`` and PNG figures.

``hf-unlearn theory --output_dir DIR`` calls ``write_theory_report(DIR)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hf_unlearn.validation.linear import TheoryConfig, run_scenarios, single_threaded_blas, summarize
from hf_unlearn.validation.plots import plot_all


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _closed_form_rows(sc: dict[str, dict[str, Any]]) -> list[list[Any]]:
    def row(label: str, get: Any) -> list[Any]:
        return [label] + [get(s) for s in sc.values()]

    return [
        row("GD original vs `pinv(X) y`", lambda s: s["pretrain"]["err_original_vs_pinv"]),
        row("GD golden vs `pinv(X_r) y_r`", lambda s: s["pretrain"]["err_golden_vs_pinv"]),
        row("golden vs `P_r w*`", lambda s: s["pretrain"]["err_golden_vs_Pr_wstar"]),
        row("FT limit vs `w_o + X_r^+(y_r - X_r w_o)`", lambda s: s["finetune"]["err_vs_closed_form"]),
        row("`(w_ft - w_g) - (I-P_r) w_o`", lambda s: s["finetune"]["err_gap_vs_forget_only_component"]),
        row("project + FT vs golden", lambda s: s["removal"]["project"]["dist_to_golden"]),
        row("DR GD (alpha=1) vs closed-form limit", lambda s: s["dr"]["limit_err_gd_vs_closed_form"]["1"]),
        row("IEU without noise vs ridge (after T steps)", lambda s: s["ieu"]["err_noiseless_vs_ridge"]),
    ]


def _model_rows(sc: dict[str, dict[str, Any]]) -> list[list[Any]]:
    def losses(get: Any) -> list[Any]:
        out: list[Any] = []
        for s in sc.values():
            out += list(get(s))
        return out

    rem = {
        "project": "project + FT",
        "mask_forget_only": "mask forget-only coords (keep overlap) + FT",
        "mask_all_forget": "mask all forget coords (drop overlap) + FT",
    }
    rows = [
        [
            "original",
            *losses(lambda s: (s["pretrain"]["original_retain_loss"], s["pretrain"]["original_forget_loss"])),
        ],
        [
            "golden",
            *losses(lambda s: (s["pretrain"]["golden_retain_loss"], s["pretrain"]["golden_forget_loss"])),
        ],
        ["FT from original", *losses(lambda s: (s["finetune"]["retain_loss"], s["finetune"]["forget_loss"]))],
    ]
    for key, label in rem.items():
        rows.append(
            [
                label,
                *losses(lambda s, k=key: (s["removal"][k]["retain_loss"], s["removal"][k]["forget_loss"])),
            ]
        )
    rows.append(
        [
            "DR limit (any alpha > 0)",
            *losses(lambda s: (s["dr"]["limit_retain_loss"], s["dr"]["limit_forget_loss"])),
        ]
    )
    rows.append(
        [
            "IEU ridge limit `w_lam`",
            *losses(lambda s: (s["ieu"]["retain_loss_ridge"], s["ieu"]["forget_loss_ridge"])),
        ]
    )
    rows.append(
        ["IEU (one noisy chain)", *losses(lambda s: (s["ieu"]["retain_loss"], s["ieu"]["forget_loss"]))]
    )
    return rows


def _dr_rows(sc: dict[str, dict[str, Any]]) -> list[list[Any]]:
    first = next(iter(sc.values()))["dr"]
    rows = []
    for i, alpha in enumerate(first["alphas"]):
        row: list[Any] = [alpha]
        for s in sc.values():
            dr = s["dr"]
            row += [
                dr["forget_loss"][i],
                dr["retain_loss"][i],
                dr["forget_gap_to_golden"][i],
                dr["dist_to_golden"][i],
            ]
        rows.append(row)
    return rows


def _ieu_rows(sc: dict[str, dict[str, Any]]) -> list[list[Any]]:
    keys = [
        ("rate_theory", "rate 1 - eta*lam (theory)"),
        ("rate_fit_noiseless", "fitted rate, no noise"),
        ("rate_fit_noisy_mean", "fitted rate, mean of noisy chains"),
        ("variance_bound", "variance bound sigma^2/(1-(1-eta lam)^2)"),
        ("var_forget_only_exact", "forget-only variance, exact"),
        ("var_forget_only_measured", "forget-only variance, measured"),
        ("var_row_exact_mean", "row-space variance (mean over directions), exact"),
        ("var_row_measured_mean", "row-space variance (mean over directions), measured"),
        ("var_row_measured_max", "row-space variance (max over directions), measured"),
        ("err_chain_mean_vs_ridge", "distance of the chain mean from w_lam at the last step"),
        ("chain_mean_stat_scale", "its expected size `sqrt(tr Sigma / K)`"),
    ]
    rows = [[label] + [s["ieu"][k] for s in sc.values()] for k, label in keys]
    for row, (key, _) in zip(rows, keys):
        if key.startswith("rate"):
            row[1:] = [f"{v:.6f}" for v in row[1:]]
    return rows


def _relearn_rows(sc: dict[str, dict[str, Any]]) -> list[list[Any]]:
    models = list(next(iter(sc.values()))["relearn"])
    rows = []
    for m in models:
        row: list[Any] = [m]
        for s in sc.values():
            r = s["relearn"][m]
            row += [r["steps"], r["predicted_steps"], r["initial_forget_loss"]]
        rows.append(row)
    return rows


def theory_markdown(summary: dict[str, Any]) -> str:
    """Markdown tables of the key numbers of a ``run_all`` summary."""
    sc = summary["scenarios"]
    names = list(sc)
    cfg = summary["config"]
    lines = [
        "# Linear-regression theory of unlearning: measured numbers",
        "",
        f"Seed {summary['seed']}; d = {cfg['d']}, n_r = {cfg['n_r']}, n_f = {cfg['n_f']}, overlap d_lap = {cfg['d_lap']}. "
        "Losses are `||Xw - y||^2 / (2n)`. See docs/theory.md for what each number means.",
        "",
        "## Closed forms vs gradient-descent simulations (norm of the difference)",
        "",
        *_table(["check", *names], _closed_form_rows(sc)),
        "## Retain / forget loss of each model",
        "",
        *_table(["model"] + [f"{n} {k}" for n in names for k in ("retain", "forget")], _model_rows(sc)),
        f"## DR alpha sweep ({cfg['dr_steps']} GD steps from the original, target y'_f = {cfg['dr_target']})",
        "",
        "gap = L_f(golden) - L_f(DR); dist = ||w_DR - w_golden||.",
        "",
        *_table(
            ["alpha"] + [f"{n} {k}" for n in names for k in ("forget", "retain", "gap", "dist")], _dr_rows(sc)
        ),
        f"## IEU (lambda = {cfg['ieu_lam']}, sigma = {cfg['ieu_sigma']}, {cfg['ieu_chains']} chains, "
        f"{cfg['ieu_chain_steps']} noisy steps with burn-in {cfg['ieu_burn_in']}; {cfg['ieu_steps']} noiseless steps)",
        "",
        *_table(["quantity", *names], _ieu_rows(sc)),
        "## Relearning steps (GD on the forget set)",
        "",
        "threshold = (1 + {s}) L_f(original) + {e} * mean(y_f^2); simulated / closed-form prediction / start loss.".format(
            s=cfg["relearn_rel_slack"], e=cfg["relearn_eps"]
        ),
        "",
        *_table(
            ["model"] + [f"{n} {k}" for n in names for k in ("steps", "predicted", "L_f at start")],
            _relearn_rows(sc),
        ),
    ]
    return "\n".join(lines)


def write_theory_report(output_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """Run ``run_all`` and write ``theory.json``, ``theory.md`` and the figures into ``output_dir``.

    Returns the ``run_all`` summary dict (with ``"figures"`` listing the PNG file names).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = TheoryConfig()
    results = run_scenarios(seed, config)
    summary = summarize(results, seed, config)
    with single_threaded_blas():
        summary["figures"] = [p.name for p in plot_all(results, out)]
    (out / "theory.json").write_text(json.dumps(summary, indent=2))
    (out / "theory.md").write_text(theory_markdown(summary) + "\n")
    return summary
