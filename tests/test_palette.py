"""One colour per model across the library's figures (hf_unlearn.reporting.palette)."""

import matplotlib

matplotlib.use("Agg")

from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hf_unlearn.methods import METHODS  # noqa: E402
from hf_unlearn.reporting.palette import color_of, ordered  # noqa: E402


def test_every_method_and_reference_model_has_its_own_stable_colour():
    colours = {m: color_of(m) for m in METHODS}
    assert len(set(colours.values())) == len(colours)  # distinct
    assert color_of("golden") == "#000000" and color_of("original") == "#7f7f7f"
    assert not set(colours.values()) & {color_of("golden"), color_of("original")}
    assert color_of("dr + stopping") == color_of("dr (tuned)") == color_of("dr")
    assert color_of("my run") == color_of("my run")  # unknown names: stable
    assert ordered(["ieu", "golden", "dr", "original"]) == ["original", "golden", "ieu", "dr"]


def test_metric_bars_and_relearning_curves_give_a_model_the_same_colour(tmp_path, monkeypatch):
    from hf_unlearn.metrics.relearning import RelearnResult
    from hf_unlearn.reporting.plots import plot_metric_bars

    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (drawn.append(self), save(self, *a, **k))[1])
    metrics = {name: {"forget/accuracy": 0.5, "mia/auc": 0.5} for name in ("ieu", "original", "dr", "golden")}
    plot_metric_bars(metrics, str(tmp_path / "bars.png"))
    from hf_unlearn.metrics import plot_relearning_curves

    curve = [{"step": 0, "accuracy": 0.1, "loss": 2.0}, {"step": 5, "accuracy": 0.9, "loss": 0.2}]
    results = {
        name: RelearnResult(steps=5, recovered=True, weight_path=0.0, start_distance=None, curve=curve)
        for name in ("dr", "ieu")
    }
    plot_relearning_curves(results, tmp_path / "curves.png")
    bars, curves = drawn[0].axes[0], drawn[1].axes[0]
    bar_colour = {c.get_label(): to_hex(c.patches[0].get_facecolor()) for c in bars.containers}
    line_colour = {
        line.get_label().split(" (")[0]: to_hex(line.get_color())
        for line in curves.lines
        if " (" in line.get_label()
    }
    assert list(bar_colour) == ["original", "golden", "ieu", "dr"]  # reference models first
    for name in ("dr", "ieu"):
        assert bar_colour[name] == line_colour[name] == color_of(name)
    from PIL import Image

    widths = {Image.open(tmp_path / f).size[0] for f in ("bars.png", "curves.png")}
    assert len(widths) == 1 and widths.pop() <= 800  # one width, shown unscaled in the Hub's card column
