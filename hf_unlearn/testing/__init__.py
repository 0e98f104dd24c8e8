"""Test fixtures, apart from the runtime: tiny models and tokenizers built from config (``tiny``, also
importable as ``hf_unlearn.tiny``) and synthetic tasks trained in seconds (``fixtures``)."""

from __future__ import annotations

from .fixtures import TextTask, digits_task, fictitious_qa_task, mislabeled_task

__all__ = ["TextTask", "digits_task", "fictitious_qa_task", "mislabeled_task"]
