"""Held-out-referenced stopping (``stopping="heldout"`` / ``"heldout_pause"``): the rule, the kept weights,
resume, the label corruption of the reference, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import heldout_trainer, make_config, state_copy
from transformers import TrainerCallback

from hf_unlearn import UnlearningTrainer, losses
from hf_unlearn.stopping import auto_interval, corrupt_labels, fixed_subset, loss_auc, quantile_targets
from hf_unlearn.tiny import tiny_classifier


def _script_losses(monkeypatch, trainer, forget_at):
    """Replace the stopping rule's loss pass: held-out losses are fixed, the forget losses at step s are
    ``forget_at(s)`` (one value for every forget example)."""
    callback = trainer.stopping
    heldout = torch.linspace(1.0, 3.0, len(callback.reference))

    def scripted():
        return torch.full((len(callback.forget),), float(forget_at(trainer.state.global_step))), heldout

    monkeypatch.setattr(callback, "check_losses", scripted)


def test_loss_auc_conventions():
    assert loss_auc(np.array([0.1, 0.2]), np.array([1.0, 2.0])) == 1.0  # forget still memorized
    assert loss_auc(np.array([5.0, 6.0]), np.array([1.0, 2.0])) == 0.0  # pushed past unseen data
    assert loss_auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == pytest.approx(0.5)


def test_checks_measure_fixed_seeded_subsets_of_at_most_max_examples(tmp_path, mislabeled):
    rows = [{"i": i} for i in range(100)]
    subset = fixed_subset(rows, 30, seed=0)
    assert len(subset) == 30 == len({r["i"] for r in subset}) and subset == sorted(
        subset, key=lambda r: r["i"]
    )
    assert subset == fixed_subset(rows, 30, seed=0) != fixed_subset(rows, 30, seed=1)
    assert fixed_subset(rows, 0, seed=0) is rows and fixed_subset(rows, 100, seed=0) is rows
    trainer = heldout_trainer(tmp_path, mislabeled, stopping="heldout", stopping_max_examples=5)
    assert len(trainer.stopping.forget) == len(trainer.stopping.reference) == 5
    assert all(row in trainer.forget_rows for row in trainer.stopping.forget)


def test_a_check_collates_its_rows_once_and_equals_a_fresh_per_example_pass(tmp_path, mislabeled):
    trainer = heldout_trainer(tmp_path, mislabeled, stopping="heldout", stopping_max_examples=5)
    callback = trainer.stopping
    forget, reference = callback.check_losses()
    collator, trainer.data_collator = trainer.data_collator, None  # a second check must not collate again
    again = callback.check_losses()
    trainer.data_collator = collator
    rows = (callback.forget, callback.reference)
    fresh = [trainer.per_example_losses(r, batch_size=callback.batch_size) for r in rows]  # the public pass
    for got, second, want in zip((forget, reference), again, fresh):
        assert got.shape == (5,)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.testing.assert_close(second, want, rtol=0, atol=0)


def test_per_example_targets_are_the_held_out_quantiles_at_each_forget_rank():
    forget, heldout = np.array([0.1, 0.05, 0.3, 0.2]), np.arange(1.0, 9.0)
    targets = quantile_targets(forget, heldout)
    assert list(np.argsort(targets)) == list(np.argsort(forget))  # the order of the forget losses is kept
    assert targets.tolist() == pytest.approx(np.quantile(heldout, [0.375, 0.125, 0.875, 0.625]).tolist())
    assert loss_auc(targets, heldout) == pytest.approx(0.5)  # pushed to their targets: like held-out data
    nll = torch.tensor([1.0, 5.0, 2.0], requires_grad=True)
    loss = losses.below_target_mean(-nll, nll, torch.tensor([3.0, 4.0, 2.0]))
    loss.backward()  # only the first example is below its target; the divisor stays the batch size
    assert float(loss.detach()) == pytest.approx(-1 / 3) and nll.grad.tolist() == pytest.approx(
        [-1 / 3, 0.0, 0.0]
    )


def test_per_example_rule_sets_targets_at_every_check_and_runs_to_max_steps(tmp_path, mislabeled):
    trainer = heldout_trainer(
        tmp_path, mislabeled, max_steps=6, stopping="heldout_per_example", stopping_eval_steps=3
    )
    trainer.train()
    record = trainer.stopping.record
    assert trainer.state.global_step == 6 and record.stopped_step is None
    assert [entry["step"] for entry in record.history] == [0, 3, 6]
    assert len(record.targets) == len(trainer.forget_rows) == trainer.forget_targets.numel()
    assert all(0 <= entry["at_target"] <= len(trainer.forget_rows) for entry in record.history)
    assert "per-example rule" in record.reason


def test_the_default_interval_keeps_the_checks_within_a_tenth_of_the_training_time(tmp_path, mislabeled):
    assert auto_interval(examples_per_check=124, examples_per_step=32) == 16  # 124 / (0.1 * 2.5 * 32) = 15.5
    assert auto_interval(examples_per_check=1, examples_per_step=64) == 1
    trainer = heldout_trainer(tmp_path, mislabeled, stopping="heldout", per_device_train_batch_size=4)
    checked = len(trainer.stopping.forget) + len(trainer.stopping.reference)
    assert trainer.args.stopping_eval_steps is None
    assert trainer.stopping.record.every == auto_interval(checked, 8)


def test_corrupted_labels_are_seeded_wrong_labels():
    rows = [{"input_ids": [1, 2], "labels": y} for y in [0, 1, 2, 3, 4] * 20]
    out = corrupt_labels(rows, num_classes=5, seed=0)
    assert all(o["labels"] != r["labels"] and 0 <= o["labels"] < 5 for o, r in zip(out, rows))
    assert len({o["labels"] for o in out}) == 5 and rows[0]["labels"] == 0  # inputs untouched
    assert out == corrupt_labels(rows, num_classes=5, seed=0) != corrupt_labels(rows, num_classes=5, seed=1)


def test_stops_at_the_first_check_where_the_forget_set_looks_held_out_and_keeps_that_step(
    tmp_path, mislabeled, monkeypatch
):
    # forget losses rise 0.2 per step; the held-out losses span [1, 3] (median 2): AUC <= 0.55 from ~step 10
    trainer = heldout_trainer(
        tmp_path / "a", mislabeled, max_steps=30, stopping="heldout", stopping_eval_steps=4
    )
    _script_losses(monkeypatch, trainer, lambda step: 0.2 * step)
    trainer.train()
    record = trainer.stopping.record
    aucs = {entry["step"]: entry["loss_auc"] for entry in record.history}
    assert list(aucs) == [0, 4, 8, 12]
    assert aucs[8] > 0.55 >= aucs[12]
    assert record.stopped_step == 12 == trainer.state.global_step and "indistinguishable" in record.reason
    # the kept weights are those of step 12: the same run told to stop there
    plain = heldout_trainer(tmp_path / "b", mislabeled, max_steps=12)
    plain.train()
    for key, value in state_copy(plain.model).items():
        torch.testing.assert_close(state_copy(trainer.model)[key], value, rtol=0, atol=0)
    assert any("stopping/loss_auc" in entry for entry in trainer.state.log_history)


def _scripted_pause(tmp_path, task, monkeypatch, sequence: dict[int, float], **kwargs):
    """A 12-step pause-rule run checking every 3 steps, its forget losses scripted per check by ``sequence``."""
    trainer = heldout_trainer(
        tmp_path, task, max_steps=12, stopping="heldout_pause", stopping_eval_steps=3, **kwargs
    )
    _script_losses(monkeypatch, trainer, lambda step: sequence[step])
    return trainer


def test_pause_switches_the_forget_term_off_and_on_and_runs_to_max_steps(tmp_path, mislabeled, monkeypatch):
    sequence = {0: 0.1, 3: 2.9, 6: 0.1, 9: 2.9, 12: 2.9}  # far above / below the held-out median 2
    trainer = _scripted_pause(tmp_path, mislabeled, monkeypatch, sequence)
    active = []
    compute = trainer.method.compute
    monkeypatch.setattr(
        trainer.method, "compute", lambda inputs: active.append(inputs.forget_active) or compute(inputs)
    )
    trainer.train()
    assert trainer.state.global_step == 12 and trainer.stopping.record.stopped_step is None
    # steps 1-3 push (start AUC 1.0), 4-6 retain only (AUC 0 at step 3), 7-9 push again, 10-12 retain only
    assert active == [True] * 3 + [False] * 3 + [True] * 3 + [False] * 3
    flags = [entry.get("forget_active") for entry in trainer.stopping.record.history]
    assert flags == [None, False, True, False, False]


def _first_moments(trainer) -> list[torch.Tensor]:
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    return [state["exp_avg"] for state in inner.state.values()]


def test_pause_cuts_the_momentum_when_it_switches_the_forget_term_off(tmp_path, mislabeled, monkeypatch):
    # AUC 1 at 0 (push); 0 at 3 (off: momentum cut); 0 at 6 (still off: nothing to cut); 1 at 9 (push); in the
    # band at 12 (off: cut)
    sequence = {0: 0.1, 3: 2.9, 6: 2.9, 9: 0.1, 12: 2.0}
    runs = {}
    for reset in (True, False):
        trainer = _scripted_pause(
            tmp_path / str(reset), mislabeled, monkeypatch, sequence, stopping_reset_momentum=reset
        )
        moments = runs[reset] = {}

        class Moments(TrainerCallback):  # runs after the stopping rule's own on_step_end
            def on_step_end(self, args, state, control, moments=moments, trainer=trainer, **kwargs):
                moments[state.global_step] = max(float(m.abs().max()) for m in _first_moments(trainer))

        trainer.add_callback(Moments())
        trainer.train()
        runs[reset] = (trainer, moments)
    (trainer, moments), (off, off_moments) = runs[True], runs[False]
    n_moments = len(_first_moments(trainer))
    assert [e.get("momentum_reset") for e in trainer.stopping.record.history] == [
        None,
        n_moments,
        None,
        None,
        n_moments,
    ]
    assert moments[3] == moments[12] == 0.0 < min(moments[2], moments[4], moments[6], moments[11])
    assert all("momentum_reset" not in entry for entry in off.stopping.record.history)
    assert min(off_moments.values()) > 0


@pytest.mark.parametrize("keep", ["in_band", "last"])
def test_pause_ends_with_the_weights_of_the_latest_check_within_the_band(
    tmp_path, mislabeled, monkeypatch, keep
):
    sequence = {0: 0.1, 3: 0.1, 6: 2.0, 9: 0.1, 12: 2.9}  # only the check at step 6 is within 0.5 +- 0.05
    trainer = _scripted_pause(tmp_path, mislabeled, monkeypatch, sequence, stopping_keep=keep)
    seen = {}

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen[state.global_step] = state_copy(trainer.model)

    trainer.add_callback(Snapshot())
    trainer.train()
    record = trainer.stopping.record
    assert (
        trainer.state.global_step == 12 and seen[6] != {} and abs(record.history[2]["loss_auc"] - 0.5) <= 0.05
    )
    expected = seen[6] if keep == "in_band" else seen[12]
    for key, value in expected.items():
        torch.testing.assert_close(state_copy(trainer.model)[key], value, rtol=0, atol=0)
    assert record.kept_step == (6 if keep == "in_band" else None)
    assert ("kept the weights of step 6" in record.reason) == (keep == "in_band")


@pytest.mark.parametrize("rule", ["heldout", "heldout_pause", "heldout_per_example"])
def test_resume_with_stopping_on_is_bit_identical(tmp_path, mislabeled, rule, monkeypatch):
    # "heldout": scripted forget losses cross the held-out median at step 6, after the checkpoint at step 4;
    # "heldout_pause": the checkpoint falls in a paused phase (steps 5-6 train on retain only), and the weights
    # kept (step 2, within the band) come back from the checkpoint
    in_band = {2: 2.0, 4: 2.9}
    script = (lambda step: 0.35 * step) if rule == "heldout" else (lambda step: in_band.get(step, 0.1))
    kwargs = dict(max_steps=8, stopping=rule, stopping_eval_steps=2)
    full = heldout_trainer(tmp_path / "full", mislabeled, save_strategy="steps", save_steps=4, **kwargs)
    _script_losses(monkeypatch, full, script)
    full.train()
    assert full.state.global_step == (6 if rule == "heldout" else 8)
    resumed = heldout_trainer(tmp_path / "resumed", mislabeled, **kwargs)
    _script_losses(monkeypatch, resumed, script)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "out" / "checkpoint-4"))
    assert resumed.state.global_step == full.state.global_step
    assert resumed.stopping.record.history == full.stopping.record.history
    assert resumed.stopping.record.stopped_step == full.stopping.record.stopped_step
    assert (
        resumed.stopping.record.kept_step
        == full.stopping.record.kept_step
        == (None if rule == "heldout" else 2)
    )
    for key, value in state_copy(full.model).items():
        torch.testing.assert_close(state_copy(resumed.model)[key], value, rtol=0, atol=0)


def test_label_corruption_builds_the_reference_from_wrong_labels(tmp_path, mislabeled):
    clean = heldout_trainer(tmp_path / "a", mislabeled, stopping="heldout")
    corrupted = heldout_trainer(
        tmp_path / "b", mislabeled, stopping="heldout", heldout_label_corruption="random"
    )
    pairs = zip(clean.stopping.reference, corrupted.stopping.reference)
    assert all(c["labels"] != r["labels"] and c["input_ids"] == r["input_ids"] for r, c in pairs)


def test_errors_for_bad_settings(tmp_path, mislabeled, qa):
    with pytest.raises(ValueError, match="stopping must be one of"):
        make_config(tmp_path, stopping="golden")
    with pytest.raises(ValueError, match="stopping_eval_steps must be >= 1"):
        make_config(tmp_path, stopping="heldout", stopping_eval_steps=0)
    with pytest.raises(ValueError, match="stopping_tolerance must be in"):
        make_config(tmp_path, stopping="heldout", stopping_tolerance=0.5)
    with pytest.raises(ValueError, match="stopping_max_examples must be >= 0"):
        make_config(tmp_path, stopping="heldout", stopping_max_examples=-1)
    config = make_config(tmp_path, stopping="heldout")
    model = tiny_classifier(mislabeled.tokenizer)
    with pytest.raises(ValueError, match="pass eval_dataset"):
        UnlearningTrainer(
            model,
            config,
            forget_dataset=mislabeled.forget,
            retain_dataset=mislabeled.retain,
            processing_class=mislabeled.tokenizer,
        )
    from hf_unlearn.tiny import tiny_causal_lm

    config = make_config(tmp_path, heldout_label_corruption="random")
    with pytest.raises(ValueError, match="relabels classifier examples"):
        UnlearningTrainer(
            tiny_causal_lm(qa.tokenizer),
            config,
            forget_dataset=qa.forget,
            retain_dataset=qa.retain,
            processing_class=qa.tokenizer,
        )


def test_the_pipeline_passes_the_held_out_set_and_the_report_and_card_carry_the_stop(
    tmp_path, mislabeled, caplog
):
    from hf_unlearn.pipeline import LoadedJob, RunArguments, build_report, unlearn
    from hf_unlearn.reporting.card import build_model_card

    model = tiny_classifier(mislabeled.tokenizer, seed=0)
    job = LoadedJob(
        model=model, tokenizer=mislabeled.tokenizer, forget=mislabeled.forget, retain=mislabeled.retain
    )
    config = make_config(tmp_path, method="grad_diff", stopping="heldout", stopping_eval_steps=1)
    with pytest.raises(ValueError, match="held-out data"):
        unlearn(job, config, RunArguments())
    job.test = mislabeled.test
    trainer, seconds = unlearn(job, config, RunArguments(), quiet=True)
    report = build_report(job, config, RunArguments(), {}, {}, seconds, trainer)
    assert report["stopping"]["history"][0]["step"] == 0 and report["stopping"]["reason"]
    assert report["hyperparameters"]["stopping"] == "heldout"
    card = str(build_model_card(report))
    assert "## When unlearning stopped" in card and report["stopping"]["reason"] in card
    assert 'stopping="heldout"' in card
    # a scenario whose forget set is corrupted labels: its corruption is the default of the reference
    job.heldout_label_corruption = "random"
    job.model = tiny_classifier(mislabeled.tokenizer, seed=0)
    config = make_config(tmp_path / "b", stopping="heldout", max_steps=1)
    with caplog.at_level("WARNING", logger="hf_unlearn.pipeline"):
        trainer, _ = unlearn(job, config, RunArguments(), quiet=True)
    assert config.heldout_label_corruption == "random" and "heldout_label_corruption" not in caplog.text
    true_label = {tuple(row["input_ids"]): row["labels"] for row in trainer._heldout_rows()}
    assert all(row["labels"] != true_label[tuple(row["input_ids"])] for row in trainer.stopping.reference)
    # ... and a user's contrary setting is used, with a warning
    job.model = tiny_classifier(mislabeled.tokenizer, seed=0)
    config = make_config(tmp_path / "c", stopping="heldout", max_steps=1, heldout_label_corruption="none")
    with caplog.at_level("WARNING", logger="hf_unlearn.pipeline"):
        unlearn(job, config, RunArguments(), quiet=True)
    assert (
        "set heldout_label_corruption='random'" in caplog.text and config.heldout_label_corruption == "none"
    )


def test_the_checks_leave_the_training_random_stream_alone(tmp_path, mislabeled):
    # naive fine-tuning has no forget term: with the pause rule's checks every step it must train exactly as
    # without them (the checks' data loaders draw their seeds from their own generator, not torch's global one)
    kwargs = dict(method="ft", max_steps=12, per_device_train_batch_size=4)
    runs = {"plain": {}, "checked": {"stopping": "heldout_pause", "stopping_eval_steps": 1}}
    for name, extra in runs.items():  # each trainer seeds torch when it is built, so build each just before
        runs[name] = trainer = heldout_trainer(tmp_path / name, mislabeled, **kwargs, **extra)
        for module in trainer.model.modules():  # dropout draws from the global stream at every step
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.1
        trainer.train()
    plain, checked = runs["plain"], runs["checked"]
    assert len(checked.stopping.record.history) == 13
    for key, value in state_copy(plain.model).items():
        torch.testing.assert_close(state_copy(checked.model)[key], value, rtol=0, atol=0)
