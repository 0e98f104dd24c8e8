"""``torchao_int8`` / ``torchao_int4``: weight-only quantization by torchao (the optional ``quantization`` extra),
against our fake quantization (``quantize_8bit``) and torchao's own grid; the error without torchao."""

import sys

import numpy as np
import pytest
import torch
from conftest import state_copy

from hf_unlearn.metrics import evaluate_unlearning, per_example_losses
from hf_unlearn.metrics.attacks import TorchaoQuantizeAttack, get_attack, parse_attacks, quantize_model
from hf_unlearn.tiny import tiny_causal_lm, tiny_decoder


def torchao_grid(w: np.ndarray, bits: int, group: int | None = None) -> np.ndarray:
    """torchao's symmetric weight-only scheme (docs/metrics.md): s = max|w| / ((q_max - q_min) / 2), the full
    signed range, and round(w * (1 / s)) (a multiplication by the reciprocal, not a division)."""
    q_min, q_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    size = w.shape[1] if group is None else group
    parts = w.reshape(w.shape[0], -1, size).astype(np.float32)
    s = np.abs(parts).max(-1, keepdims=True) / np.float32((q_max - q_min) / 2)
    return (np.clip(np.round(parts * (np.float32(1) / s)), q_min, q_max) * s).reshape(w.shape)


def peaked(model: torch.nn.Module) -> torch.nn.Module:
    """Matrix weights x10: a tiny random model whose forget loss reacts to small weight changes."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10)
    return model


BUILDERS = {"gpt2": tiny_causal_lm, "llama": tiny_decoder}


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_torchao_int8_keeps_the_forget_loss_of_our_8_bit_quantizer(qa, architecture):
    model = peaked(BUILDERS[architecture](qa.tokenizer, seed=0))
    before = state_copy(model)

    def loss(m):
        return per_example_losses(m, qa.forget, qa.tokenizer).mean()

    base, ours = loss(model), loss(quantize_model(model, 8))
    attacked = get_attack("torchao_int8").apply(model)
    theirs = loss(attacked)
    assert abs(theirs - ours) < 3e-3 * base and abs(theirs - base) < 3e-3 * base
    assert type(attacked.lm_head.weight).__name__ == "Int8Tensor"  # torchao's tensor, not float weights
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_torchao_weights_are_its_symmetric_grid_per_channel_and_per_group(qa):
    model = tiny_causal_lm(qa.tokenizer, seed=0)
    conv = model.transformer.h[0].mlp.c_proj.weight.detach().numpy().T  # Conv1D [in, out]: rows = outputs
    int8 = get_attack("torchao_int8").apply(model)
    layer = int8.transformer.h[0].mlp.c_proj  # replaced by the equivalent nn.Linear on the copy
    assert isinstance(layer, torch.nn.Linear) and layer.in_features == conv.shape[1]
    np.testing.assert_allclose(layer.weight.dequantize().numpy(), torchao_grid(conv, 8), rtol=0, atol=1e-7)
    assert set(layer.weight.qdata.unique().tolist()) <= set(range(-128, 128))
    int4 = TorchaoQuantizeAttack(4, group_size=32).apply(model)  # c_proj is 128 wide: 4 groups of 32
    weight = int4.transformer.h[0].mlp.c_proj.weight
    assert tuple(weight.scale.shape) == (conv.shape[0], 4)
    np.testing.assert_allclose(weight.dequantize().numpy(), torchao_grid(conv, 4, 32), rtol=0, atol=1e-7)
    # the default int4 group (128) is wider than the 32-wide layers: one scale per output channel there
    attn = get_attack("torchao_int4").apply(model).transformer.h[0].attn.c_attn.weight
    assert tuple(attn.scale.shape) == (3 * 32, 1)


def test_torchao_keys_against_golden(qa):
    model = tiny_decoder(qa.tokenizer, seed=0)
    metrics = evaluate_unlearning(
        model,
        forget_dataset=qa.forget,
        retain_dataset=qa.retain,
        golden_model=tiny_decoder(qa.tokenizer, seed=1),
        processing_class=qa.tokenizer,
        attacks=parse_attacks("torchao_int8,torchao_int4"),
    )
    for name in ("torchao_int8", "torchao_int4"):
        for key in ("forget/loss", "forget/token_accuracy", "golden/forget/loss", "gap_to_golden"):
            assert np.isfinite(metrics[f"attack/{name}/{key}"]), key
    assert metrics["attack/torchao_int8/forget/loss"] == pytest.approx(metrics["forget/loss"], rel=3e-3)


def test_without_torchao_the_error_names_the_extra(qa, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    model = tiny_decoder(qa.tokenizer, seed=0)
    with pytest.raises(ValueError, match=r'pip install "hf-unlearn\[quantization\]"'):
        get_attack("torchao_int8").apply(model)
    with pytest.raises(ValueError, match="bits=8 or bits=4"):
        TorchaoQuantizeAttack(3)


def test_a_lora_model_is_merged_on_a_copy_first(qa):
    from conftest import lora_config_for
    from peft import get_peft_model

    model = get_peft_model(peaked(tiny_causal_lm(qa.tokenizer, seed=0)), lora_config_for("gpt2"))
    with torch.no_grad():  # non-zero adapters, so that merging them matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    before = state_copy(model)
    attacked = get_attack("torchao_int8").apply(model)
    assert not any("lora" in name for name, _ in attacked.named_modules())

    def loss(m):
        return per_example_losses(m, qa.forget, qa.tokenizer).mean()

    adapted, theirs = loss(model), loss(attacked)
    with model.disable_adapter():
        bare = loss(model)
    assert abs(theirs - adapted) < 0.2 * abs(bare - adapted)  # the adapters are in the quantized weights
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
