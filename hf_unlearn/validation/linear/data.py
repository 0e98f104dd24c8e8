"""The two scenarios: a seeded retain/forget split of noiseless over-parameterized linear regression."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hf_unlearn.validation.linear._result import _array_field, _Result

SCENARIOS = ("distinct", "overlap")


@dataclass
class LinearData(_Result):
    """A retain/forget split of a noiseless linear-regression problem ``y = X w*``.

    Coordinates are laid out as ``[forget-only | overlap | retain-only]``; forget rows are supported on
    ``forget_idx`` (forget-only + overlap), retain rows on ``retain_idx`` (overlap + retain-only).
    """

    scenario: str
    seed: int
    d: int
    n_r: int
    n_f: int
    d_lap: int
    X_r: np.ndarray = _array_field()
    y_r: np.ndarray = _array_field()
    X_f: np.ndarray = _array_field()
    y_f: np.ndarray = _array_field()
    w_star: np.ndarray = _array_field()
    retain_idx: np.ndarray = _array_field()
    forget_idx: np.ndarray = _array_field()
    overlap_idx: np.ndarray = _array_field()

    @property
    def X(self) -> np.ndarray:
        """Stacked design ``[X_r; X_f]``."""
        return np.vstack([self.X_r, self.X_f])

    @property
    def y(self) -> np.ndarray:
        """Stacked targets ``[y_r; y_f]``."""
        return np.concatenate([self.y_r, self.y_f])

    @property
    def forget_only_idx(self) -> np.ndarray:
        """Coordinates only forget rows use."""
        return np.setdiff1d(self.forget_idx, self.retain_idx)


def make_data(
    scenario: str = "distinct", n_r: int = 60, n_f: int = 20, d: int = 200, d_lap: int = 40, seed: int = 0
) -> LinearData:
    """Seeded Gaussian design for the ``"distinct"`` (disjoint supports) or ``"overlap"`` scenario.

    ``d_lap`` coordinates are shared by forget and retain rows in the overlap scenario (ignored, i.e. 0,
    for ``"distinct"``); the remaining coordinates are split evenly into forget-only and retain-only.
    Entries are standard normal on each row's support, ``w* ~ N(0, I_d)`` and ``y = X w*``.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    d_lap = 0 if scenario == "distinct" else d_lap
    n_forget_only = (d - d_lap) // 2
    forget_idx = np.arange(0, n_forget_only + d_lap)
    retain_idx = np.arange(n_forget_only, d)
    overlap_idx = np.arange(n_forget_only, n_forget_only + d_lap)
    if not (n_r + n_f < d and n_r < retain_idx.size and n_f < forget_idx.size):
        raise ValueError("need n_r + n_f < d, n_r < |R| and n_f < |F| (over-parameterized regime)")
    rng = np.random.default_rng(seed)
    w_star = rng.standard_normal(d)
    X_r = np.zeros((n_r, d))
    X_r[:, retain_idx] = rng.standard_normal((n_r, retain_idx.size))
    X_f = np.zeros((n_f, d))
    X_f[:, forget_idx] = rng.standard_normal((n_f, forget_idx.size))
    return LinearData(
        scenario=scenario,
        seed=seed,
        d=d,
        n_r=n_r,
        n_f=n_f,
        d_lap=d_lap,
        X_r=X_r,
        y_r=X_r @ w_star,
        X_f=X_f,
        y_f=X_f @ w_star,
        w_star=w_star,
        retain_idx=retain_idx,
        forget_idx=forget_idx,
        overlap_idx=overlap_idx,
    )
