"""Tests of hf_unlearn.validation.linear: every claim of the linear theory, simulation vs closed form."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from hf_unlearn.validation import linear as lin

SEEDS = (0, 1, 2, 3)
SCENARIO_SEEDS = (1, 2)  # full run_scenario (with the noisy IEU chains); seed 0 runs in the report test
EXACT = 1e-8


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """Matrices here are tiny: BLAS threads only add overhead (and thrash on a busy machine)."""
    with lin.single_threaded_blas():
        yield


@pytest.fixture(scope="module")
def scenario_results() -> dict[tuple[str, int], lin.ScenarioResult]:
    return {(s, seed): lin.run_scenario(s, seed) for s in lin.SCENARIOS for seed in SCENARIO_SEEDS}


@pytest.fixture(scope="module")
def pretrained() -> dict[tuple[str, int], tuple[lin.LinearData, lin.PretrainResult]]:
    out = {}
    for s in lin.SCENARIOS:
        for seed in SEEDS:
            data = lin.make_data(s, seed=seed)
            out[(s, seed)] = (data, lin.pretrain(data))
    return out


def cases(fixture_keys: tuple[int, ...]) -> list[tuple[str, int]]:
    return [(s, seed) for s in lin.SCENARIOS for seed in fixture_keys]


# --------------------------------------------------------------------------------------------- data


def test_make_data_supports_and_targets() -> None:
    distinct = lin.make_data("distinct", n_r=30, n_f=10, d=100, seed=5)
    assert np.intersect1d(distinct.forget_idx, distinct.retain_idx).size == 0
    assert distinct.overlap_idx.size == 0
    overlap = lin.make_data("overlap", n_r=30, n_f=10, d=100, d_lap=20, seed=5)
    assert np.intersect1d(overlap.forget_idx, overlap.retain_idx).size == 20
    for data in (distinct, overlap):
        outside_f = np.setdiff1d(np.arange(data.d), data.forget_idx)
        outside_r = np.setdiff1d(np.arange(data.d), data.retain_idx)
        assert np.all(data.X_f[:, outside_f] == 0) and np.all(data.X_r[:, outside_r] == 0)
        assert np.any(data.X_f[:, data.forget_idx] != 0) and np.any(data.X_r[:, data.retain_idx] != 0)
        np.testing.assert_allclose(data.y, data.X @ data.w_star)
        assert np.linalg.matrix_rank(data.X) == data.n_r + data.n_f < data.d
    again = lin.make_data("overlap", n_r=30, n_f=10, d=100, d_lap=20, seed=5)
    np.testing.assert_array_equal(again.X_f, overlap.X_f)
    assert not np.array_equal(
        lin.make_data("overlap", n_r=30, n_f=10, d=100, d_lap=20, seed=6).X_f, overlap.X_f
    )


def test_make_data_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        lin.make_data("weird")
    with pytest.raises(ValueError):
        lin.make_data("distinct", n_r=150, n_f=60, d=200)


def test_gd_step_size_is_stable_and_fit_recovers_rate() -> None:
    data = lin.make_data("overlap", seed=0)
    objective = lin.retain_objective(data, lam=0.1)
    hessian_max = np.linalg.eigvalsh(data.X_r.T @ data.X_r / data.n_r).max() + 0.1
    assert objective.smoothness() == pytest.approx(hessian_max, rel=1e-10)
    run = lin.gd(objective, np.zeros(data.d))
    assert run.eta * hessian_max < 2 and run.grad_norm <= lin.GD_TOL
    assert lin.fit_log_linear_rate(3.0 * 0.93 ** np.arange(50)) == pytest.approx(0.93, rel=1e-12)


# ------------------------------------------------------------------------------ original and golden


@pytest.mark.parametrize(("scenario", "seed"), cases(SEEDS))
def test_pretrain_matches_min_norm_interpolators(pretrained, scenario: str, seed: int) -> None:
    data, pre = pretrained[(scenario, seed)]
    assert pre.err_original_vs_pinv < EXACT
    assert pre.err_golden_vs_pinv < EXACT
    assert pre.err_golden_vs_Pr_wstar < EXACT
    assert pre.original_retain_loss < 1e-16 and pre.original_forget_loss < 1e-16
    assert pre.golden_retain_loss < 1e-16
    assert pre.golden_forget_loss > 0.1 * np.mean(data.y_f**2)
    if scenario == "distinct":  # X_f w_g = 0: golden predicts 0 on the forget set
        assert pre.golden_forget_loss == pytest.approx(np.mean(data.y_f**2) / 2, rel=EXACT)


# --------------------------------------------------------------------------------------- fine-tuning


@pytest.mark.parametrize(("scenario", "seed"), cases(SEEDS))
def test_finetune_from_original_never_forgets(pretrained, scenario: str, seed: int) -> None:
    data, pre = pretrained[(scenario, seed)]
    ft = lin.finetune(data, pre.w_original, pre.w_golden)
    assert ft.err_vs_closed_form < EXACT
    assert np.linalg.norm(ft.w - pre.w_original) < EXACT  # FT does not move: gradient is already 0
    assert ft.retain_loss < 1e-16 and ft.forget_loss < 1e-16
    assert ft.err_gap_vs_forget_only_component < EXACT  # w_ft - w_g = (I - P_r) w_o
    assert ft.dist_to_golden == pytest.approx(ft.forget_only_norm_init, rel=1e-8)
    assert ft.forget_only_norm_init > 1.0


@pytest.mark.parametrize("scenario", lin.SCENARIOS)
def test_finetune_limit_from_arbitrary_init(pretrained, scenario: str) -> None:
    data, pre = pretrained[(scenario, 0)]
    w0 = np.random.default_rng(11).standard_normal(data.d)
    ft = lin.finetune(data, w0, pre.w_golden)
    expected = pre.w_golden + lin.forget_only_component(data, w0)
    assert np.linalg.norm(ft.w - expected) < EXACT
    assert ft.retain_loss < 1e-16


# ---------------------------------------------------------------------------------- removal + FT


@pytest.mark.parametrize(("scenario", "seed"), cases(SEEDS))
def test_projection_before_finetune_recovers_golden(pretrained, scenario: str, seed: int) -> None:
    data, pre = pretrained[(scenario, seed)]
    removal = lin.remove_influence(data, pre.w_original, pre.w_golden)
    assert removal["project"].dist_to_golden < EXACT
    assert removal["project"].forget_only_norm_init < EXACT
    for result in removal.values():
        assert result.err_vs_closed_form < EXACT
        assert result.retain_loss < 1e-16
        assert result.dist_to_golden == pytest.approx(result.forget_only_norm_init, rel=1e-6, abs=EXACT)
    if scenario == "distinct":  # zeroing the forget coordinates is the projection
        assert removal["mask_forget_only"].dist_to_golden < EXACT
        assert removal["mask_all_forget"].dist_to_golden < EXACT


@pytest.mark.parametrize("seed", SEEDS)
def test_masking_with_overlapping_features(pretrained, seed: int) -> None:
    data, pre = pretrained[("overlap", seed)]
    removal = lin.remove_influence(data, pre.w_original, pre.w_golden)
    keep, drop = removal["mask_forget_only"], removal["mask_all_forget"]
    golden = pre.golden_forget_loss
    # keeping the overlap: retain predictions untouched, but forget information survives FT
    assert keep.retain_loss_before_ft < 1e-16
    assert keep.dist_to_golden > 0.1
    assert keep.forget_loss < golden  # still fits the forget set better than golden does
    # dropping the overlap: breaks the retain fit, FT repairs it, forget loss ends closer to golden
    assert drop.retain_loss_before_ft > 0.1
    assert drop.dist_to_golden > 0.1
    assert abs(drop.forget_loss - golden) < abs(keep.forget_loss - golden)


@pytest.mark.parametrize(("scenario", "seed"), cases(SEEDS))
def test_data_driven_masks_pick_the_forget_only_or_every_forget_coordinate(scenario: str, seed: int) -> None:
    data = lin.make_data(scenario, seed=seed)
    masks = lin.saliency_masks(data)
    # retention-based masking (RBM) resets what only the forget rows use, and keeps the overlap
    assert np.array_equal(masks["rbm"], data.forget_only_idx)
    assert np.array_equal(masks["forget"], data.forget_idx)
    assert (scenario == "overlap") == (len(masks["forget"]) > len(masks["rbm"]))


# ----------------------------------------------------------------------------------------------- DR


@pytest.mark.parametrize(("scenario", "seed"), cases(SEEDS))
def test_dr_converges_to_alpha_independent_limit(pretrained, scenario: str, seed: int) -> None:
    data, pre = pretrained[(scenario, seed)]
    dr = lin.discriminative_regularization(
        data, pre.w_original, pre.w_golden, alphas=(1.0,), converge_alphas=(0.5, 1.0)
    )
    assert all(err < EXACT for err in dr.limit_err_gd_vs_closed_form.values())
    assert dr.limit_retain_loss < 1e-16
    assert dr.limit_forget_loss == pytest.approx(np.mean(data.y_f**2) / 2, rel=EXACT)  # zero target
    if scenario == "distinct":
        assert dr.limit_dist_to_golden < EXACT
    else:
        assert dr.limit_dist_to_golden > 0.1


@pytest.mark.parametrize("scenario", lin.SCENARIOS)
def test_dr_negated_target_overshoots(pretrained, scenario: str) -> None:
    data, pre = pretrained[(scenario, 0)]
    dr = lin.discriminative_regularization(
        data, pre.w_original, pre.w_golden, alphas=(1.0,), target="negated", converge_alphas=(1.0,)
    )
    assert dr.limit_err_gd_vs_closed_form["1"] < EXACT
    assert dr.limit_forget_loss == pytest.approx(2 * np.mean(data.y_f**2), rel=EXACT)
    assert dr.limit_forget_loss > 3 * pre.golden_forget_loss


@pytest.mark.parametrize(("scenario", "seed"), cases(SEEDS))
def test_dr_alpha_sweep_is_monotone(pretrained, scenario: str, seed: int) -> None:
    data, pre = pretrained[(scenario, seed)]
    dr = lin.discriminative_regularization(data, pre.w_original, pre.w_golden, converge_alphas=())
    forget = np.array(dr.forget_loss)
    gap = np.array(dr.forget_gap_to_golden)
    assert dr.alphas[0] == 0 and forget[0] < 1e-16  # alpha = 0 is plain FT
    assert np.all(np.diff(forget) > 0)  # more weight on the wrong target = more forgetting
    assert np.all(np.diff(gap) < 0)
    if scenario == "distinct":
        assert np.all(np.diff(dr.dist_to_golden) < 0)
        assert np.all(gap > -EXACT) and gap[-1] < 0.01 * pre.golden_forget_loss
        assert max(dr.retain_loss) < 1e-16  # decoupled blocks: the forget term never hurts retain
    else:
        assert min(dr.retain_loss[1:]) > 1e-6  # shared coordinates: DR costs retain fit mid-run


# ---------------------------------------------------------------------------------------------- IEU


@pytest.mark.parametrize(("scenario", "seed"), cases(SCENARIO_SEEDS))
def test_ieu_contracts_forget_only_component(scenario_results, scenario: str, seed: int) -> None:
    r = scenario_results[(scenario, seed)].ieu
    assert r.rate_theory == pytest.approx(1 - r.eta * r.lam, rel=1e-15)
    assert abs(r.rate_fit_noiseless - r.rate_theory) < 1e-9
    assert r.max_log_dev_noiseless < 1e-5
    assert r.noiseless_fit_window > 500
    assert abs(r.rate_fit_noisy_mean - r.rate_theory) < 0.01 * r.rate_theory
    assert math.log(r.rate_fit_noisy_mean) == pytest.approx(math.log(r.rate_theory), rel=0.05)


@pytest.mark.parametrize(("scenario", "seed"), cases(SCENARIO_SEEDS))
def test_ieu_mean_converges_to_ridge(scenario_results, scenario: str, seed: int) -> None:
    res = scenario_results[(scenario, seed)]
    data, r = res.data, res.ieu
    w_lam = lin.ridge_solution(data, r.lam)
    assert np.linalg.norm(lin.retain_objective(data, r.lam).grad(w_lam)) < 1e-10
    assert r.err_noiseless_vs_ridge < EXACT
    assert r.max_ratio_to_ridge_envelope <= 1 + 1e-9
    assert 0.5 * r.chain_mean_stat_scale < r.err_chain_mean_vs_ridge < 1.5 * r.chain_mean_stat_scale


@pytest.mark.parametrize(("scenario", "seed"), cases(SCENARIO_SEEDS))
def test_ieu_stationary_variance(scenario_results, scenario: str, seed: int) -> None:
    data, r = scenario_results[(scenario, seed)].data, scenario_results[(scenario, seed)].ieu
    mu = np.linalg.eigvalsh(data.X_r.T @ data.X_r / data.n_r)
    assert r.eta * (mu.max() + 2 * r.lam) <= 2  # condition for the bound
    assert r.variance_bound == pytest.approx(r.sigma**2 / (1 - (1 - r.eta * r.lam) ** 2), rel=1e-12)
    assert r.var_forget_only_exact == pytest.approx(r.variance_bound, rel=1e-12)
    assert r.var_forget_only_measured == pytest.approx(r.var_forget_only_exact, rel=0.04)
    assert r.var_row_exact_max <= r.variance_bound
    assert r.var_row_measured_mean == pytest.approx(r.var_row_exact_mean, rel=0.03)
    assert r.var_row_measured_max <= r.variance_bound
    assert r.forget_only_dim == data.d - data.n_r


# ---------------------------------------------------------------------------------------------- RCD


@pytest.mark.parametrize(("scenario", "seed"), cases(SCENARIO_SEEDS))
def test_relearning_delay(scenario_results, scenario: str, seed: int) -> None:
    relearn = scenario_results[(scenario, seed)].relearn
    for result in relearn.values():
        assert result.steps == result.predicted_steps  # GD simulation = closed-form residual decay
    assert relearn["original"].steps == 0 and relearn["finetune"].steps == 0
    for name in ("golden", "project+ft", "dr(alpha=1)", "ieu"):
        assert relearn[name].steps > 0, name
    assert relearn["golden"].threshold > relearn["finetune"].initial_forget_loss


def test_relearn_threshold_definition(pretrained) -> None:
    data, pre = pretrained[("distinct", 0)]
    expected = 1.1 * pre.original_forget_loss + 1e-3 * np.mean(data.y_f**2)
    assert lin.relearn_threshold(data, pre.w_original, 0.1, 1e-3) == pytest.approx(expected, rel=1e-12)
    shifted = pre.w_original + 0.05 * lin.forget_only_component(data, np.ones(data.d))
    result = lin.relearn_steps(data, shifted, expected)
    assert result.steps == result.predicted_steps


# ---------------------------------------------------------------------------------- report and API


def test_write_theory_report(tmp_path) -> None:
    from hf_unlearn.validation.report import write_theory_report

    summary = write_theory_report(tmp_path, seed=0)
    on_disk = json.loads((tmp_path / "theory.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert set(on_disk["scenarios"]) == set(lin.SCENARIOS)
    markdown = (tmp_path / "theory.md").read_text()
    assert "| check | distinct | overlap |" in markdown and "Relearning" in markdown
    assert len(summary["figures"]) >= 4
    for name in summary["figures"]:
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    distinct = on_disk["scenarios"]["distinct"]
    assert distinct["relearn"]["finetune"]["steps"] == 0 < distinct["relearn"]["golden"]["steps"]


def test_import_is_light() -> None:
    code = (
        "import sys; from hf_unlearn.validation import linear, report, plots; "
        "bad = [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
