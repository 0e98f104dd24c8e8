"""The chunked LM losses (``lm_loss_chunk_size``) give the full-logits numbers without the full logits."""

from __future__ import annotations

import copy
import logging
from functools import partial

import pytest
import torch
from conftest import make_config, method_kind_matrix
from torch.utils._python_dispatch import TorchDispatchMode

from hf_unlearn import UnlearningTrainer, losses
from hf_unlearn.kinds.lm_head import ChunkedLogits, LMHead, apply_steps
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier, tiny_decoder

LM_METHODS = [m for m, model in method_kind_matrix() if model == "causal_lm"]  # all 15, ft to rmu
STEPS = (
    ("mul", 1.5),
    ("softcap", 3.0),
)  # a logit scale and Gemma 2's soft-capping, as transformers does them


# -- the losses, on hand-made hidden states -------------------------------------------------------------------
def _lm_case(seed: int = 0, batch: int = 3, length: int = 9, hidden: int = 8, vocab: int = 11):
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, length, hidden, generator=generator)
    head = torch.nn.Linear(hidden, vocab, bias=True)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, hidden, generator=generator))
        head.bias.copy_(torch.randn(vocab, generator=generator))
    labels = torch.randint(0, vocab, (batch, length), generator=generator)
    labels[0, :4] = -100  # a prompt
    labels[2, -3:] = -100  # padding
    return states, head, labels


def _both(states, head, steps=STEPS, chunk_size=4):
    """The same logits twice: full (``[B, T, V]``) and chunked, each on its own leaf copy of ``states``."""
    full_states = states.clone().requires_grad_(True)
    chunk_states = states.clone().requires_grad_(True)
    full = apply_steps(head(full_states), steps)
    lm_head = LMHead(head, num_classes=head.out_features, steps=steps)
    return (full, full_states), (ChunkedLogits(chunk_states, lm_head, chunk_size), chunk_states)


def _grads(value: torch.Tensor, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    return torch.autograd.grad(value.sum(), leaves)


LOSSES = {
    "per_example_nll": losses.per_example_nll,
    "per_example_logprob": losses.per_example_logprob,
    "wrong_label_kl": losses.wrong_label_kl,
    "token_weighted_nll (wga)": lambda logits, labels: losses.token_weighted_nll(
        logits, labels, partial(losses.wga_weights, beta=2.0)
    )[0],
    "random wrong targets": lambda logits, labels: losses.per_example_nll(
        logits,
        losses.random_wrong_targets(labels, losses.num_classes(logits), torch.Generator().manual_seed(3)),
    ),
}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_each_lm_loss_is_the_same_on_chunked_logits_values_and_gradients(name, chunk_size):
    states, head, labels = _lm_case()
    (full, full_states), (chunked, chunk_states) = _both(states, head, chunk_size=chunk_size)
    expected, got = LOSSES[name](full, labels), LOSSES[name](chunked, labels)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    params = list(head.parameters())
    for g_full, g_chunk in zip(
        _grads(expected, [full_states, *params]), _grads(got, [chunk_states, *params])
    ):
        torch.testing.assert_close(g_chunk, g_full, atol=1e-5, rtol=1e-5)


def test_undial_against_chunked_frozen_logits_is_the_same_and_sends_no_gradient_to_the_frozen_head():
    states, head, labels = _lm_case()
    frozen = copy.deepcopy(head)
    ref_states = states + 0.1
    (full, full_states), (chunked, chunk_states) = _both(states, head, chunk_size=5)
    ref_full = apply_steps(frozen(ref_states), STEPS).detach()
    frozen_head = LMHead(frozen, num_classes=11, steps=STEPS).frozen()
    ref_chunked = ChunkedLogits(ref_states, frozen_head, 5)
    expected = losses.undial_per_example(full, ref_full, labels, beta=2.0)
    got = losses.undial_per_example(chunked, ref_chunked, labels, beta=2.0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    params = list(head.parameters())
    for g_full, g_chunk in zip(
        _grads(expected, [full_states, *params]), _grads(got, [chunk_states, *params])
    ):
        torch.testing.assert_close(g_chunk, g_full, atol=1e-5, rtol=1e-5)
    assert all(p.grad is None for p in frozen.parameters())


class _LargestTensor(TorchDispatchMode):
    """The largest number of elements of any tensor an op returns while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_tensor_of_the_full_logits_size_exists_in_the_forward_or_backward_pass():
    states, head, labels = _lm_case(batch=4, length=64, hidden=8, vocab=512)
    (_, _), (chunked, chunk_states) = _both(states, head, chunk_size=16)
    with _LargestTensor() as watch:
        loss = losses.per_example_nll(chunked, labels).mean() + losses.wrong_label_kl(chunked, labels).mean()
        loss.backward()
    full_logits = 4 * 64 * 512
    assert watch.largest <= 16 * 512 * 2 < full_logits / 4  # one chunk's logits (one-hot: 2 per class)
    assert chunk_states.grad is not None and head.weight.grad is not None


def test_a_batch_without_loss_positions_gives_zero_values_still_in_the_graph():
    states, head, labels = _lm_case()
    (_, _), (chunked, chunk_states) = _both(states, head)
    nll = losses.per_example_nll(chunked, torch.full_like(labels, -100))
    assert nll.tolist() == [0.0, 0.0, 0.0]
    nll.sum().backward()
    assert torch.equal(chunk_states.grad, torch.zeros_like(states))


# -- the trainer, on tiny GPT-2 (tied embeddings), Llama (untied) and Gemma 2 (soft-capping) from config -------
def _model(kind: str, tokenizer):
    if kind == "gpt2":
        return tiny_causal_lm(tokenizer)
    if kind == "llama_bias":  # an LM head with a bias (untied)
        model = tiny_decoder(tokenizer, "llama")
        torch.manual_seed(1)
        model.lm_head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
        return model
    return tiny_decoder(tokenizer, kind)


def _one_sgd_step(tmp_path, qa, model, method, peft_config=None, **kwargs):
    """One SGD step at learning rate 1: ``(trainer, logged row, -gradient of every trainable weight)``."""
    kwargs = {"ieu_decay": 0.5, **kwargs} if method == "ieu" else kwargs
    args = make_config(
        tmp_path,
        method=method,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        **kwargs,
    )
    torch.manual_seed(0)  # the same adapter initialization in both arms
    trainer = UnlearningTrainer(
        model,
        args,
        forget_dataset=qa.forget,
        retain_dataset=qa.retain,
        processing_class=qa.tokenizer,
        peft_config=peft_config,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    row = next(r for r in trainer.state.log_history if "loss" in r)
    after = dict(trainer.model.named_parameters())
    return trainer, row, {n: before[n] - after[n].detach() for n in before}


def _assert_same_step(full, chunked):
    (t_full, row_full, step_full), (t_chunk, row_chunk, step_chunk) = full, chunked
    metrics = [
        k for k in row_full if k.endswith("loss") or k.startswith(("npo", "dpo", "rmu", "dr_", "weighted"))
    ]
    assert metrics
    for key in metrics:
        assert row_chunk[key] == pytest.approx(row_full[key], rel=1e-5, abs=1e-6), key
    for name in step_full:
        torch.testing.assert_close(step_chunk[name], step_full[name], atol=1e-5, rtol=1e-5, msg=name)
    if t_full.ref_logprob is not None:  # the reference pass (chunked, without gradients) too
        torch.testing.assert_close(t_chunk.ref_logprob, t_full.ref_logprob, atol=1e-5, rtol=1e-5)
    if t_full.method.forget_loss_cap is not None:  # measured on the model before the first step
        assert t_chunk.method.forget_loss_cap == pytest.approx(t_full.method.forget_loss_cap, rel=1e-6)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("method", LM_METHODS)
def test_every_method_takes_the_full_logits_step_with_chunked_logits(tmp_path, qa, method, kind):
    model = _model(kind, qa.tokenizer)
    full = _one_sgd_step(tmp_path, qa, copy.deepcopy(model), method, lm_loss_chunk_size=0)
    chunked = _one_sgd_step(tmp_path, qa, model, method, lm_loss_chunk_size=7)  # several chunks per part
    assert full[0].lm_heads is None and chunked[0].lm_heads(chunked[0].model) is not None
    _assert_same_step(full, chunked)


@pytest.mark.parametrize("method", ["grad_diff", "dr", "undial"])
@pytest.mark.parametrize("kind", ["gemma2", "llama_bias"])
def test_soft_capping_and_an_lm_head_bias_are_reproduced(tmp_path, qa, method, kind):
    model = _model(kind, qa.tokenizer)
    full = _one_sgd_step(tmp_path, qa, copy.deepcopy(model), method, lm_loss_chunk_size=0)
    chunked = _one_sgd_step(tmp_path, qa, model, method, lm_loss_chunk_size=7)
    head = chunked[0].lm_heads(chunked[0].model)
    assert head is not None and (head.steps == (("softcap", 30.0),)) == (kind == "gemma2")
    _assert_same_step(full, chunked)


@pytest.mark.parametrize("method", ["npo", "undial", "idk_dpo"])
def test_lora_on_the_lm_head_too_is_the_same_and_the_frozen_side_runs_adapters_disabled(tmp_path, qa, method):
    from peft import LoraConfig

    # random adapter weights: the adapted head differs from the original one from the first step on
    lora = LoraConfig(
        task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj", "lm_head"], init_lora_weights=False
    )
    model = tiny_decoder(qa.tokenizer, "llama")
    full = _one_sgd_step(tmp_path, qa, copy.deepcopy(model), method, lora, lm_loss_chunk_size=0)
    chunked = _one_sgd_step(tmp_path, qa, model, method, lora, lm_loss_chunk_size=7)
    assert any("lm_head" in name for name in chunked[2])
    _assert_same_step(full, chunked)


@pytest.mark.parametrize("method", LM_METHODS)
def test_gradient_checkpointing_gives_the_same_step_with_every_method(tmp_path, qa, method):
    model = tiny_decoder(qa.tokenizer, "llama")
    plain = _one_sgd_step(tmp_path, qa, copy.deepcopy(model), method)
    checkpointed = _one_sgd_step(tmp_path, qa, model, method, gradient_checkpointing=True)
    assert checkpointed[0].model.is_gradient_checkpointing
    _assert_same_step(plain, checkpointed)


def test_a_model_whose_logits_the_head_does_not_reproduce_keeps_the_full_logits(tmp_path, qa, caplog):
    model = tiny_decoder(qa.tokenizer, "llama")
    model.config.final_logit_softcapping = 5.0  # a setting Llama's forward ignores: the probe tells
    full = _one_sgd_step(tmp_path, qa, copy.deepcopy(model), "grad_diff", lm_loss_chunk_size=0)
    with caplog.at_level(logging.WARNING, logger="hf_unlearn.kinds.lm_head"):
        chunked = _one_sgd_step(tmp_path, qa, model, "grad_diff")
    assert chunked[0].lm_heads(chunked[0].model) is None
    assert any(
        "does not reproduce" in r.getMessage() and "LlamaForCausalLM" in r.getMessage()
        for r in caplog.records
    )
    _assert_same_step(full, chunked)


def test_classifiers_keep_their_logits_and_negative_chunk_sizes_are_rejected(tmp_path, mislabeled):
    trainer = UnlearningTrainer(
        tiny_classifier(mislabeled.tokenizer),
        make_config(tmp_path, method="dr"),
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        processing_class=mislabeled.tokenizer,
    )
    assert trainer.lm_heads is None
    with pytest.raises(ValueError, match="lm_loss_chunk_size must be >= 0"):
        make_config(tmp_path, lm_loss_chunk_size=-1)
