"""``hf-unlearn run`` on diffusion models, through the model-kind seam: the digits-ddpm recipes on a small build of
the scenario, a class-conditional UNet folder with image folders, and the local Stable Diffusion recipes on a tiny
pipeline folder with prompt files (image paths relative to the file); the ``diffusion`` mapping of
``DiffusionArguments`` fields; the mistakes refused in one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image
from safetensors.torch import load_file

from hf_unlearn.cli import main, parse_recipe
from hf_unlearn.tiny import tiny_unet

RECIPES = ROOT / "recipes"
DIFFUSION_RECIPES = ("digits-ddpm-baselines", "digits-ddpm-ieu", "sd-local-esd-lora", "sd-local-ieu-lora")
FAST = ["--max_steps", "2", "--relearn_max_steps", "2", "--disable_tqdm", "true", "--use_cpu", "true"]


def write_image_folders(root, splits: dict[str, list[int]], per_class: int = 3, size: int = 8) -> dict:
    """``root/<split>/<class>/<i>.png``: seeded grey images per class; returns ``{split: folder}``."""
    rng = np.random.default_rng(0)
    folders = {}
    for split, classes in splits.items():
        for c in classes:
            folder = root / split / str(c)
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
        folders[split] = str(root / split)
    return folders


@pytest.fixture
def model_dirs(tmp_path, mislabeled):
    from test_cli import write_model_dirs

    return write_model_dirs(tmp_path, mislabeled)


@pytest.fixture
def unet_job(tmp_path):
    """A 3-class UNet folder (class 0 forgotten), a golden UNet folder and forget / retain / test image folders."""
    tiny_unet(num_classes=3, seed=0).save_pretrained(tmp_path / "unet")
    tiny_unet(num_classes=3, seed=1).save_pretrained(tmp_path / "golden")
    data = write_image_folders(tmp_path, {"forget": [0], "retain": [1, 2], "test": [0, 1, 2]})
    return {"model": str(tmp_path / "unet"), "golden": str(tmp_path / "golden"), **data}


def data_flags(job: dict) -> list[str]:
    """The flags that point a digits-ddpm recipe at ``unet_job``'s folders instead of the scenario."""
    return ["--scenario", "", "--model_name_or_path", job["model"], "--golden_model_path", job["golden"],
            "--forget_dataset", job["forget"], "--retain_dataset", job["retain"], "--test_dataset", job["test"]]  # fmt: skip


def unet_flags(job: dict, out) -> list[str]:
    return [*data_flags(job), "--output_dir", str(out), "--per_device_train_batch_size", "4", *FAST]


@pytest.mark.parametrize("name", DIFFUSION_RECIPES)
def test_the_diffusion_recipes_parse_with_known_keys(name):
    run_args, config = parse_recipe([str(RECIPES / f"{name}.yaml")])
    assert config.method in ("esd", "ieu")
    if name.startswith("sd-"):
        assert run_args.lora_r > 0 and run_args.lora_target_modules == ["to_q", "to_k", "to_v", "to_out.0"]
        assert run_args.diffusion  # the recipe shows the DiffusionArguments block
    else:
        assert run_args.scenario == "digits-ddpm" and run_args.relearn_target == "loss"
    # --diffusion on the command line updates the recipe's block key by key
    updated, _ = parse_recipe([str(RECIPES / f"{name}.yaml"), "--diffusion", "{eval_seed: 3}"])
    assert updated.diffusion == {**(run_args.diffusion or {}), "eval_seed": 3}


def test_a_unet_folder_with_image_folders_runs_the_digits_recipe(tmp_path, unet_job):
    """The digits-ddpm baselines recipe pointed at a local class-conditional UNet: the unlearned UNet saved as a
    diffusers folder with its scheduler and the user's DiffusionArguments, the report, a diffusers model card."""
    out = tmp_path / "out"
    recipe = str(RECIPES / "digits-ddpm-baselines.yaml")
    assert (
        main(["run", recipe, *unet_flags(unet_job, out), "--diffusion", "{esd_eta: 2.0, eval_seed: 4}"]) == 0
    )
    files = set(os.listdir(out))
    assert {"config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json", "diffusion_args.json",
            "unlearning_report.json", "README.md"} <= files  # fmt: skip
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    saved = json.loads((out / "diffusion_args.json").read_text())
    assert saved["esd_eta"] == 2.0 and saved["eval_seed"] == 4
    report = json.loads((out / "unlearning_report.json").read_text())
    assert report["method"] == "esd" and report["task"] == "diffusion"
    assert report["hyperparameters"]["diffusion"] == {"esd_eta": 2.0, "eval_seed": 4}
    assert set(report["metrics"]) == {"original", "golden", "unlearned"}
    unlearned, original = report["metrics"]["unlearned"], report["metrics"]["original"]
    assert unlearned["distance/l2_to_original"] > 0 and original["distance/l2_to_original"] == 0
    assert np.isfinite(unlearned["forget/loss"]) and "rcd/steps" in unlearned
    card = (out / "README.md").read_text()
    assert "library_name: diffusers" in card and "pipeline_tag: unconditional-image-generation" in card
    assert_sample_grids(out, card, report, ["unlearned", "golden", "original"], rows="0,1,2")
    # the same noise for every model: the original's grid drawn again from its folder is the run's, pixel for
    # pixel (seed: the recipe's 0); the golden UNet's (other weights) differs
    from hf_unlearn.diffusion.sampling import save_class_grids
    from hf_unlearn.kinds import kind_for_folder

    again = tmp_path / "again"
    again.mkdir()
    save_class_grids(
        {"original": kind_for_folder(unet_job["model"]).load(unet_job["model"])}, str(again), seed=0
    )
    assert np.array_equal(
        grid_pixels(again / "samples_original.png"), grid_pixels(out / "samples_original.png")
    )
    assert not np.array_equal(
        grid_pixels(out / "samples_golden.png"), grid_pixels(out / "samples_original.png")
    )
    # the original's weights are untouched, the unlearned ones moved
    before = load_file(os.path.join(unet_job["model"], "diffusion_pytorch_model.safetensors"))
    after = load_file(out / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def grid_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def assert_sample_grids(out, card: str, report: dict, models: list[str], rows: str) -> None:
    """A run's ``samples_<model>.png`` grids exist for ``models`` (only them), one row per class or prompt (the
    PNG's ``classes`` text: ``rows``), listed in the report's plots and shown by the card."""
    grids = sorted(f for f in os.listdir(out) if f.startswith("samples_") and f.endswith(".png"))
    assert grids == sorted(f"samples_{name}.png" for name in models)
    for grid in grids:
        assert grid in report["plots"] and f"![{grid}]({grid})" in card
        with Image.open(out / grid) as image:
            assert image.text["classes"] == rows and image.text["Title"].startswith(grid[8:-4])


def write_prompt_files(root, task) -> dict:
    """``root/{forget,retain,test}.jsonl`` of ``task`` (``concept_task``): images saved as PNGs under
    ``root/images`` and named by paths relative to the files."""
    (root / "images").mkdir()
    files = {}
    for split in ("forget", "retain", "test"):
        lines = []
        for i, row in enumerate(getattr(task, split)):
            out = {"prompt": row["prompt"]}
            if "image" in row:
                Image.fromarray(row["image"]).save(root / "images" / f"{split}{i}.png")
                out["image"] = f"images/{split}{i}.png"
            lines.append(json.dumps(out))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
        files[split] = str(root / f"{split}.jsonl")
    return files


@pytest.mark.parametrize("name", ["sd-local-esd-lora", "sd-local-ieu-lora"])
def test_the_stable_diffusion_recipes_run_on_a_tiny_pipeline_folder(tmp_path, name):
    """The whole pipeline comes back (LoRA merged into its UNet, loadable with from_pretrained), the VAE and text
    encoder unchanged, the UNet changed, the report and a diffusers text-to-image card."""
    from diffusers import StableDiffusionPipeline

    from hf_unlearn.testing.tiny_pipeline import concept_task, save_tiny_sd_pipeline

    folder = save_tiny_sd_pipeline(str(tmp_path / "sd"))
    data = write_prompt_files(tmp_path, concept_task())
    out = tmp_path / "out"
    flags = ["--model_name_or_path", folder, "--forget_dataset", data["forget"], "--retain_dataset",
             data["retain"], "--test_dataset", data["test"], "--output_dir", str(out),
             "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", *FAST,
             "--diffusion", "{anchor_prompt: a dog}"]  # fmt: skip
    assert main(["run", str(RECIPES / f"{name}.yaml"), *flags]) == 0
    assert {"model_index.json", "unet", "vae", "text_encoder", "unlearning_report.json", "README.md"} <= set(
        os.listdir(out)
    )
    assert json.loads((out / "diffusion_args.json").read_text())["anchor_prompt"] == "a dog"
    report = json.loads((out / "unlearning_report.json").read_text())
    assert report["hyperparameters"]["lora"]["lora_r"] == 4 and report["hyperparameters"]["steps_run"] == 2
    unlearned = report["metrics"]["unlearned"]
    assert all(np.isfinite(unlearned[k]) for k in ("forget/loss", "retain/loss", "test/loss", "mia/auc"))
    card = (out / "README.md").read_text()
    assert "library_name: diffusers" in card and "pipeline_tag: text-to-image" in card
    # one row per distinct forget prompt, then per kept prompt (no golden pipeline here: no golden grid)
    assert_sample_grids(out, card, report, ["unlearned", "original"], rows="0,1,2,3,4,5")
    with Image.open(out / "samples_unlearned.png") as image:
        assert (
            image.text["Title"] == "unlearned: a cat | a photo of a cat | a dog | a red car | a tree | a bird"
        )
    before, after = (
        StableDiffusionPipeline.from_pretrained(folder),
        StableDiffusionPipeline.from_pretrained(out),
    )
    for part in ("vae", "text_encoder"):
        old, new = getattr(before, part).state_dict(), getattr(after, part).state_dict()
        assert all(torch.equal(old[k], new[k]) for k in old), part
    old, new = before.unet.state_dict(), after.unet.state_dict()
    assert set(old) == set(new) and any(not torch.equal(old[k], new[k]) for k in old)


def test_run_on_a_small_digits_ddpm_build_reports_the_generation_metrics(tmp_path, monkeypatch):
    """``hf-unlearn run recipes/digits-ddpm-ieu.yaml`` on a small build of the scenario: the scenario's scheduler,
    null class and judge reach the trainer and the evaluation (generation keys for every model)."""
    from test_scenarios_digits_ddpm import small_builder

    import hf_unlearn.scenarios as scenarios

    builder = small_builder()
    monkeypatch.setattr(scenarios, "get_builder", lambda name: builder)
    out = tmp_path / "out"
    flags = ["--output_dir", str(out), "--scenario_cache_dir", str(tmp_path / "cache"),
             "--per_device_train_batch_size", "8", *FAST]  # fmt: skip
    assert main(["run", str(RECIPES / "digits-ddpm-ieu.yaml"), *flags]) == 0
    report = json.loads((out / "unlearning_report.json").read_text())
    assert report["scenario"] == "digits-ddpm" and report["method"] == "ieu"
    assert json.loads((out / "diffusion_args.json").read_text())["null_class"] == 10
    # the card's sample grids: the scenario's ten digits (not its null class), one row each
    card = (out / "README.md").read_text()
    assert_sample_grids(out, card, report, ["unlearned", "golden", "original"], rows="0,1,2,3,4,5,6,7,8,9")
    for name in ("original", "golden", "unlearned"):
        row = report["metrics"][name]
        assert 0 <= row["forget/generation_accuracy"] <= 1 and 0 <= row["retain/generation_accuracy"] <= 1
        assert 0 <= row["quality/frechet_distance"] < float("inf")


def test_diffusion_mistakes_are_one_line_errors(tmp_path, unet_job, capsys, model_dirs):
    out = tmp_path / "out"
    recipe = str(RECIPES / "digits-ddpm-baselines.yaml")
    assert main(["run", recipe, *unet_flags(unet_job, out), "--diffusion", "{esd_eat: 2.0}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown diffusion setting(s) ['esd_eat']" in err and "esd_eta" in err
    assert main(["run", recipe, *unet_flags(unet_job, out), "--diffusion", "[1, 2]"]) == 2
    assert "diffusion must be a mapping" in capsys.readouterr().err
    # a classifier takes no diffusion settings
    flags = ["--model_name_or_path", model_dirs["model"], "--forget_dataset", model_dirs["forget"],
             "--retain_dataset", model_dirs["retain"], "--output_dir", str(tmp_path / "clf"), "--method", "ga",
             "--no_relearn", "--no_evaluate", *FAST, "--diffusion", "{esd_eta: 2.0}"]  # fmt: skip
    assert main(["run", *flags]) == 2
    assert "are for diffusers models, not text_classifier models" in capsys.readouterr().err


def test_a_bare_text_conditioned_unet_folder_is_refused_for_its_pipeline_folder(tmp_path):
    from hf_unlearn.kinds import kind_for_folder
    from hf_unlearn.testing.tiny_pipeline import tiny_sd_pipeline

    tiny_sd_pipeline().unet.save_pretrained(tmp_path / "unet")
    with pytest.raises(ValueError, match="give the pipeline's folder \\(the one with model_index.json\\)"):
        kind_for_folder(str(tmp_path / "unet")).load_run_model(str(tmp_path / "unet"))


def test_an_image_column_of_paths_is_read_relative_to_the_file(tmp_path):
    from hf_unlearn.loading import load_dataset_file

    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((4, 4, 3), 7, dtype=np.uint8)).save(tmp_path / "img" / "a.png")
    (tmp_path / "rows.csv").write_text("prompt,image\na cat,\na dog,img/a.png\n")
    rows = load_dataset_file(str(tmp_path / "rows.csv"))
    assert rows[0]["image"] is None and np.asarray(rows[1]["image"]).max() == 7
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "x", "image": "img/missing.png"}) + "\n")
    with pytest.raises(ValueError, match="image 'img/missing.png' not found"):
        load_dataset_file(str(tmp_path / "bad.jsonl"))
    # an image folder's integer-named classes are the labels, whatever classes the folder holds
    folders = write_image_folders(tmp_path, {"forget": [3]})
    assert set(load_dataset_file(folders["forget"])["label"]) == {3}


def test_a_pipeline_folder_without_the_safety_checkers_weights_loads_without_it(tmp_path):
    """A Stable Diffusion download without the safety checker's weights (its config only) loads for training."""
    from hf_unlearn.kinds import kind_for_folder
    from hf_unlearn.testing.tiny_pipeline import save_tiny_sd_pipeline

    folder = tmp_path / "sd"
    save_tiny_sd_pipeline(str(folder))
    index = json.loads((folder / "model_index.json").read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "safety_checker").mkdir()
    (folder / "safety_checker" / "config.json").write_text("{}")
    loaded = kind_for_folder(str(folder)).load_run_model(str(folder))
    assert loaded.trainer_input.safety_checker is None and loaded.model is loaded.trainer_input.unet


def test_a_bad_diffusion_setting_fails_before_anything_is_loaded(tmp_path, capsys):
    """The ``diffusion`` mapping's keys are checked when the recipe is parsed (``RunArguments``): the model folder
    and data below do not exist, yet the error is the setting's, in one line naming every field."""
    fields = (
        "anchor_class, anchor_prompt, esd_eta, eval_seed, max_timestep, min_timestep, null_class, num_classes"
    )
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        f"model_name_or_path: {tmp_path / 'missing'}\nforget_dataset: {tmp_path / 'nothing'}\n"
        f"output_dir: {tmp_path / 'out'}\nmethod: esd\ndiffusion:\n  esd_eta: 2.0\n  anchor_clas: 1\n"
    )
    with pytest.raises(
        ValueError, match=rf"unknown diffusion setting\(s\) \['anchor_clas'\]: .*\({fields}\)\.$"
    ):
        parse_recipe([str(recipe)])
    # the command line's mapping too, through `hf-unlearn run`'s one-line errors
    flags = ["--model_name_or_path", str(tmp_path / "missing"), "--forget_dataset", str(tmp_path / "nothing"),
             "--output_dir", str(tmp_path / "out"), "--diffusion", "{esd_eat: 2.0}"]  # fmt: skip
    assert main(["run", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown diffusion setting(s) ['esd_eat']" in err[-1] and fields in err[-1]
    assert not any("missing" in line for line in err) and not (tmp_path / "out").exists()
