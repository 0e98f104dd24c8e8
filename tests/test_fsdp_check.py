"""check_sharding (sharding asked for but not applied) and the IEU hook on DTensors, in one process."""

import json
import types

import pytest
import torch
import torch.distributed as dist

from hf_unlearn.weights.distributed import (
    ShardingNotAppliedError,
    check_sharding,
    parameter_sharding,
    requested_sharding,
)

LAUNCH_VARS = (
    "ACCELERATE_USE_FSDP",
    "ACCELERATE_USE_DEEPSPEED",
    "ACCELERATE_DEEPSPEED_ZERO_STAGE",
    "ACCELERATE_DEEPSPEED_CONFIG_FILE",
)


@pytest.fixture
def launch(monkeypatch):
    """Set accelerate's launch variables (the others cleared)."""
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_vars(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return set_vars


@pytest.fixture(scope="module")
def mesh():
    """A one-process gloo group and its CPU device mesh (DTensors need one)."""
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def _sharded(mesh) -> torch.nn.Module:
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 30), torch.nn.Tanh(), torch.nn.Linear(30, 3))
    fully_shard(model, mesh=mesh)
    return model


def _accelerator(distributed_type="MULTI_CPU", processes=2):
    return types.SimpleNamespace(distributed_type=distributed_type, num_processes=processes)


def test_fsdp_asked_for_by_the_launcher_and_plain_parameters_is_an_error_or_a_warning(launch):
    launch(ACCELERATE_USE_FSDP="true")
    model = torch.nn.Linear(4, 2)
    with pytest.raises(ShardingNotAppliedError, match="ACCELERATE_USE_FSDP=true.*not sharded.*MULTI_CPU"):
        check_sharding(_accelerator(), model)
    with pytest.warns(UserWarning, match="not sharded"):
        assert check_sharding(_accelerator(), model, strict=False) is None


def test_nothing_asked_for_or_fsdp_turned_off_is_fine_with_plain_parameters(launch):
    model = torch.nn.Linear(4, 2)
    assert requested_sharding() is None and check_sharding(_accelerator(), model) is None
    launch(ACCELERATE_USE_FSDP="false", ACCELERATE_USE_DEEPSPEED="true", ACCELERATE_DEEPSPEED_ZERO_STAGE="2")
    assert requested_sharding() is None and check_sharding(_accelerator(), model) is None


def test_zero3_from_the_stage_variable_or_the_config_file_needs_partitioned_parameters(launch, tmp_path):
    model = torch.nn.Linear(4, 2)
    launch(ACCELERATE_USE_DEEPSPEED="true", ACCELERATE_DEEPSPEED_ZERO_STAGE="3")
    with pytest.raises(ShardingNotAppliedError, match="deepspeed_zero3"):
        check_sharding(_accelerator(), model)
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    launch(ACCELERATE_DEEPSPEED_ZERO_STAGE="", ACCELERATE_DEEPSPEED_CONFIG_FILE=str(config))
    assert requested_sharding()[0] == "deepspeed_zero3"
    for i, p in enumerate(model.parameters()):
        p.ds_id = i  # what ZeRO-3 gives the parameters it partitions
    assert check_sharding(_accelerator(), model) == "deepspeed_zero3"


def test_fsdp_asked_for_by_the_training_arguments_of_a_trainer(launch):
    trainer = types.SimpleNamespace(accelerator=_accelerator(), args=types.SimpleNamespace(fsdp=True))
    with pytest.raises(ShardingNotAppliedError, match="TrainingArguments.fsdp"):
        check_sharding(trainer, torch.nn.Linear(4, 2))


def test_dtensor_parameters_satisfy_an_fsdp_request(launch, mesh):
    launch(ACCELERATE_USE_FSDP="true")
    model = _sharded(mesh)
    assert parameter_sharding(model) == "fsdp2" and check_sharding(_accelerator(), model) == "fsdp2"


def test_hook_decays_and_noises_dtensor_parameters_in_place(mesh):
    from hf_unlearn.weights.decay_noise import DecayNoiseHook
    from hf_unlearn.weights.distributed import local_tensor

    model = _sharded(mesh)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    DecayNoiseHook(2.0, 0.0, "constant", 0, lambda: 0, lambda: 1).attach(optimizer)
    before = [local_tensor(p).clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert all(torch.equal(local_tensor(p), b * 0.8) for p, b in zip(model.parameters(), before))
    hook = DecayNoiseHook(0.0, 0.05, "constant", 0, lambda: 0, lambda: 1)
    hook.apply_noise(optimizer.param_groups, 0.05, 0)
    noise = torch.cat([(local_tensor(p) - b * 0.8).flatten() for p, b in zip(model.parameters(), before)])
    assert noise.std().item() == pytest.approx(0.05, rel=0.1)
    assert all(b.sharded for b in hook._buckets)


def test_the_trainer_refuses_to_train_unsharded_when_the_launcher_asked_for_fsdp(
    launch, tmp_path, mislabeled
):
    from conftest import make_config

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.tiny import tiny_classifier

    launch(ACCELERATE_USE_FSDP="true")
    trainer = UnlearningTrainer(
        tiny_classifier(mislabeled.tokenizer, seed=0),
        make_config(tmp_path, method="ieu"),
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        processing_class=mislabeled.tokenizer,
    )
    with pytest.raises(ShardingNotAppliedError, match="not sharded"):
        trainer.train()
