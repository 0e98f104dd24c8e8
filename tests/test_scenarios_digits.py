"""The ``digits-*`` image scenarios: seeded protocol splits, and one real build with an unlearning run scored
against its golden model."""

import numpy as np
import pytest

from hf_unlearn.scenarios import load_scenario, scenario_names
from hf_unlearn.scenarios.digits import FORGET_CLASS, load_digits_images, split_digits


def test_digits_splits_follow_each_protocol_and_are_seeded():
    pixels, labels = load_digits_images()
    assert pixels.shape == (1797, 1, 8, 8) and -1.0 <= pixels.min() < pixels.max() <= 1.0
    assert {"digits-random10", "digits-random50", "digits-class"} <= set(scenario_names())
    random10 = split_digits(pixels, labels, seed=0, protocol="random", forget_fraction=0.1)
    random50 = split_digits(pixels, labels, seed=0, protocol="random", forget_fraction=0.5)
    by_class = split_digits(pixels, labels, seed=0, protocol="class")
    n_train = 1797 - len(random10["test"])
    assert len(random10["forget"]) == round(0.1 * n_train) and len(random50["forget"]) == round(0.5 * n_train)
    assert set(by_class["forget"]["label"]) == {FORGET_CLASS} and FORGET_CLASS not in set(
        by_class["retain"]["label"]
    )
    assert random10["test"]["pixel_values"] == by_class["test"]["pixel_values"]  # one test split for all
    again = split_digits(pixels, labels, seed=0, protocol="random")
    assert again["forget"]["pixel_values"] == random10["forget"]["pixel_values"]
    other = split_digits(pixels, labels, seed=1, protocol="random")
    assert other["forget"]["pixel_values"] != random10["forget"]["pixel_values"]
    train = {tuple(np.ravel(x)) for s in ("forget", "retain") for x in random10[s]["pixel_values"]}
    assert not train & {tuple(np.ravel(x)) for x in random10["test"]["pixel_values"]}


@pytest.mark.efficacy
def test_class_wise_build_then_unlearning_lands_on_golden(tmp_path):
    from conftest import make_config

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.metrics import evaluate_unlearning

    sc = load_scenario("digits-class", output_dir=str(tmp_path), seed=0)
    metrics = sc.metrics
    assert metrics["original"]["forget"]["accuracy"] == 1.0 and metrics["golden"]["forget"]["accuracy"] == 0.0
    assert min(metrics[m]["test"]["accuracy"] for m in ("original", "golden")) >= 0.85
    args = make_config(
        tmp_path, method="grad_diff", **{**sc.unlearning_defaults, "per_device_train_batch_size": 32}
    )
    trainer = UnlearningTrainer(
        sc.original_model(),
        args,
        forget_dataset=sc.forget,
        retain_dataset=sc.retain,
        processing_class=sc.tokenizer,
    )
    trainer.train()
    kwargs = dict(forget_dataset=sc.forget, retain_dataset=sc.retain, test_dataset=sc.test)
    result = evaluate_unlearning(trainer.model, golden_model=sc.golden_model(), **kwargs)
    # the digit is gone as it is for golden (which never saw it), and the other digits stay
    assert result["forget/ua"] >= 0.95 and result["golden/forget/ua"] == 1.0
    assert result["retain/accuracy"] >= 0.97
    assert result["gap/average"] <= 0.05
    original = evaluate_unlearning(sc.original_model(), golden_model=sc.golden_model(), **kwargs)
    assert original["gap/average"] >= 0.3 and original["mia/efficacy"] <= 0.1 <= 0.9 <= result["mia/efficacy"]
