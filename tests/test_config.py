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


BASE_FIELDS = {f.name for f in dataclasses.fields(UnlearningConfig.__mro__[1])} - {"learning_rate"}
OPTIONAL_NUMBERS = ("forget_loss_cap", "forget_loss_cap_from_eval", "stopping_eval_steps", "max_length")
#: every number field UnlearningConfig adds (or redefines) to TrainingArguments'
NUMBER_FIELDS = sorted(
    f.name
    for f in dataclasses.fields(UnlearningConfig)
    if f.name not in BASE_FIELDS and (type(f.default) in (int, float) or f.name in OPTIONAL_NUMBERS)
)


@pytest.mark.parametrize("name", NUMBER_FIELDS)
@pytest.mark.parametrize("value", [float("nan"), float("-inf")])
def test_every_number_of_ours_must_be_finite(tmp_path, name, value):
    # NaN passes every range check (all comparisons are False): it is refused before any of them
    with pytest.raises(ValueError, match=f"UnlearningConfig.{name} must be a finite number"):
        UnlearningConfig(output_dir=str(tmp_path), **{name: value})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
        ({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
        ({"learning_rate": -1e-4}, "learning_rate must be >= 0"),
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"max_grad_norm": float("nan")}, "max_grad_norm must be a finite number"),
        ({"ieu_noise_std": float("inf")}, "ieu_noise_std must be a finite number"),
        (
            {"forget_loss_cap": float("-inf")},
            r"forget_loss_cap must be a finite number \(float\('inf'\) only",
        ),
        ({"max_steps": 0}, "max_steps must be > 0 .optimizer steps., or -1 to train for num_train_epochs"),
    ],
)
def test_training_numbers_are_checked_before_anything_runs(tmp_path, kwargs, message):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        UnlearningConfig(output_dir=str(out), **kwargs)
    assert not out.exists()


def test_inf_disables_the_cap_and_max_steps_minus_one_means_epochs(tmp_path):
    uncapped = UnlearningConfig(output_dir=str(tmp_path), forget_loss_cap=float("inf"))
    assert uncapped.forget_loss_cap == float("inf")
    assert UnlearningConfig(output_dir=str(tmp_path), max_steps=-1, num_train_epochs=2).max_steps == -1


def _config_warnings(caplog, tmp_path, **kwargs) -> str:
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_unlearn.config"):
        UnlearningConfig(output_dir=str(tmp_path), **kwargs)
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "hf_unlearn.config")


def test_a_setting_of_another_method_warns_naming_the_setting_and_its_methods(tmp_path, caplog):
    text = _config_warnings(caplog, tmp_path, method="ga", npo_beta=0.5)
    assert "method='ga' does not use npo_beta=0.5 (read by idk_dpo, npo)" in text
    text = _config_warnings(caplog, tmp_path, method="dr", forget_loss_cap=3.0, ieu_decay=5.0)
    assert (
        "forget_loss_cap=3.0 (read by ga, grad_diff, ieu)" in text and "ieu_decay=5.0 (read by ieu)" in text
    )
    assert "retain_weight" in _config_warnings(caplog, tmp_path, method="ft", retain_weight=2.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "npo", "npo_beta": 0.5},
        {"method": "ga", "forget_weight": 2.0, "forget_loss_cap": 3.0},
        {"method": "dr", "dr_alpha": 1.0, "dr_variant": "ce"},
        {"method": "ga", "npo_beta": 0.1},  # the default value: nothing was set
        {"method": "rmu", "rmu_layer": 1},
    ],
)
def test_settings_of_the_method_itself_or_defaults_do_not_warn(tmp_path, caplog, kwargs):
    assert _config_warnings(caplog, tmp_path, **kwargs) == ""


def test_every_field_a_method_reads_is_a_config_field():
    from hf_unlearn.config import method_settings

    names = {f.name for f in dataclasses.fields(UnlearningConfig)}
    settings = method_settings()
    assert set(settings) <= names and settings["npo_beta"] == ["idk_dpo", "npo"]


def test_a_method_of_an_optional_package_is_loaded_when_named():
    """``esd`` is registered by hf_unlearn.diffusion: naming it in a config imports the package (a fresh process,
    so nothing imported it before)."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom hf_unlearn import UnlearningConfig\n"
        "assert 'hf_unlearn.diffusion' not in sys.modules\n"
        "c = UnlearningConfig(output_dir='out', method='esd', report_to=[])\n"
        "assert 'hf_unlearn.diffusion' in sys.modules and c.method == 'esd'\n"
        "from hf_unlearn.methods import get_method\nprint(get_method('esd').__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ErasingStableDiffusion"
