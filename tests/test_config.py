import dataclasses

import pytest

from hf_unlearn import UnlearningConfig
from hf_unlearn.methods import METHODS


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"method": "forget_everything"}, "method"),
        ({"dr_alpha": 0.0}, "dr_alpha"),
        ({"dr_alpha": 1.5}, "dr_alpha"),
        ({"dr_variant": "js"}, "dr_variant"),
        ({"ieu_decay": -1.0}, "ieu_decay"),
        ({"ieu_noise_std": -1e-3}, "ieu_noise_std"),
        ({"ieu_noise_schedule": "exp"}, "ieu_noise_schedule"),
        ({"influence_removal": "prune"}, "influence_removal"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"npo_beta": 0.0}, "npo_beta"),
        ({"forget_loss_cap": -2.0}, "forget_loss_cap"),
        ({"forget_weight": -1.0}, "forget_weight"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        UnlearningConfig(output_dir=str(tmp_path), **kwargs)


def test_unknown_method_lists_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError) as err:
        UnlearningConfig(output_dir=str(tmp_path), method="nope")
    for name in ("ft", "ga", "grad_diff", "npo", "rl", "dr", "ieu"):
        assert name in str(err.value)


def test_every_unlearning_field_is_documented():
    base = {f.name for f in dataclasses.fields(UnlearningConfig.__mro__[1])}
    own = [f for f in dataclasses.fields(UnlearningConfig) if f.name not in base]
    assert {"method", "dr_alpha", "ieu_decay", "ieu_noise_std", "forget_loss_cap", "mask_ratio"} <= {
        f.name for f in own
    }
    for f in dataclasses.fields(UnlearningConfig):
        assert f.metadata.get("help"), f"{f.name} has no help"


def test_defaults_are_valid_and_registry_covers_the_documented_methods(tmp_path):
    config = UnlearningConfig(output_dir=str(tmp_path))
    assert config.remove_unused_columns is False
    assert {"ft", "ga", "grad_diff", "npo", "rl", "dr", "ieu"} <= set(METHODS)
