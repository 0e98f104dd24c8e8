import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # relearning counts and float sums depend on the thread count

# The suite runs on 2 pytest-xdist workers (pyproject's addopts: -n 2 --dist loadgroup). Each file is one group,
# so its module fixtures are built once; files that share an expensive session fixture form one group.
XDIST_GROUPS = {"test_metrics.py": "mislabeled_runs", "test_trainer.py": "mislabeled_runs"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group(XDIST_GROUPS.get(name, name)))


ROOT = Path(__file__).resolve().parents[1]


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a test's worker process: one thread, offline, this checkout importable."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **extra}


#: what gloo prints when a process aborts at exit (SIGABRT) although its work is done; seen in about 1 of 15
#: 2-process launches on a loaded 2-core machine, before and after the workers leave their process group
TEARDOWN_ABORT = "terminate called without an active exception"


def launch_workers(command: list[str], env: dict[str, str]):
    """Run a 2-process launch to completion (``subprocess.run``, output captured); launched once more when the
    first attempt died of gloo's teardown abort (``TEARDOWN_ABORT``), which is the launcher's, not the test's.
    Any other failure, or the abort twice, is returned as it is for the test to assert on."""
    import subprocess

    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0 and TEARDOWN_ABORT in done.stderr:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    return done


def torchrun_launch() -> list[str]:
    """``torch.distributed.run`` on 2 local processes (``--standalone`` picks a free port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def accelerate_ddp_launch() -> list[str]:
    """``accelerate launch`` with the 2-process CPU DDP recipe, on a free port (the recipe's default port would
    collide when two launches run at once on parallel test workers)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recipe = ROOT / "recipes/accelerate/cpu_ddp.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(recipe)]
    return [*launch, "--main_process_port", str(port)]


@pytest.fixture(scope="session")
def mislabeled():
    from hf_unlearn.testing.fixtures import mislabeled_task

    return mislabeled_task(seed=0)


@pytest.fixture(scope="session")
def qa():
    from hf_unlearn.testing.fixtures import fictitious_qa_task

    return fictitious_qa_task(seed=0)


@pytest.fixture(scope="session")
def digits():
    from hf_unlearn.testing.fixtures import digits_task

    return digits_task(seed=0)


#: the test models that stand for each registered model kind (``hf_unlearn.kinds.model_kinds()``, by name). The
#: every-method x every-kind matrices of the tests are built from the method and kind registries through this
#: table; ``test_kinds.py`` fails when a registered kind has no entry, so a new kind cannot escape them.
KIND_TEST_MODELS = {
    "text_classifier": ("classifier",),
    "image_classifier": ("resnet", "vit"),
    "causal_lm": ("causal_lm",),
    "class_conditional_unet": ("ddpm",),
    "text_conditioned_unet": ("sd",),
}


def registered_methods() -> list[str]:
    """Every registered unlearning method (``hf_unlearn.methods.METHODS``, the diffusion package's included),
    sorted."""
    import hf_unlearn.diffusion  # noqa: F401 (registers its kinds and methods)
    from hf_unlearn.methods import METHODS

    return sorted(METHODS)


def kind_of_test_model(test_model: str):
    """The registered ``ModelKind`` a test model of ``KIND_TEST_MODELS`` stands for."""
    import hf_unlearn.diffusion  # noqa: F401 (registers the diffusion kinds)
    from hf_unlearn.kinds import model_kinds

    return next(kind for kind in model_kinds() if test_model in KIND_TEST_MODELS.get(kind.name, ()))


def method_defined_for(method: str, test_model: str) -> bool:
    """Whether ``method`` runs on the kind of ``test_model`` (``"causal_lm"``, ``"classifier"``, ``"resnet"``...)."""
    from hf_unlearn.methods import get_method

    return get_method(method).supports(kind_of_test_model(test_model))


def build_test_model(test_model: str, mislabeled, qa, digits):
    """``(model, task)`` of a test model of ``KIND_TEST_MODELS``: a fresh tiny model and the synthetic task it
    trains on (``task.forget``, ``task.retain``, ``task.tokenizer``)."""
    from hf_unlearn.tiny import (
        IMAGE_ARCHITECTURES,
        tiny_causal_lm,
        tiny_classifier,
        tiny_image_classifier,
        tiny_unet,
    )

    if test_model == "classifier":
        return tiny_classifier(mislabeled.tokenizer), mislabeled
    if test_model in IMAGE_ARCHITECTURES:
        return tiny_image_classifier(test_model), digits
    if test_model == "ddpm":  # a class-conditional UNet denoising the same 8x8 digits
        return tiny_unet(num_classes=10), digits
    if test_model == "sd":  # a text-to-image pipeline's UNet (configured with its pipeline): prompt rows
        from hf_unlearn.testing.tiny_pipeline import concept_task, tiny_pipeline_unet

        return tiny_pipeline_unet(), concept_task()
    return tiny_causal_lm(qa.tokenizer), qa


def lora_config_for(test_model: str):
    """The ``LoraConfig`` a user would write for a test model of ``KIND_TEST_MODELS``."""
    from peft import LoraConfig

    from hf_unlearn.tiny import IMAGE_ARCHITECTURES

    if test_model == "classifier":
        return LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    if test_model in ("ddpm", "sd"):  # the UNet's attention projections (the diffusion kinds' LoRA defaults)
        return LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    if (
        test_model in IMAGE_ARCHITECTURES
    ):  # the classifier head trains too, as PEFT's image-classification guide
        return LoraConfig(
            r=4, lora_alpha=8, target_modules=IMAGE_ARCHITECTURES[test_model], modules_to_save=["classifier"]
        )
    return LoraConfig(
        task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True
    )


def method_kind_matrix(one_model_per_kind: bool = False) -> list[tuple[str, str]]:
    """``(method, test model)`` for every registered method and every test model of every registered kind the
    method runs on (``one_model_per_kind``: the first test model of each kind only)."""
    import hf_unlearn.diffusion  # noqa: F401 (registers the diffusion kinds)
    from hf_unlearn.kinds import model_kinds

    models = [
        model
        for kind in reversed(model_kinds())
        for model in KIND_TEST_MODELS.get(kind.name, ())[: 1 if one_model_per_kind else None]
    ]
    return [(m, t) for m in registered_methods() for t in models if method_defined_for(m, t)]


def state_copy(model) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state dict (to compare weights bit for bit later)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_config(tmp_path, **kwargs):
    from hf_unlearn import UnlearningConfig

    defaults = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    defaults.update(kwargs)
    return UnlearningConfig(**defaults)


EFFICACY_SEEDS = (
    0,
    1,
    2,
)  # outcome claims are medians over these: one seed's float order can flip an example


def heldout_trainer(tmp_path, task, **kwargs):
    """An ``UnlearningTrainer`` on a fresh tiny classifier for ``task`` with its test split as ``eval_dataset``
    (the held-out reference of the stopping rules); ``grad_diff`` at a constant 1e-3 unless ``kwargs`` say."""
    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.tiny import tiny_classifier

    settings = {"method": "grad_diff", "learning_rate": 1e-3, "lr_scheduler_type": "constant", **kwargs}
    config = make_config(tmp_path, logging_steps=1000, **settings)
    return UnlearningTrainer(
        tiny_classifier(task.tokenizer, seed=0),
        config,
        forget_dataset=task.forget,
        retain_dataset=task.retain,
        eval_dataset=task.test,
        processing_class=task.tokenizer,
    )


def fit(tmp_path, model, task, retain, method, steps, lr, schedule="constant", forget=None, **kwargs):
    """Train ``model`` in place with ``UnlearningTrainer`` (method ``ft`` trains on ``retain`` only)."""
    from hf_unlearn import UnlearningTrainer

    args = make_config(
        tmp_path,
        method=method,
        max_steps=steps,
        per_device_train_batch_size=16,
        learning_rate=lr,
        lr_scheduler_type=schedule,
        logging_steps=1000,
        **kwargs,
    )
    forget = task.forget if forget is None else forget
    UnlearningTrainer(
        model, args, forget_dataset=forget, retain_dataset=retain, processing_class=task.tokenizer
    ).train()
    return model


def train_mislabeled_models(tmp_path, task, seed: int) -> dict:
    """Original (memorized the 10% flipped labels; cosine schedule, which memorizes them on every seed and CPU
    tried), golden (same init, retain only) and ``ft``/``dr``/``ieu`` unlearned from the original."""
    import copy

    from hf_unlearn.tiny import tiny_classifier

    init = tiny_classifier(task.tokenizer, hidden_size=64, seed=seed)
    # method "ft" trains on the retain argument only: the whole training set for the original
    models = {
        "original": fit(
            tmp_path, copy.deepcopy(init), task, task.train, "ft", 300, 3e-3, "cosine", allow_overlap=True
        ),
        "golden": fit(tmp_path, copy.deepcopy(init), task, task.retain, "ft", 300, 3e-3, "cosine"),
    }
    for method in ("ft", "dr", "ieu"):
        models[method] = fit(
            tmp_path, copy.deepcopy(models["original"]), task, task.retain, method, 100, 1e-3
        )
    return models


@pytest.fixture(scope="session")
def mislabeled_runs(tmp_path_factory, mislabeled):
    """``{seed: (task, models)}`` for ``EFFICACY_SEEDS`` (seed 0 uses the ``mislabeled`` task)."""
    from hf_unlearn.testing.fixtures import mislabeled_task

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("mislabeled_runs")
    runs = {}
    for seed in EFFICACY_SEEDS:
        task = mislabeled if seed == 0 else mislabeled_task(seed=seed)
        runs[seed] = (task, train_mislabeled_models(tmp, task, seed))
    return runs


def two_rank_results(worker, out, **env) -> list[tuple[dict, dict]]:
    """Run ``worker out`` on 2 CPU processes (``torch.distributed.run``) and return ``[(tensors, findings)]`` of
    rank 0 and rank 1, read from the ``rank{r}.safetensors`` / ``rank{r}.json`` files each rank writes."""
    import json

    from safetensors.torch import load_file

    done = launch_workers([*torchrun_launch(), str(worker), str(out)], worker_env(**env))
    assert done.returncode == 0, done.stderr[-4000:]
    out = Path(out)
    return [
        (load_file(out / f"rank{r}.safetensors"), json.loads((out / f"rank{r}.json").read_text()))
        for r in (0, 1)
    ]
