import copy
import math

import pytest
import torch
from conftest import make_config

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.tiny import tiny_classifier
from hf_unlearn.weights.decay_noise import DecayNoiseHook, noise_schedule


def _hook(step, **kwargs):
    defaults = dict(
        decay=0.0,
        noise_std=0.0,
        schedule="constant",
        seed=0,
        step_fn=lambda: step[0],
        max_steps_fn=lambda: 100,
    )
    defaults.update(kwargs)
    return DecayNoiseHook(**defaults)


def test_hook_contracts_a_weight_without_gradient_by_one_minus_lr_lambda_each_step():
    weight = torch.nn.Parameter(torch.ones(4, 3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0 / (1 + t))
    step = [0]
    optimizer.register_step_post_hook(_hook(step, decay=2.0))
    expected = 1.0
    for _ in range(5):
        weight.grad = torch.zeros_like(weight)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        step[0] += 1
        expected *= 1 - lr * 2.0
        torch.testing.assert_close(weight.detach(), torch.full((4, 3), expected))


def test_noise_has_the_requested_std_follows_the_schedule_and_every_k_scaling():
    step = [0]
    weight = torch.nn.Parameter(torch.zeros(400, 500))
    _hook(step, noise_std=0.01).apply_noise([{"params": [weight], "lr": 0.0}], 0.01, 0)
    assert weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert noise_schedule("linear", 50, 100) == pytest.approx(0.5)
    assert noise_schedule("cosine", 100, 100) == pytest.approx(0.0, abs=1e-12)
    hook = _hook(step, noise_std=0.01, every=4)
    param = torch.nn.Parameter(torch.zeros(300, 300))
    group = [{"params": [param], "lr": 0.0}]
    opt = type("Opt", (), {"param_groups": group})()
    for t in range(4):
        step[0] = t
        hook(opt)
        if t < 3:
            assert param.abs().max() == 0  # no noise between injections
    assert param.std().item() == pytest.approx(0.01 * math.sqrt(4), rel=0.03)


def _ieu_run(tmp_path, task, init, seed, **kwargs):
    model = copy.deepcopy(init)
    args = make_config(tmp_path, method="ieu", seed=seed, lr_scheduler_type="constant", **kwargs)
    UnlearningTrainer(
        model, args, forget_dataset=task.forget, retain_dataset=task.retain, processing_class=task.tokenizer
    ).train()
    return model


def test_ieu_decay_contracts_untouched_weights_exactly_in_a_real_run(tmp_path, mislabeled):
    init = tiny_classifier(mislabeled.tokenizer)
    used = set(mislabeled.tokenizer(" ".join(r["text"] for r in mislabeled.train))["input_ids"])
    unused = [i for i in range(len(mislabeled.tokenizer)) if i not in used][:5]  # rows without gradient
    assert unused
    model = _ieu_run(
        tmp_path,
        mislabeled,
        init,
        0,
        learning_rate=1e-2,
        ieu_decay=5.0,
        ieu_noise_std=0.0,
        max_steps=4,
        weight_decay=0.0,
    )
    before = init.bert.embeddings.word_embeddings.weight[unused]
    after = model.bert.embeddings.word_embeddings.weight[unused]
    torch.testing.assert_close(after, before * (1 - 1e-2 * 5.0) ** 4, rtol=1e-5, atol=1e-7)


def test_ieu_noise_at_zero_lr_diffuses_sigma_squared_per_step_and_is_seeded(tmp_path, mislabeled):
    init = tiny_classifier(mislabeled.tokenizer)
    sigma, every = 0.01, UnlearningConfig.__dataclass_fields__["ieu_noise_every"].default
    assert every > 1  # the default injects sigma * sqrt(k) once every k steps

    def run(seed, steps):
        return _ieu_run(
            tmp_path, mislabeled, init, seed, learning_rate=0.0, ieu_noise_std=sigma, max_steps=steps
        )

    runs = {seed: run(seed, every) for seed in (0, 1)}
    first = run(0, every)
    delta = torch.cat([(p1 - p0).flatten() for p1, p0 in zip(first.parameters(), init.parameters())])
    assert delta.std().item() == pytest.approx(sigma * math.sqrt(every), rel=0.1)
    before_injection = run(0, every - 1)
    assert all(torch.equal(a, b) for a, b in zip(before_injection.parameters(), init.parameters()))
    same = all(torch.equal(a, b) for a, b in zip(first.parameters(), runs[0].parameters()))
    other = any(not torch.equal(a, b) for a, b in zip(first.parameters(), runs[1].parameters()))
    assert same and other


# -- saliency masks: SalUn (forget saliency on the update) and retention-based masking (RBM) ---------------
def test_top_fraction_takes_exactly_the_largest_finite_scores_across_tensors():
    from hf_unlearn.weights.decay_noise import top_fraction

    scores = {"a": torch.tensor([0.1, 5.0, -math.inf]), "b": torch.tensor([[3.0, 0.2], [4.0, -1.0]])}
    masks = top_fraction(scores, ratio=3 / 7)
    assert masks["a"].tolist() == [False, True, False]
    assert masks["b"].tolist() == [[True, False], [True, False]]
    # never a non-finite score, even when the ratio asks for more
    assert sum(int(m.sum()) for m in top_fraction(scores, ratio=0.99).values()) == 6


def test_retention_scores_pick_what_retain_uses_least_among_what_forget_moves():
    from hf_unlearn.weights.decay_noise import retention_scores, top_fraction

    forget = {"w": torch.tensor([2.0, 2.0, 0.0, 1.0, 3.0])}  # weight 2: the forget set does not move it
    retain = {"w": torch.tensor([0.0, 5.0, 0.0, 0.5, 4.0])}  # weight 0: forget-only; 1, 4: shared
    masks = top_fraction(retention_scores(forget, retain), ratio=0.4)
    assert masks["w"].tolist() == [True, False, False, True, False]  # forget-only first, then the least used


def test_salun_moves_only_the_weights_of_its_forget_saliency_mask(tmp_path, digits):
    from hf_unlearn.tiny import tiny_image_classifier

    model = tiny_image_classifier("vit")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = make_config(tmp_path, method="salun", salun_mask_ratio=0.3, max_steps=3, learning_rate=1e-2)
    trainer = UnlearningTrainer(model, args, forget_dataset=digits.forget, retain_dataset=digits.retain)
    trainer.train()
    masks = trainer.update_masks
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == int(0.3 * total)
    changed_out = sum(int((p != before[n])[~masks[n]].sum()) for n, p in model.named_parameters())
    changed_in = sum(int((p != before[n])[masks[n]].sum()) for n, p in model.named_parameters())
    assert changed_out == 0 and changed_in > 0.5 * int(0.3 * total)
    # the mask is SalUn's: the largest |gradient of the summed forget loss| on the original model
    from hf_unlearn.weights.decay_noise import gradient_magnitudes, top_fraction

    original = tiny_image_classifier("vit")
    saliency = gradient_magnitudes(
        original, trainer.device_batches(trainer.forget_rows, "f"), trainer.loss_sum, per_batch=False
    )
    assert all(torch.equal(top_fraction(saliency, 0.3)[n], masks[n]) for n in masks)


# -- the noise stream and the hook's caches ------------------------------------------------------------
def _reference_noise(sizes: list[int], sigma: float, base_seed: int, chunk: int) -> torch.Tensor:
    """The documented stream, drawn independently of the hook: the concatenated trainable tensors cut into
    chunks of ``chunk`` elements, chunk ``c`` from mt19937 seeded ``_chunk_seed(base_seed, c)``."""
    from hf_unlearn.weights.decay_noise import _chunk_seed

    total = sum(sizes)
    pieces = []
    for c, start in enumerate(range(0, total, chunk)):
        generator = torch.Generator().manual_seed(_chunk_seed(base_seed, c))
        pieces.append(torch.empty(min(chunk, total - start)).normal_(0.0, sigma, generator=generator))
    return torch.cat(pieces)


@pytest.mark.parametrize("threads", [1, 2])
def test_noise_is_the_documented_chunked_stream_whatever_the_thread_count(monkeypatch, threads):
    from hf_unlearn.weights import decay_noise as influence

    monkeypatch.setattr(influence, "NOISE_CHUNK", 1000)  # several chunks, several worker threads
    shapes = [(3, 5), (70, 40), (17,), (60, 20), (1,), (9, 9)]
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    frozen = torch.nn.Parameter(torch.zeros(4), requires_grad=False)
    groups = [{"params": params[:3] + [frozen], "lr": 0.1}, {"params": params[3:], "lr": 0.2}]
    hook = _hook([0], seed=7, rank_offset=3)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        hook.apply_noise(groups, 1e-3, step=5)
    finally:
        torch.set_num_threads(previous)
    base = 7 * influence._SEED_STRIDE + 5 * 7919 + 3
    expected = _reference_noise([p.numel() for p in params], 1e-3, base, 1000)
    assert torch.equal(torch.cat([p.detach().flatten() for p in params]), expected)
    assert frozen.abs().max() == 0


def test_chunk_layout_is_kept_and_rebuilt_when_a_storage_or_trainability_changes():
    weight, bias = torch.nn.Parameter(torch.zeros(30, 20)), torch.nn.Parameter(torch.zeros(20))
    groups = [{"params": [weight, bias], "lr": 0.0}]
    hook = _hook([0])
    hook.apply_noise(groups, 1.0, 0)
    buckets = hook._buckets
    hook.apply_noise(groups, 1.0, 1)
    assert hook._buckets is buckets  # cached
    weight.data = torch.zeros(30, 20)  # a new storage: the noise must land there
    bias.requires_grad_(False)
    bias.data.zero_()
    hook.apply_noise(groups, 1.0, 2)
    assert hook._buckets is not buckets
    assert weight.detach().std().item() == pytest.approx(1.0, rel=0.15) and bias.abs().max() == 0


def test_attach_gives_groups_the_fold_marker_and_passes_over_a_checkpoint_state_init_step():
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    model = torch.nn.Linear(6, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    handles = _hook([0], decay=1.0, noise_std=1e-2).attach(optimizer)
    assert optimizer.param_groups[0]["ieu_folded_decay"] is None
    before = [p.detach().clone() for p in model.parameters()]
    get_optimizer_state_dict(model, optimizer)  # creates the state with a zero-gradient step at lr 0
    assert optimizer.state and all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert optimizer.param_groups[0]["ieu_folded_decay"] is None and optimizer.param_groups[0]["lr"] == 1e-2
    model(torch.ones(2, 6)).sum().backward()
    optimizer.step()  # a training step: decayed (then folded) and noised
    assert optimizer.param_groups[0]["ieu_folded_decay"] == 1.0
    handles.remove()
    assert not optimizer._optimizer_step_post_hooks and not optimizer._optimizer_step_pre_hooks


def test_a_first_step_at_lr_zero_with_gradients_is_a_training_step():
    weight = torch.nn.Parameter(torch.zeros(50, 40))
    optimizer = torch.optim.SGD([weight], lr=0.0)  # e.g. warm-up from 0
    _hook([0], noise_std=0.01).attach(optimizer)
    weight.grad = torch.ones_like(weight)
    optimizer.step()
    assert weight.detach().std().item() == pytest.approx(0.01, rel=0.1)
