import math

import pytest
import torch
import torch.nn.functional as F

from hf_unlearn import losses


def test_per_example_nll_classifier_is_cross_entropy():
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    expected = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(losses.per_example_nll(logits, labels), expected)


def test_per_example_nll_lm_is_token_mean_over_completion_only():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, 2, -100, -100]])
    out = losses.per_example_nll(logits, labels)
    logp = logits.log_softmax(-1)
    first = -(logp[0, 1, 3] + logp[0, 2, 4] + logp[0, 3, 5]) / 3  # logits at t predict token t + 1
    second = -(logp[1, 0, 1] + logp[1, 1, 2]) / 2
    torch.testing.assert_close(out, torch.stack([first, second]))


def test_per_example_logprob_sums_tokens():
    logits = torch.randn(1, 4, 6)
    labels = torch.tensor([[-100, 2, 3, 1]])
    nll = losses.per_example_nll(logits, labels)
    torch.testing.assert_close(losses.per_example_logprob(logits, labels), -3 * nll)


def test_logprob_from_the_token_mean_nll_is_the_summed_logprob():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 5], [-100, 1, -100, -100, -100]])
    nll = losses.per_example_nll(logits, labels)
    torch.testing.assert_close(
        losses.logprob_from_nll(nll, labels), losses.per_example_logprob(logits, labels)
    )
    logits, labels = torch.randn(3, 4), torch.tensor([0, 3, 1])  # a classifier: one target each
    nll = losses.per_example_nll(logits, labels)
    torch.testing.assert_close(
        losses.logprob_from_nll(nll, labels), losses.per_example_logprob(logits, labels)
    )


@pytest.mark.parametrize("num_classes", [2, 5])
def test_wrong_label_kl_is_zero_at_the_target_and_positive_elsewhere(num_classes):
    labels = torch.tensor([0, num_classes - 1])
    target = torch.full((2, num_classes), 0.0)
    target[torch.arange(2), labels] = -1e9  # no mass on the true class, uniform on the rest
    assert losses.wrong_label_kl(target, labels).abs().max() < 1e-6
    assert (losses.wrong_label_kl(torch.randn(2, num_classes), labels) > 0).all()


def test_wrong_label_kl_lm_matches_explicit_kl():
    logits, labels = torch.randn(1, 3, 4), torch.tensor([[-100, 1, 2]])
    logp = logits.log_softmax(-1)
    expected = 0.0
    for t, y in [(0, 1), (1, 2)]:
        q = torch.full((4,), 1 / 3)
        q[y] = 0
        expected += sum(q[c] * (math.log(1 / 3) - logp[0, t, c]) for c in range(4) if c != y) / 2
    torch.testing.assert_close(losses.wrong_label_kl(logits, labels), torch.tensor([float(expected)]))


def test_npo_equals_two_over_beta_log_two_at_the_reference():
    logp = torch.tensor([-3.0, -1.0, -7.0])
    for beta in (0.1, 0.5, 2.0):
        assert losses.npo_loss(logp, logp.clone(), beta).item() == pytest.approx(2 / beta * math.log(2))
    assert losses.npo_loss(logp - 5, logp, 0.1) < losses.npo_loss(logp, logp, 0.1)


def test_capped_ascent_stops_pushing_examples_past_the_cap():
    forget = torch.tensor([1.0, 9.0], requires_grad=True)
    loss = losses.capped_ascent(forget, cap=5.0)
    loss.backward()
    assert loss.item() == pytest.approx(-(1.0 + 5.0) / 2)
    torch.testing.assert_close(forget.grad, torch.tensor([-0.5, 0.0]))


def test_random_wrong_targets_differ_from_labels_and_keep_ignored_positions():
    labels = torch.tensor([[-100, 3, 0, 2], [1, 1, -100, 4]])
    wrong = losses.random_wrong_targets(labels, 5, torch.Generator().manual_seed(0))
    keep = labels == -100
    assert torch.equal(wrong[keep], labels[keep])
    assert (wrong[~keep] != labels[~keep]).all()
    assert ((wrong[~keep] >= 0) & (wrong[~keep] < 5)).all()


# -- SimNPO, IdkDPO, WGA, SatImp, UNDIAL on hand-made tensors ---------------------------------------------
def test_simnpo_and_dpo_equal_two_over_beta_log_two_at_their_balance_point():
    from hf_unlearn.losses import dpo_per_example, simnpo_per_example

    nll = torch.tensor([0.3, 1.7])
    assert torch.allclose(
        simnpo_per_example(nll, beta=4.5, delta=nll), torch.full((2,), 2 / 4.5 * math.log(2))
    )
    # the loss falls as the forget NLL rises past delta (ascent), and rises below it
    assert simnpo_per_example(torch.tensor(3.0), 4.5, 0.0) < simnpo_per_example(torch.tensor(0.1), 4.5, 0.0)
    ratio = torch.tensor([-0.4, 0.2])
    assert torch.allclose(dpo_per_example(ratio, ratio, beta=0.1), torch.full((2,), 20 * math.log(2)))
    # preferring the refusal over the forget answer lowers it
    assert dpo_per_example(torch.tensor(1.0), torch.tensor(-1.0), 0.1) < 20 * math.log(2)


def test_token_weights_and_their_pooled_ascent():
    from hf_unlearn.losses import pooled_ascent, satimp_weights, token_weighted_nll, wga_weights

    p = torch.tensor([0.25, 0.5, 1.0])
    assert torch.allclose(wga_weights(p, 2.0), p**2)
    assert torch.allclose(satimp_weights(p, 1.0, 1.0), torch.tensor([0.1875, 0.25, 0.0]))
    # one LM example, two completion tokens with probabilities 0.5 and 0.25 (two-way logits), one prompt token
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.5, 0.5]]]))
    labels = torch.tensor([[-100, 0, 0]])
    sums, counts = token_weighted_nll(logits, labels, lambda prob: prob)
    expected = 0.5 * math.log(2) + 0.25 * math.log(4)
    assert counts.tolist() == [2.0] and sums.item() == pytest.approx(expected, rel=1e-6)
    assert pooled_ascent(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 3.0])).item() == pytest.approx(-1.5)
    active = torch.tensor([True, False])
    assert pooled_ascent(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 3.0]), active).item() == pytest.approx(
        -0.5
    )


def test_undial_distills_towards_the_frozen_logits_with_the_target_lowered():
    from hf_unlearn.losses import undial_per_example

    logits = torch.tensor([[1.0, 0.0, -1.0]])
    labels = torch.tensor([0])
    # beta = 0: cross-entropy to its own distribution = its entropy
    p = torch.softmax(logits, -1)
    entropy = -(p * p.log()).sum()
    assert undial_per_example(logits, logits, labels, 0.0).item() == pytest.approx(entropy.item(), rel=1e-6)
    # a huge beta removes the target from the soft label: the rest keep their relative odds
    soft = torch.softmax(torch.tensor([0.0, -1.0]), -1)
    logp = torch.log_softmax(logits, -1)[0, 1:]
    value = undial_per_example(logits, logits, labels, 1e4).item()
    assert value == pytest.approx(-(soft * logp).sum().item(), rel=1e-5)


def test_rmu_activation_mse_is_a_token_mean_over_the_mask():
    from hf_unlearn.losses import masked_activation_mse

    hidden = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [9.0, 9.0]]])  # the third position is masked out
    target = torch.zeros_like(hidden)
    mask = torch.tensor([[True, True, False]])
    # per position: mean over the hidden size (5 and 4), then over the two masked-in positions
    assert masked_activation_mse(hidden, target, mask).tolist() == [4.5]
