"""The documentation runs: every command of ``docs/your-own-data.md`` in order, the README's examples, the links
between the pages, and the site build (``mkdocs build --strict``, which fails on a broken API reference)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, worker_env

FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")
FILE_NAME = re.compile(r"^# ([\w.-]+\.(?:py|ya?ml))(?::|\s|$)")


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block of a markdown file, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text())]


def run_block(language: str, code: str, cwd: Path, index: int, timeout: int = 300) -> str:
    """Run one block as a reader would: a ``python`` block as a script (named by its first-line comment,
    ``# make_data.py``), a ``bash`` block with ``bash -e``; a ``yaml`` block is the file its first line names
    (``# recipe.yaml``). Returns the output; fails the test with it on a non-zero exit."""
    name = FILE_NAME.match(code)
    if language == "yaml":
        assert name, f"yaml block {index} needs a first line '# <file>.yaml' naming the file it is"
        (cwd / name.group(1)).write_text(code)
        return ""
    if language == "python":
        script = cwd / (name.group(1) if name else f"block_{index}.py")
        script.write_text(code)
        command = [sys.executable, script.name]
    elif language == "bash":
        command = ["bash", "-e", "-c", code]
    else:
        return ""  # text, output listings
    env = worker_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, (
        f"block {index} ({language}) failed:\n{code}\n--- output ---\n{output[-4000:]}"
    )
    return done.stdout


@pytest.mark.slow
def test_your_own_data_page_runs_from_an_empty_folder_to_a_card(tmp_path):
    blocks = code_blocks(ROOT / "docs/your-own-data.md")
    assert {lang for lang, _ in blocks} >= {"python", "bash", "yaml"}
    outputs = [run_block(lang, code, tmp_path, i) for i, (lang, code) in enumerate(blocks)]
    text = "\n".join(outputs)
    card = (tmp_path / "unlearned/README.md").read_text()
    assert "## Results" in card and "forget/" in card
    assert (tmp_path / "unlearned/model.safetensors").is_file()
    assert (tmp_path / "unlearned-lm/unlearning_report.json").is_file()
    assert "forget/accuracy" in (tmp_path / "eval.json").read_text()  # hf-unlearn eval on the run's folder
    assert "dr 12" in text  # read_report.py: the method and max_steps of the recipe
    assert "heldout_pause" in text  # unlearn.py: the stopping record, read as a dataclass


def test_readme_examples_run(tmp_path):
    blocks = [(lang, code) for lang, code in code_blocks(ROOT / "README.md") if lang == "python"]
    assert len(blocks) >= 3, "the README shows an example for each model kind"
    for i, (lang, code) in enumerate(blocks):
        run_block(lang, code, tmp_path, i)


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    targets = [m.group(1) for m in LINK.finditer(text) if not m.group(1).startswith(("http://", "https://"))]
    assert targets, "the README links to the guides"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_docs_page_is_in_the_site_nav():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(entry) -> list[str]:
        if isinstance(entry, str):
            return [entry]
        if isinstance(entry, list):
            return [p for item in entry for p in pages(item)]
        return [p for value in entry.values() for p in pages(value)]

    listed = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk == listed


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    """A docstring mkdocstrings cannot parse, a reference to a missing name, a broken link between pages or a
    page outside the nav fails the build (``strict: true``)."""
    env = worker_env(NO_MKDOCS_2_WARNING="1")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    config_page = (tmp_path / "site/api/config/index.html").read_text()
    assert "forget_loss_cap_from_eval" in config_page and "heldout_label_corruption" in config_page
    assert "--relearn_max_steps" in (tmp_path / "site/api/cli/index.html").read_text()
