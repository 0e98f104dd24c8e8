import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # relearning counts and float sums depend on the thread count


@pytest.fixture(scope="session")
def mislabeled():
    from hf_unlearn.testing import mislabeled_task

    return mislabeled_task(seed=0)


@pytest.fixture(scope="session")
def qa():
    from hf_unlearn.testing import fictitious_qa_task

    return fictitious_qa_task(seed=0)


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
