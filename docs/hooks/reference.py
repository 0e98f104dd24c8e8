"""mkdocs hook: the generated parts of the API reference, rebuilt from the code at every build.

A page writes a marker on a line of its own and the hook replaces it:

* ``<!-- fields: hf_unlearn.config.UnlearningConfig -->``: a table of the dataclass fields the class and its
  bases from ``hf_unlearn`` define (e.g. the method families' settings; not ``TrainingArguments``'), with their
  type, default and ``help`` metadata,
  which mkdocstrings does not show;
* ``<!-- cli-help: run -->``: what ``hf-unlearn run --help`` prints (``<!-- cli-help: -->``: ``hf-unlearn --help``);
* ``<!-- readme: -->``: the repository's README, its ``docs/`` links made relative to the site (the home page).

A marker naming something that does not exist fails the build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import importlib
import io
import os
import re
from pathlib import Path

MARKER = re.compile(r"^<!-- (fields|cli-help|readme): ?([\w.]*) -->$", re.MULTILINE)
ROOT = Path(__file__).resolve().parents[2]


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace every marker of the page by what it names."""
    return MARKER.sub(lambda m: _render(m.group(1), m.group(2)), markdown)


def _render(kind: str, target: str) -> str:
    return {"fields": field_table, "cli-help": cli_help, "readme": readme}[kind](target)


def readme(_: str = "") -> str:
    """The README as the site's home page: links into ``docs/`` become links between pages."""
    return (ROOT / "README.md").read_text().replace("](docs/", "](")


def field_table(path: str) -> str:
    """Markdown table of the dataclass fields that the class at ``path``, or a base of it from ``hf_unlearn``,
    defines."""
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    own = {
        field
        for base in cls.__mro__
        if base.__module__.startswith("hf_unlearn")
        for field in base.__dict__.get("__annotations__", {})
    }
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name not in own:
            continue
        text = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            text += " Choices: " + ", ".join(f"`{c}`" for c in f.metadata["choices"]) + "."
        cells = [f"`{f.name}`", f"`{_type_name(f.type)}`", f"`{_default(f)!r}`", _cell(text)]
        rows.append("| " + " | ".join(cells) + " |")
    if len(rows) == 2:
        raise ValueError(f"{path} defines no dataclass fields of its own")
    return "\n".join(rows)


def cli_help(command: str) -> str:
    """What ``hf-unlearn COMMAND --help`` prints, as a code block (argparse wraps at 100 columns here)."""
    from hf_unlearn.cli import main

    out = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([command, "--help"] if command else ["--help"])
    finally:
        if previous is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = previous
    text = out.getvalue().strip()
    if not text:
        raise ValueError(f"hf-unlearn {command} --help printed nothing")
    return f"```text\n{text}\n```"


def _type_name(annotation) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def _default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: no pipes, no emphasis from ``*``, no HTML."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|").replace("*", "\\*")
