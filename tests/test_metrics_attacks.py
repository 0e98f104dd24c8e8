"""Attacks as evaluation (``hf_unlearn.metrics.attacks``): the quantizer's formula, the partial-relearning split,
the ``attack/*`` keys of ``evaluate_unlearning``, the CLI option and the card's Robustness section."""

import json

import numpy as np
import pytest
import torch
from conftest import state_copy

from hf_unlearn.metrics import evaluate_unlearning
from hf_unlearn.metrics.attacks import (
    QuantizeAttack,
    RelearnPartialAttack,
    fake_quantize,
    get_attack,
    parse_attacks,
    partial_split,
    quantize_model,
)
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier


def reference_quantize(w: np.ndarray, bits: int, group: int | None) -> np.ndarray:
    """The formula of docs/metrics.md, written out on numpy rows."""
    q_max = 2 ** (bits - 1) - 1
    out = np.zeros_like(w)
    size = w.shape[1] if group is None else group
    for r in range(w.shape[0]):
        for start in range(0, w.shape[1], size):
            part = w[r, start : start + size]
            s = np.abs(part).max() / q_max
            out[r, start : start + size] = 0.0 if s == 0 else s * np.clip(np.round(part / s), -q_max, q_max)
    return out


HAND_MADE = np.array(
    [
        [0.9, -0.3, 0.05, 0.41, -0.77, 0.12],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # a zero channel stays zero
        [-2.0, 0.013, 1.1, -0.6, 0.0, 0.33],
    ],
    dtype=np.float32,
)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group", [None, 2, 4])  # 4: a last, shorter group of 2
def test_the_quantizer_is_the_formula_on_hand_made_weights(bits, group):
    got = fake_quantize(torch.tensor(HAND_MADE), bits, group).numpy()
    np.testing.assert_allclose(got, reference_quantize(HAND_MADE, bits, group), rtol=0, atol=1e-7)
    assert np.all(got[1] == 0)
    levels = 2 ** (bits - 1) - 1
    # per channel, at most 2 q_max + 1 distinct values; the channel's max |w| is kept exactly
    assert len(np.unique(got[0])) <= 2 * levels + 1
    assert np.abs(got[2]).max() == pytest.approx(2.0)


def test_4_bit_by_hand_and_the_dtype_is_kept():
    w = torch.tensor([[0.875, 0.375, -0.125, 0.0625, 0.1875]], dtype=torch.bfloat16)  # exact in bf16
    got = fake_quantize(w, 4)
    assert got.dtype == torch.bfloat16
    # s = 0.875 / 7 = 0.125: 3, -1, round(0.5) = 0 and round(1.5) = 2 (ties to even)
    expected = torch.tensor([[7.0, 3.0, -1.0, 0.0, 2.0]]) * 0.125
    assert torch.equal(got.float(), expected)
    with pytest.raises(ValueError, match="bits"):
        fake_quantize(w, 1)
    with pytest.raises(ValueError, match="group_size"):
        QuantizeAttack(4, group_size=0)


def test_gpt2_conv1d_is_quantized_per_output_column_and_the_model_is_unchanged(qa):
    model = tiny_causal_lm(qa.tokenizer, seed=0)
    before = state_copy(model)
    attacked = quantize_model(model, 4)
    conv = model.transformer.h[0].attn.c_attn  # Conv1D: weight [in, out]
    got = attacked.transformer.h[0].attn.c_attn.weight.detach()
    expected = reference_quantize(conv.weight.detach().numpy().T, 4, None).T
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    # the tied LM head is quantized in the linear layer only: the copy's embedding keeps its weights
    head = reference_quantize(model.lm_head.weight.detach().numpy(), 4, None)
    np.testing.assert_allclose(attacked.lm_head.weight.detach().numpy(), head, atol=1e-6)
    torch.testing.assert_close(attacked.transformer.wte.weight, model.transformer.wte.weight)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert model.lm_head.weight is model.transformer.wte.weight


def test_convolutions_are_quantized_per_output_channel_over_input_and_kernel():
    """A UNet's (and a ResNet's) Conv2d weights ``[out, in, kh, kw]``: one scale per output channel over its
    flattened ``in x kh x kw`` values, per group of them with ``group_size``; the original is unchanged."""
    from hf_unlearn.tiny import tiny_unet

    unet = tiny_unet(num_classes=3, seed=0)
    before = state_copy(unet)
    for group in (None, 4):
        attacked = quantize_model(unet, 4, group)
        conv = next(m for m in unet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
        name = next(n for n, m in unet.named_modules() if m is conv)
        got = attacked.get_submodule(name).weight.detach()
        flat = conv.weight.detach().numpy().reshape(conv.weight.shape[0], -1)
        expected = reference_quantize(flat, 4, group).reshape(conv.weight.shape)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
        assert not torch.equal(got, conv.weight)
    for name, value in unet.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_8_bit_keeps_the_forget_loss_and_4_bit_moves_it_more(qa):
    from hf_unlearn.metrics import per_example_losses

    model = tiny_causal_lm(qa.tokenizer, seed=0)
    base = per_example_losses(model, qa.forget, qa.tokenizer).mean()
    q8 = per_example_losses(quantize_model(model, 8), qa.forget, qa.tokenizer).mean()
    q4 = per_example_losses(quantize_model(model, 4), qa.forget, qa.tokenizer).mean()
    assert abs(q8 - base) < 2e-3 * base
    assert abs(q4 - base) > abs(q8 - base)


def test_the_partial_split_is_seeded_disjoint_and_keeps_groups_together():
    rows = [{"text": f"q{i}", "label": 0, "person": f"p{i % 7}"} for i in range(35)]
    attack, held = partial_split(rows, seed=3)
    assert (attack, held) == partial_split(rows, seed=3)
    assert set(attack).isdisjoint(held) and sorted(attack + held) == list(range(35))
    people = lambda idx: {rows[i]["person"] for i in idx}  # noqa: E731
    assert people(attack).isdisjoint(people(held))
    assert len(people(attack)) == 3 and len(people(held)) == 4
    splits = {tuple(partial_split(rows, seed=s)[0]) for s in range(6)}
    assert len(splits) > 1  # the seed decides
    by_example, _ = partial_split(rows, seed=3, group_column=None)
    assert len(by_example) == 17 and not people(by_example).isdisjoint(
        people(set(range(35)) - set(by_example))
    )
    with pytest.raises(ValueError, match="at least 2"):
        partial_split([{"text": "a", "label": 0, "group": "g"}] * 3)
    with pytest.raises(ValueError, match="group_column"):
        partial_split(rows, group_column="author")


def test_attack_names_are_checked():
    assert parse_attacks("quantize_8bit, relearn_partial,quantize_8bit") == [
        "quantize_8bit",
        "relearn_partial",
    ]
    with pytest.raises(ValueError, match="unknown attack 'quantize_3bit'"):
        parse_attacks("quantize_3bit")
    assert get_attack("quantize_4bit").bits == 4


def _expected_keys(names, metrics, references=("golden/", "original/")):
    keys = set()
    for name in ["none", *names]:
        keys |= {f"attack/{name}/{ref}{m}" for ref in ("", *references) for m in metrics}
        keys.add(f"attack/{name}/gap_to_golden")
    return keys


ATTACKS = ["quantize_8bit", "quantize_4bit", "relearn_partial"]


def test_keys_for_a_classifier_and_the_models_are_unchanged(mislabeled):
    model = tiny_classifier(mislabeled.tokenizer, seed=0)
    golden = tiny_classifier(mislabeled.tokenizer, seed=1)
    model.train()
    golden.eval()
    before, golden_before = state_copy(model), state_copy(golden)
    relearn = RelearnPartialAttack(max_steps=3, learning_rate=1e-3)
    metrics = evaluate_unlearning(
        model,
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        golden_model=golden,
        original_model=model,
        processing_class=mislabeled.tokenizer,
        attacks=["quantize_8bit", "quantize_4bit", relearn],
    )
    expected = _expected_keys(ATTACKS, ("forget/accuracy", "forget/loss"))
    expected.add("attack/relearn_partial/gap_to_golden_unattacked")
    assert expected == {k for k in metrics if k.startswith("attack/")}
    assert metrics["attack/none/forget/accuracy"] == metrics["forget/accuracy"]
    assert metrics["attack/none/golden/forget/loss"] == pytest.approx(metrics["golden/forget/loss"])
    gap = abs(
        metrics["attack/quantize_4bit/forget/accuracy"]
        - metrics["attack/quantize_4bit/golden/forget/accuracy"]
    )
    assert metrics["attack/quantize_4bit/gap_to_golden"] == pytest.approx(gap)
    # the model passed is the original here: its attacked copy measures the same as the original's
    assert (
        metrics["attack/relearn_partial/forget/loss"]
        == metrics["attack/relearn_partial/original/forget/loss"]
    )
    assert model.training and not golden.training
    for state, m in ((before, model), (golden_before, golden)):
        for name, value in m.state_dict().items():
            assert torch.equal(value, state[name]), name


def test_relearning_half_the_forget_set_moves_the_held_out_half(qa):
    model = tiny_causal_lm(qa.tokenizer, seed=0)
    rows = [dict(r, person=i // 2) for i, r in enumerate(qa.forget)]  # each person's two questions, together
    attack = RelearnPartialAttack(max_steps=5, learning_rate=3e-3)
    first, held = attack.split(rows)
    assert len(first) + len(held) == len(rows)
    from hf_unlearn.metrics import per_example_losses

    relearned = attack.apply(model, first, qa.tokenizer)
    before = per_example_losses(model, held, qa.tokenizer).mean()
    after = per_example_losses(relearned, held, qa.tokenizer).mean()
    assert after < before - 0.1  # the shared answer format is learned from the other half
    assert all(not p.requires_grad for p in relearned.parameters())
    with pytest.raises(ValueError, match="attack_data"):
        attack.apply(model, None, qa.tokenizer)


def test_keys_for_a_causal_lm_with_generation_and_a_test_set(qa):
    model = tiny_causal_lm(qa.tokenizer, seed=0)
    golden = tiny_causal_lm(qa.tokenizer, seed=1)
    metrics = evaluate_unlearning(
        model,
        forget_dataset=qa.forget,
        retain_dataset=qa.retain,
        test_dataset=qa.test,
        golden_model=golden,
        processing_class=qa.tokenizer,
        generation=True,
        max_new_tokens=4,
        attacks=["quantize_4bit", RelearnPartialAttack(max_steps=2)],
    )
    lm_keys = ("forget/rouge_l_recall", "forget/token_accuracy", "forget/loss", "mia/min_k_auc")
    expected = _expected_keys(["quantize_4bit", "relearn_partial"], lm_keys, references=("golden/",))
    expected.add("attack/relearn_partial/gap_to_golden_unattacked")
    assert expected == {k for k in metrics if k.startswith("attack/")}
    assert metrics["attack/none/forget/rouge_l_recall"] == pytest.approx(metrics["forget/rouge_l_recall"])
    assert metrics["attack/none/mia/min_k_auc"] == pytest.approx(metrics["mia/min_k_auc"])
    none_gap = abs(metrics["forget/rouge_l_recall"] - metrics["attack/none/golden/forget/rouge_l_recall"])
    assert metrics["attack/none/gap_to_golden"] == pytest.approx(none_gap)


def test_keys_for_a_lora_model_which_is_merged_on_a_copy(mislabeled):
    from peft import LoraConfig, get_peft_model

    golden = tiny_classifier(mislabeled.tokenizer, seed=1)
    model = get_peft_model(
        tiny_classifier(mislabeled.tokenizer, seed=0),
        LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"),
    )
    with torch.no_grad():  # non-zero adapters, so that merging them matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    before = state_copy(model)
    metrics = evaluate_unlearning(
        model,
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        golden_model=golden,
        processing_class=mislabeled.tokenizer,
        attacks=["quantize_8bit", RelearnPartialAttack(max_steps=2)],
    )
    expected = _expected_keys(
        ["quantize_8bit", "relearn_partial"], ("forget/accuracy", "forget/loss"), ("golden/",)
    )
    expected.add("attack/relearn_partial/gap_to_golden_unattacked")
    assert expected == {k for k in metrics if k.startswith("attack/")}
    assert abs(metrics["attack/quantize_8bit/forget/loss"] - metrics["forget/loss"]) < 0.01
    assert hasattr(model, "peft_config") and any("lora_A" in n for n, _ in model.named_parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_the_robustness_tables_put_golden_beside_the_model():
    from hf_unlearn.reporting.robustness import robustness_tables

    row = {
        "forget/loss": 1.0,
        "attack/none/forget/accuracy": 0.2,
        "attack/none/golden/forget/accuracy": 0.5,
        "attack/none/gap_to_golden": 0.3,
        "attack/quantize_4bit/forget/accuracy": 0.45,
        "attack/quantize_4bit/golden/forget/accuracy": 0.5,
        "attack/quantize_4bit/gap_to_golden": 0.05,
    }
    tables = dict(robustness_tables({"model": row}, lambda v: "" if v is None else f"{v:.2f}"))
    assert list(tables) == ["gap to golden (primary forget metric)", "no attack", "quantize_4bit"]
    assert "| none | 0.30 |" in tables["gap to golden (primary forget metric)"]
    assert "| metric | model | golden (attacked) |" in tables["quantize_4bit"]
    assert "| forget/accuracy | 0.45 | 0.50 |" in tables["quantize_4bit"]
    assert "| gap_to_golden | 0.05 |  |" in tables["quantize_4bit"]
    assert robustness_tables({"model": {"forget/loss": 1.0}}) == []


def test_run_and_eval_with_attacks_end_to_end(tmp_path, mislabeled, capsys):
    from test_cli import write_model_dirs, write_recipe

    from hf_unlearn.cli import main

    dirs = write_model_dirs(tmp_path, mislabeled)
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, dirs, out, max_steps=2, relearn=False)
    assert (
        main(["run", recipe, "--attacks", "quantize_8bit,relearn_partial", "--attack_relearn_steps", "2"])
        == 0
    )
    report = json.loads((out / "unlearning_report.json").read_text())
    for row in ("original", "golden", "unlearned"):
        assert "attack/relearn_partial/golden/forget/accuracy" in report["metrics"][row]
        assert "attack/quantize_8bit/gap_to_golden" in report["metrics"][row]
    assert report["metrics"]["golden"]["attack/quantize_8bit/gap_to_golden"] == 0
    card = (out / "README.md").read_text()
    assert "## Robustness" in card and "**relearn_partial**" in card
    capsys.readouterr()
    code = main(
        ["eval", "--model", str(out), "--golden", dirs["golden"], "--forget_dataset", dirs["forget"],
         "--retain_dataset", dirs["retain"], "--no_relearn", "--attacks", "quantize_4bit"]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert (
        "attack/quantize_4bit/golden/forget/loss" in metrics
        and "attack/quantize_4bit/gap_to_golden" in metrics
    )
    assert main(["run", recipe, "--attacks", "quantize_3bit", "--overwrite_output_dir"]) == 2
    assert "unknown attack 'quantize_3bit'" in capsys.readouterr().err


def test_keys_for_a_class_conditional_unet_through_its_kind():
    """Attacks on a diffusion UNet measure the kind's forget metric (the denoising loss at fixed draws), for the
    model and golden under the same attack."""
    from sklearn.datasets import load_digits

    from hf_unlearn.tiny import tiny_unet

    data = load_digits()
    rows = [{"image": (x.reshape(8, 8) * 15.9).astype(np.uint8), "label": int(y)}
            for x, y in zip(data.data, data.target) if y < 3]  # fmt: skip
    forget, retain = [r for r in rows if r["label"] == 0][:12], [r for r in rows if r["label"] != 0][:24]
    model, golden = tiny_unet(num_classes=3, seed=0), tiny_unet(num_classes=3, seed=1)
    out = evaluate_unlearning(
        model, forget_dataset=forget, retain_dataset=retain, golden_model=golden,
        attacks=["quantize_4bit", "relearn_partial"],
    )  # fmt: skip
    for name in ("quantize_4bit", "relearn_partial"):
        for key in (
            f"attack/{name}/forget/loss",
            f"attack/{name}/golden/forget/loss",
            f"attack/{name}/gap_to_golden",
        ):
            assert key in out and np.isfinite(out[key]), key
    assert out["attack/quantize_4bit/forget/loss"] != out["attack/none/forget/loss"]
