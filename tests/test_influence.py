import copy
import math

import pytest
import torch
from conftest import make_config

from hf_unlearn import UnlearningTrainer
from hf_unlearn.influence import DecayNoiseHook, noise_schedule
from hf_unlearn.tiny import tiny_classifier


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


def test_ieu_noise_at_zero_lr_has_std_sigma_and_is_seeded(tmp_path, mislabeled):
    init = tiny_classifier(mislabeled.tokenizer)
    sigma = 0.01
    runs = {
        seed: _ieu_run(tmp_path, mislabeled, init, seed, learning_rate=0.0, ieu_noise_std=sigma, max_steps=1)
        for seed in (0, 0, 1)
    }
    first = _ieu_run(tmp_path, mislabeled, init, 0, learning_rate=0.0, ieu_noise_std=sigma, max_steps=1)
    delta = torch.cat([(p1 - p0).flatten() for p1, p0 in zip(first.parameters(), init.parameters())])
    assert delta.std().item() == pytest.approx(sigma, rel=0.1)
    same = all(torch.equal(a, b) for a, b in zip(first.parameters(), runs[0].parameters()))
    other = any(not torch.equal(a, b) for a, b in zip(first.parameters(), runs[1].parameters()))
    assert same and other


# -- saliency masks: SalUn (forget saliency on the update) and retention-based masking (RBM) ---------------
def test_top_fraction_takes_exactly_the_largest_finite_scores_across_tensors():
    from hf_unlearn.influence import top_fraction

    scores = {"a": torch.tensor([0.1, 5.0, -math.inf]), "b": torch.tensor([[3.0, 0.2], [4.0, -1.0]])}
    masks = top_fraction(scores, ratio=3 / 7)
    assert masks["a"].tolist() == [False, True, False]
    assert masks["b"].tolist() == [[True, False], [True, False]]
    # never a non-finite score, even when the ratio asks for more
    assert sum(int(m.sum()) for m in top_fraction(scores, ratio=0.99).values()) == 6


def test_retention_scores_pick_what_retain_uses_least_among_what_forget_moves():
    from hf_unlearn.influence import retention_scores, top_fraction

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
    from hf_unlearn.influence import gradient_magnitudes, top_fraction

    original = tiny_image_classifier("vit")
    saliency = gradient_magnitudes(
        original, trainer._batches(trainer.forget_rows, "f"), trainer._nll_sum, per_batch=False
    )
    assert all(torch.equal(top_fraction(saliency, 0.3)[n], masks[n]) for n in masks)
