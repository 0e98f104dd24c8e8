"""The report's hyperparameters: the training fields, the fields the method reads and those of the options
that are on, nothing else (``pipeline.unlearning_fields``); ``UnlearningMethod.hyperparameters`` is checked
against what each method really reads during a step."""

import pytest
from conftest import build_test_model, make_config, method_kind_matrix

from hf_unlearn.methods import METHODS
from hf_unlearn.pipeline import TRAINING_FIELDS, RunArguments, hyperparameters, unlearning_fields


class _ReadRecorder:
    """Stands in for a config: answers every attribute and records its name."""

    def __init__(self, config):
        self._config, self.read = config, set()

    def __getattr__(self, name):
        self.read.add(name)
        return getattr(self._config, name)


# every registered method, on the first test model it runs on
FIRST_MODEL = {method: model for method, model in reversed(method_kind_matrix(one_model_per_kind=True))}


@pytest.mark.parametrize(("method", "test_model"), sorted(FIRST_MODEL.items()))
def test_a_method_reads_only_the_fields_it_declares(method, test_model, tmp_path, mislabeled, qa, digits):
    from hf_unlearn import UnlearningTrainer

    model, task = build_test_model(test_model, mislabeled, qa, digits)
    config = make_config(tmp_path, method=method, max_steps=2)
    trainer = UnlearningTrainer(
        model, config, forget_dataset=task.forget, retain_dataset=task.retain, processing_class=task.tokenizer
    )
    recorder = _ReadRecorder(config)
    trainer.method.args = recorder
    trainer.train()
    if METHODS[method].hyperparameters:
        assert recorder.read, "the recorder saw no read: the method no longer reads self.args"
    assert recorder.read <= set(unlearning_fields(config)), recorder.read - set(unlearning_fields(config))


def test_the_report_lists_the_method_fields_and_the_options_that_are_on(tmp_path):
    run_args = RunArguments()
    ieu = hyperparameters(make_config(tmp_path, method="ieu", ieu_decay=4.0), run_args)
    assert ieu["ieu_decay"] == 4.0 and "npo_beta" not in ieu and "dr_alpha" not in ieu
    assert "forget_loss_cap" in ieu and "stopping" not in ieu and "mask_ratio" not in ieu
    assert set(TRAINING_FIELDS) - {"num_train_epochs"} <= set(ieu)  # max_steps > 0: epochs do not apply
    npo = hyperparameters(make_config(tmp_path, method="npo", stopping="heldout_pause"), run_args)
    assert npo["npo_beta"] == 0.1 and "ieu_decay" not in npo and "forget_loss_cap" not in npo
    assert npo["stopping"] == "heldout_pause" and "stopping_tolerance" in npo
    dr = hyperparameters(make_config(tmp_path, method="dr", influence_removal="mask"), run_args)
    assert {"dr_alpha", "dr_variant", "influence_removal", "mask_ratio"} <= set(dr)
    assert "forget_weight" not in dr  # DR weighs its terms with dr_alpha
