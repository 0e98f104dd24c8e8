"""The edges of hf_unlearn.sources: the download command it names exists, errors name the file / row / layout at
fault, ``data_source`` is honest about being set, every loader's ``info`` has one shape, and CIFAR follows
SalUn's split (45,000 training / 5,000 validation images; the forget set drawn from the 45,000)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_config
from test_sources import MUSE_TABLES, _qa, _tofu_tables, _write_jsonl, _write_parquet

from hf_unlearn.sources import SOURCES, load_source

ROOT = Path(__file__).resolve().parents[1]


def _write_tofu(root: Path, skip=(), rename=None) -> Path:
    for name, rows in _tofu_tables().items():
        if name not in skip:
            _write_jsonl(root / f"{(rename or '{}').format(name)}.json", rows)
    return root


# -- 15: the download command ---------------------------------------------------------------------------------


def test_download_commands_are_the_installed_hf_cli_and_nothing_says_huggingface_cli():
    from importlib.metadata import entry_points

    (hf,) = [
        e
        for e in entry_points(group="console_scripts")
        if e.name == "hf" and e.dist.name == "huggingface_hub"
    ]
    code = f"import sys; sys.argv = ['hf', 'download', '--help']; from {hf.module} import {hf.attr} as m; m()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for name, source in SOURCES.items():
        assert source.download.startswith("hf download "), name
        for option in re.findall(r"--[a-z-]+", source.download):
            assert option in done.stdout, (name, option)  # an option `hf download` has
    texts = [*(ROOT / "hf_unlearn/sources").glob("*.py"), *(ROOT / "recipes").glob("*.yaml")]
    assert [str(p) for p in texts if "huggingface-cli" in p.read_text()] == []
    assert "huggingface-cli download" not in (ROOT / "docs/benchmarks.md").read_text()


# -- 18: errors --------------------------------------------------------------------------------------------------


def test_tofu_copy_without_holdout_names_the_missing_file_when_stopping_needs_it(tmp_path):
    from hf_unlearn.pipeline import RunArguments, load_job, unlearn
    from hf_unlearn.tiny import TINY_CHAT_TEMPLATE, tiny_decoder, train_tokenizer

    tok = train_tokenizer(
        ["Where was Kalo born? In Aldham."] * 3, vocab_size=300, chat_template=TINY_CHAT_TEMPLATE
    )
    tiny_decoder(tok, "llama", hidden_size=16, seed=0).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    _write_tofu(tmp_path / "TOFU", skip=("holdout10",))
    run_args = RunArguments(
        model_name_or_path=str(tmp_path / "model"), data_source="tofu", data_dir=str(tmp_path / "TOFU")
    )
    job = load_job(run_args)
    assert job.test is None and job.data_source["missing"]["holdout10"]["role"] == "test"
    config = make_config(tmp_path, method="grad_diff", stopping="heldout")
    with pytest.raises(
        ValueError,
        match=r"tofu copy in 'TOFU' has no held-out split: 'holdout10' not found .*holdout10\.json",
    ):
        unlearn(job, config, run_args)


def test_a_value_of_another_type_names_the_file_row_and_key(tmp_path):
    root = _write_tofu(tmp_path / "TOFU")
    _write_jsonl(root / "forget10.json", [_qa(0), {"question": "Q?", "answer": 5}])
    with pytest.raises(
        ValueError, match=r"forget10\.json': row 1 holds 'answer' as number \(5\) where row 0 .* holds a str"
    ):
        load_source("tofu", str(root))
    _write_jsonl(root / "forget10.json", [{"question": "Q?", "answer": 5}, _qa(0)])  # the other order
    with pytest.raises(
        ValueError, match=r"row 1 holds 'answer' as str \('In Aldham\.'\) where row 0 .* holds a number"
    ):
        load_source("tofu", str(root))


def test_folder_names_with_glob_characters_are_read(tmp_path):
    tofu = _write_tofu(tmp_path / "TOFU [v1]")
    assert len(load_source("tofu", str(tofu)).forget) == 4
    muse = tmp_path / "MUSE-News[2024]"
    for name, rows in MUSE_TABLES.items():
        _write_parquet(muse / f"{name}-00000-of-00001.parquet", rows)
    assert len(load_source("muse", str(muse)).extra["verbmem_forget"]) == 2


def test_every_source_is_named_and_an_empty_data_source_is_no_data_source(tmp_path):
    from hf_unlearn.pipeline import RunArguments, job_datasets
    from hf_unlearn.sources import registry

    assert all(f'"{name}"' in registry.load_source.__doc__ for name in SOURCES)
    with pytest.raises(
        ValueError, match=r"need data_source \(one of \['cifar10', 'cifar100', 'muse', 'tofu'\]\)"
    ):
        job_datasets(RunArguments(data_dir="x", forget_dataset="f", retain_dataset="r"), None)
    _write_jsonl(tmp_path / "forget.jsonl", [{"text": "a", "label": 0}])
    _write_jsonl(tmp_path / "retain.jsonl", [{"text": "b", "label": 1}])
    for empty in ("", " "):
        forget, retain, test, sets = job_datasets(
            RunArguments(
                data_source=empty,
                forget_dataset=str(tmp_path / "forget.jsonl"),
                retain_dataset=str(tmp_path / "retain.jsonl"),
            ),
            None,
        )
        assert (len(forget), len(retain), test) == (1, 1, None)
        assert sets["data_source"] == {
            "source": "files",
            "files": {"forget": "forget.jsonl", "retain": "retain.jsonl"},
        }


def test_older_layouts_and_the_hub_cache_folder_get_a_hint(tmp_path):
    old = _write_tofu(tmp_path / "TOFU-old", rename="{}_dataset")
    with pytest.raises(ValueError, match=r"Found 'forget10_dataset\.json', a file of an older layout"):
        load_source("tofu", str(old))
    cache = tmp_path / "datasets--locuslab--TOFU"
    _write_tofu(cache / "snapshots" / "3e9b1c")
    (cache / "refs").mkdir()
    with pytest.raises(
        ValueError,
        match=r"Hugging Face cache folder: .*point at that folder \(here: \['snapshots/3e9b1c'\]\)",
    ):
        load_source("tofu", str(cache))
    assert len(load_source("tofu", str(cache / "snapshots" / "3e9b1c")).forget) == 4
    cifar = tmp_path / "cifar10"
    _write_cifar(
        cifar,
        20,
        10,
        names={"train": "plain_text/cifar10-train.parquet", "test": "plain_text/cifar10-test.parquet"},
    )
    with pytest.raises(
        ValueError, match=r"Found 'plain_text/cifar10-train\.parquet', a file of an older layout"
    ):
        load_source("cifar10", str(cifar))


def test_every_loader_info_has_one_shape(tmp_path):
    from test_sources import MUSE_TABLES as tables

    tofu = _write_tofu(tmp_path / "TOFU")
    muse = tmp_path / "MUSE"
    for name, rows in tables.items():
        _write_parquet(muse / f"{name}-00000-of-00001.parquet", rows)
    cifar = _write_cifar(tmp_path / "cifar10", 20, 10)
    keys = {"source", "subset", "files", "counts", "missing", "options"}
    for name, path in (("tofu", tofu), ("muse", muse), ("cifar10", cifar)):
        info = load_source(name, str(path)).info
        assert set(info) == keys and info["source"] == name, name
        assert isinstance(info["missing"], dict) and isinstance(info["options"], dict), name
        json.dumps(info)  # the report carries it


# -- 19: CIFAR's protocol ----------------------------------------------------------------------------------------


def _write_cifar(root: Path, n_train: int, n_test: int, names=None) -> Path:
    """CIFAR-10's parquet layout; image ``i`` carries ``i`` in its first pixel, labels in a shuffled order."""
    import datasets
    from PIL import Image

    names = names or {s: f"plain_text/{s}-00000-of-00001.parquet" for s in ("train", "test")}
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.random.default_rng(len(split)).permutation(np.arange(n) % 10).tolist()
        images = []
        for i in range(n):
            pixels = np.zeros((32, 32, 3), dtype=np.uint8)
            pixels[0, 0] = (i % 256, i // 256, 0)
            images.append(Image.fromarray(pixels))
        (root / names[split]).parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict({"img": images, "label": labels}, features=features).to_parquet(
            str(root / names[split])
        )
    return root


def _ids(dataset) -> list[int]:
    return [int(np.asarray(img)[0, 0, 0]) + 256 * int(np.asarray(img)[0, 0, 1]) for img in dataset["img"]]


def salun_reference(labels: np.ndarray, seed: int, num_forget: int | None, forget_class: int | None):
    """SalUn's ``cifar10_dataloaders`` + ``replace_class(only_mark=True)`` (``Classification/dataset.py``),
    transcribed: (train rows, validation rows, forget rows) as indices of CIFAR's training split."""
    rng = np.random.RandomState(seed)
    valid_idx = np.hstack(
        [
            rng.choice(np.where(labels == i)[0], int(0.1 * len(np.where(labels == i)[0])), replace=False)
            for i in range(max(labels) + 1)
        ]
    )
    train_idx = list(set(range(len(labels))) - set(valid_idx))
    targets = labels[train_idx]
    indexes = (
        np.flatnonzero(np.ones_like(targets))
        if forget_class is None
        else np.flatnonzero(targets == forget_class)
    )
    if num_forget is not None:
        indexes = np.random.RandomState(seed - 1).choice(indexes, size=num_forget, replace=False)
    marked = np.zeros(len(targets), dtype=bool)
    marked[indexes] = True
    return list(train_idx), sorted(valid_idx.tolist()), [train_idx[i] for i in np.flatnonzero(marked)]


def test_cifar_follows_salun_split_train_validation_and_forget_indices(tmp_path):
    root = _write_cifar(tmp_path / "cifar10", 200, 50)
    import datasets

    labels = np.asarray(
        datasets.Dataset.from_parquet(str(root / "plain_text/train-00000-of-00001.parquet"))["label"]
    )
    test_labels = np.asarray(
        datasets.Dataset.from_parquet(str(root / "plain_text/test-00000-of-00001.parquet"))["label"]
    )

    data = load_source("cifar10", str(root), "random10")  # seed 2, SalUn's default
    train, valid, forget = salun_reference(labels, 2, 18, None)  # 10% of the 180 training images
    assert _ids(data.extra["validation"]) == valid and len(valid) == 20
    assert _ids(data.forget) == forget
    assert sorted(_ids(data.forget) + _ids(data.retain)) == sorted(train)
    assert data.info["options"] == {"split": "salun", "seed": 2, "forget_class": None}

    by_class = load_source("cifar10", str(root), "class", forget_class=3, seed=5)
    _, _, forget = salun_reference(labels, 5, None, 3)
    assert _ids(by_class.forget) == forget and len(forget) == 18
    assert 3 not in set(by_class.test["label"]) and len(by_class.test) == int((test_labels != 3).sum())

    full = load_source("cifar10", str(root), "random10", split="full")
    assert "validation" not in full.extra and len(full.forget) == 20 and len(full.retain) == 180
    assert len(load_source("cifar10", str(root), "class", split="full").test) == 50
    with pytest.raises(ValueError, match=r"split must be one of \['salun', 'full'\]"):
        load_source("cifar10", str(root), split="papers")
