"""Benchmarks of ``hf_unlearn``: speed, memory and unlearning quality against stated targets.

Run ``python -m benchmarks.run [--only NAME,...] [--quick]``: every target writes ``benchmarks/results/<name>.json``
and ``benchmarks/README.md`` is regenerated from those files. These are scripts, not timed unit tests.
"""
