"""``hf-unlearn run --resume_from_checkpoint``: a run interrupted after a checkpoint and resumed through the CLI,
into its own output folder, ends bit-identical to an uninterrupted run; a resume with nothing to resume from is
a one-line error before any training."""

import os
import shutil

import pytest
from safetensors.torch import load_file
from test_cli import write_model_dirs, write_recipe

from hf_unlearn.cli import main

# checkpoints at steps 2 and 4 of the 4-step recipe; no evaluation: the weights are what is compared
RESUMABLE = {"save_strategy": "steps", "save_steps": 2, "evaluate": False, "relearn": False}
LONG_AGO = 10**18  # ns since the epoch (2001): a checkpoint file rewritten by the run gets today's mtime


@pytest.fixture
def model_dirs(tmp_path, mislabeled):
    return write_model_dirs(tmp_path, mislabeled)


def _run(tmp_path, dirs, out, *flags) -> int:
    return main(["run", write_recipe(tmp_path, dirs, out, **RESUMABLE), *flags])


def _interrupt_after_first_checkpoint(out) -> list:
    """What a run killed between its two checkpoints leaves: ``checkpoint-2`` only, its files dated long ago."""
    for name in os.listdir(out):
        if name != "checkpoint-2":
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    files = sorted((out / "checkpoint-2").iterdir())
    for path in files:
        os.utime(path, ns=(LONG_AGO, LONG_AGO))
    return files


def test_cli_resume_into_its_own_folder_ends_bit_identical(tmp_path, model_dirs):
    assert _run(tmp_path, model_dirs, tmp_path / "full") == 0
    out = tmp_path / "cut"
    assert _run(tmp_path, model_dirs, out) == 0
    checkpoint_files = _interrupt_after_first_checkpoint(out)
    # no --overwrite_output_dir: resuming into the interrupted run's own folder is what that folder is for
    assert _run(tmp_path, model_dirs, out, "--resume_from_checkpoint", "true") == 0
    # resumed, not restarted: a restart from step 0 would have written checkpoint-2 again
    assert [path.name for path in checkpoint_files if path.stat().st_mtime_ns != LONG_AGO] == []
    assert (out / "checkpoint-4").is_dir()
    full = load_file(tmp_path / "full" / "model.safetensors")
    resumed = load_file(out / "model.safetensors")
    assert full.keys() == resumed.keys()
    different = [name for name in full if not full[name].equal(resumed[name])]
    assert different == []
    # an explicit checkpoint path resumes too (into a fresh folder, the checkpoint being elsewhere)
    assert (
        _run(tmp_path, model_dirs, tmp_path / "moved", "--resume_from_checkpoint", str(out / "checkpoint-2"))
        == 0
    )
    moved = load_file(tmp_path / "moved" / "model.safetensors")
    assert all(full[name].equal(moved[name]) for name in full)


@pytest.mark.parametrize("value", ["true", "missing"])
def test_resume_with_nothing_to_resume_is_a_one_line_error_before_training(
    tmp_path, model_dirs, capsys, value
):
    out = tmp_path / "fresh"
    checkpoint = value if value == "true" else str(tmp_path / "nowhere" / "checkpoint-2")
    assert _run(tmp_path, model_dirs, out, "--resume_from_checkpoint", checkpoint) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hf-unlearn run: error: ")
    assert ("no checkpoint" if value == "true" else "nowhere") in err[0]
    assert not out.exists()  # refused before anything was loaded or written


def test_resume_does_not_open_another_runs_folder(tmp_path, model_dirs, capsys):
    """A checkpoint from elsewhere does not make a non-empty output folder writable."""
    checkpoint = tmp_path / "source" / "checkpoint-2"
    checkpoint.mkdir(parents=True)  # refused before it is read
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert _run(tmp_path, model_dirs, busy, "--resume_from_checkpoint", str(checkpoint)) == 2
    assert "not empty" in capsys.readouterr().err
    assert os.listdir(busy) == ["keep.txt"]
