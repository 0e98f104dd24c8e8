import json
import os

import pytest
import torch
from conftest import accelerate_ddp_launch, launch_workers, worker_env

from hf_unlearn.cli import main
from hf_unlearn.tiny import tiny_classifier

CANARY = "zzcanary7731"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def write_model_dirs(root, mislabeled) -> dict:
    """Original and golden tiny classifiers saved as safetensors dirs under ``root``, and data files with a
    canary (shared with tests/test_cli_resume.py and tests/test_cli_eval.py)."""
    original = tiny_classifier(mislabeled.tokenizer, seed=0)
    golden = tiny_classifier(mislabeled.tokenizer, seed=0)
    for name, model in (("original", original), ("golden", golden)):
        model.save_pretrained(root / name)
        mislabeled.tokenizer.save_pretrained(root / name)
    forget = [dict(r, text=f"{CANARY} {r['text']}") for r in mislabeled.forget]
    return {
        "model": str(root / "original"),
        "golden": str(root / "golden"),
        "forget": _write_jsonl(root / "forget.jsonl", forget),
        "retain": _write_jsonl(root / "retain.jsonl", mislabeled.retain),
        "test": _write_jsonl(root / "test.jsonl", mislabeled.test),
    }


@pytest.fixture
def model_dirs(tmp_path, mislabeled):
    return write_model_dirs(tmp_path, mislabeled)


def write_recipe(tmp_path, dirs, out, **extra) -> str:
    """``tmp_path/recipe.yaml``: a 4-step ieu run of ``dirs`` (``write_model_dirs``) into ``out``; ``extra``
    adds or replaces keys."""
    lines = {
        "model_name_or_path": dirs["model"],
        "golden_model_path": dirs["golden"],
        "forget_dataset": dirs["forget"],
        "retain_dataset": dirs["retain"],
        "test_dataset": dirs["test"],
        "output_dir": str(out),
        "method": "ieu",
        "max_steps": 4,
        "per_device_train_batch_size": 8,
        "learning_rate": "1.0e-3",
        "relearn_max_steps": 10,
        "use_cpu": True,
        "disable_tqdm": True,
        "save_strategy": "no",
        **extra,
    }
    return _write_recipe(tmp_path, lines)


def _write_recipe(tmp_path, lines: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return str(path)


def test_run_recipe_writes_model_report_card_and_plots_without_forget_content(tmp_path, model_dirs):
    from huggingface_hub import ModelCard

    out = tmp_path / "out"
    flags = ["--max_steps", "3", "--forget_loss_cap_from_eval", "0.5"]
    assert main(["run", write_recipe(tmp_path, model_dirs, out), *flags]) == 0
    files = set(os.listdir(out))
    assert {
        "model.safetensors",
        "README.md",
        "unlearning_report.json",
        "relearning_curves.png",
        "metrics.png",
    } <= files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    report = json.loads((out / "unlearning_report.json").read_text())
    assert report["hyperparameters"]["max_steps"] == 3  # the flag overrode the recipe
    # the cap was measured on the test set: the report records it instead of the absolute default
    assert report["hyperparameters"]["forget_loss_cap_from_eval"] == 0.5
    assert 0 < report["hyperparameters"]["forget_loss_cap"] != 5.0
    assert set(report["metrics"]) == {"original", "golden", "unlearned"}
    facts = report["reproducibility"]
    assert facts["world_size"] == 1 and facts["precision"] == "fp32" and facts["device"] == "cpu"
    assert facts["effective_batch_per_part"] == report["hyperparameters"]["per_device_train_batch_size"]
    assert "- world_size: 1" in (out / "README.md").read_text()
    assert report["forget_fingerprint"]["count"] == len(open(model_dirs["forget"]).readlines())
    card = ModelCard.load(out / "README.md")
    types = {r.metric_type for r in card.data.eval_results}
    assert {"forget_accuracy", "retain_accuracy", "mia_auc"} <= types
    for root, _, names in os.walk(out):
        for name in names:
            if not name.endswith(".safetensors"):
                assert CANARY.encode() not in open(os.path.join(root, name), "rb").read(), name


def test_run_refuses_a_non_empty_output_dir_and_bad_recipes(tmp_path, model_dirs, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["run", write_recipe(tmp_path, model_dirs, out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert os.listdir(out) == ["keep.txt"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [ieu\n")
    assert main(["run", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
    no_test = write_recipe(
        tmp_path, model_dirs, tmp_path / "no_test", test_dataset="null", forget_loss_cap_from_eval=0.5
    )
    assert main(["run", no_test]) == 2
    assert "set test_dataset" in capsys.readouterr().err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("methd: ieu\n")
    assert main(["run", str(unknown)]) == 2
    assert "'methd'" in capsys.readouterr().err


def test_pickled_weights_are_refused(tmp_path, mislabeled):
    model = tiny_classifier(mislabeled.tokenizer)
    model.config.save_pretrained(tmp_path / "m")
    torch.save(model.state_dict(), tmp_path / "m" / "pytorch_model.bin")
    from hf_unlearn.loading import load_model

    with pytest.raises(ValueError, match="pickled weights"):
        load_model(str(tmp_path / "m"))


def test_theory_command_writes_json_markdown_and_figures(tmp_path, capsys):
    assert main(["theory", "--output_dir", str(tmp_path / "theory")]) == 0
    files = os.listdir(tmp_path / "theory")
    assert {"theory.json", "theory.md"} <= set(files)
    assert sum(f.endswith(".png") for f in files) >= 4
    assert "golden" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--method", "typo"], ["--max_steps", "x"]], ids=["choice", "int"])
def test_a_bad_value_is_a_one_line_error_without_the_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err  # the error and where the help is (the usage block was ~160 lines)
    assert err[0].startswith(f"hf-unlearn run: error: argument {argv[0]}") and repr(argv[1]) in err[0]
    assert err[1] == "see `hf-unlearn run --help`"


def test_unknown_keys_and_options_get_a_did_you_mean(tmp_path, capsys):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("per_device_train_batchsize: 8\n")
    assert main(["run", str(unknown)]) == 2
    assert "did you mean 'per_device_train_batch_size'?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--lerning_rate", "1e-3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --lerning_rate 1e-3 (did you mean '--learning_rate'?)" in err


def test_no_options_have_their_own_help_and_data_source_lists_every_source(capsys):
    from hf_unlearn.cli import parse_recipe
    from hf_unlearn.sources import SOURCES

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    negations = {word.rstrip(",") for word in text.split() if word.startswith("--no_")}
    assert {"--no_evaluate", "--no_relearn"} <= negations
    for name in negations:
        assert f"{name}, --no-{name[5:].replace('_', '-')} Turn off --{name[5:]} (on by default). " in text, (
            name
        )
    assert parse_recipe([])[0].evaluate and not parse_recipe(["--no_evaluate"])[0].evaluate
    data_source = text.split("--data_source DATA_SOURCE, --data-source DATA_SOURCE")[1].split("--data_dir")[0]
    assert {"tofu", "muse", "cifar10", "cifar100"} <= set(SOURCES)
    assert all(repr(name) in data_source for name in SOURCES), data_source


def test_the_recipe_keys_read_without_transformers_are_the_parsers_options():
    """``recipe_keys`` reads the dataclass fields from source files: it must see exactly what the parser takes."""
    from hf_unlearn.cli import recipe_keys, recipe_parser

    assert recipe_keys() == {action.dest for action in recipe_parser()._actions} - {"help"}


def test_recipe_mistakes_are_reported_before_torch_or_transformers_is_imported(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [ieu\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("methd: ieu\n")
    code = (
        "import sys; from hf_unlearn.cli import main; codes = [main(['run', p]) for p in sys.argv[1:]]; "
        "print(codes, sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(bad), str(unknown)], env=worker_env(), capture_output=True, text=True
    )
    assert done.stdout.strip() == "[2, 2] []", done.stderr[-2000:]
    err = done.stderr.strip().splitlines()
    assert len(err) == 2 and "bad.yaml' is not valid YAML" in err[0] and "line 2" in err[0]
    assert "unknown key 'methd' (did you mean 'method'?" in err[1]


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(cmd in text for cmd in ("quickstart", "run", "eval", "theory"))


@pytest.mark.parametrize("command", ["quickstart", "run", "eval", "theory"])
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--" in capsys.readouterr().out  # its options are listed (argparse formats every help string)


def _cifar_copy(root, n_train=24, n_test=12):
    """A tiny local copy in uoft-cs/cifar10's exact layout: plain_text/{train,test}-00000-of-00001.parquet
    with an ``img`` image column (PNG bytes) and a ``label`` class column."""
    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=[str(i) for i in range(10)])}
    )
    (root / "plain_text").mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = [Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)) for _ in range(n)]
        rows = datasets.Dataset.from_dict(
            {"img": images, "label": [i % 10 for i in range(n)]}, features=features
        )
        rows.to_parquet(str(root / "plain_text" / f"{split}-00000-of-00001.parquet"))
    return str(root)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_run_on_a_local_cifar_copy_with_an_image_classifier(tmp_path, lora):
    from hf_unlearn.tiny import tiny_image_classifier, tiny_image_processor

    for name, seed in (("original", 0), ("golden", 1)):
        tiny_image_classifier("resnet", num_channels=3, seed=seed).save_pretrained(tmp_path / name)
        tiny_image_processor(num_channels=3).save_pretrained(tmp_path / name)
    out = tmp_path / "out"
    recipe = {
        "model_name_or_path": tmp_path / "original",
        "golden_model_path": tmp_path / "golden",
        "data_source": "cifar10",
        "data_dir": _cifar_copy(tmp_path / "cifar10"),
        "data_subset": "class",
        "output_dir": out,
        "method": "salun",
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "relearn_max_steps": 3,
        "use_cpu": True,
        "disable_tqdm": True,
        "save_strategy": "no",
        **({"lora_r": 2, "lora_target_modules": "[convolution]"} if lora else {}),
    }
    assert main(["run", _write_recipe(tmp_path, recipe)]) == 0
    report = json.loads((out / "unlearning_report.json").read_text())
    unlearned = report["metrics"]["unlearned"]
    assert {"forget/ua", "mia/efficacy", "gap/average", "rcd/ratio_to_golden"} <= set(unlearned)
    assert 0.0 <= unlearned["gap/average"] <= 1.0


@pytest.mark.slow
def test_run_under_two_processes_evaluates_across_them_with_the_numbers_of_one(tmp_path, model_dirs):
    """``accelerate launch`` (2 CPU processes, gloo): one report and card; the models unlearning did not change
    score exactly as in a one-process run, so the gathered evaluation is complete and in order."""

    launch = [*accelerate_ddp_launch(), "-m", "hf_unlearn.cli", "run"]
    done = launch_workers(
        [*launch, write_recipe(tmp_path, model_dirs, tmp_path / "two", relearn=False)], worker_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["run", write_recipe(tmp_path, model_dirs, tmp_path / "one", relearn=False)]) == 0
    two = json.loads((tmp_path / "two" / "unlearning_report.json").read_text())
    one = json.loads((tmp_path / "one" / "unlearning_report.json").read_text())
    assert two["reproducibility"]["world_size"] == 2
    for name in ("original", "golden"):
        assert two["metrics"][name] == pytest.approx(one["metrics"][name], rel=1e-6, abs=1e-9), name
    assert set(two["metrics"]["unlearned"]) == set(one["metrics"]["unlearned"])
