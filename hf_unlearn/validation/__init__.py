"""Executable theory checks for hf_unlearn.

``hf_unlearn.validation.linear`` turns the over-parameterized linear-regression analysis behind
fine-tuning unlearning, discriminative regularization (DR), Influence Eliminating Unlearning (IEU) and
the relearning convergence delay (RCD) into functions that return plain numbers;
``hf_unlearn.validation.plots`` draws them and ``hf_unlearn.validation.report`` writes a JSON/markdown
report with figures. Only numpy is imported at import time (matplotlib is loaded lazily by the plots).
"""
