import json

import matplotlib
import pytest

matplotlib.use("Agg")

from polymodal.evaluate import plots  # noqa: E402

LEVELS = [0.0, 0.1, 0.3, 0.5]
SUBSETS = ["image", "audio", "image+audio"]


def _names(n):
    return [f"model_{i:02d}" for i in range(n)]


def _sweep(i):
    drops = {"image": 0.5, "audio": 0.1, "all": 0.8}
    return {"levels": LEVELS, "metric": "accuracy",
            "curves": {k: [0.9 - 0.01 * i - d * lv for lv in LEVELS] for k, d in drops.items()}}


def _budget_res(n, acc=True):
    return {"tokens_full": 200.0, "curve": {
        f"reducer_{i}": {str(b): {"acc": (0.8 - 0.02 * i * (1 - b)) if acc else None, "throughput_ratio": 1 / b}
                         for b in (1.0, 0.5, 0.25)} for i in range(n)}}


def _style(line):
    return line.get_color(), line.get_linestyle(), line.get_marker()


def _assert_distinct(lines):
    styles = [_style(ln) for ln in lines]
    assert len({s[0] for s in styles}) == len(styles)  # colours pairwise distinct
    assert len({s[1:] for s in styles}) == len(styles)  # and (line style, marker) pairs too


def _assert_legend_outside(fig):
    fig.draw_without_rendering()
    (legend,) = fig.legends
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent())


def _assert_labelled(ax):
    assert ax.get_xlabel() and ax.get_ylabel()


def test_series_styles_stay_distinct_well_past_a_ten_colour_cycle():
    assert len({plots.series_style(i)["color"] for i in range(20)}) == 20
    assert len({tuple(plots.series_style(i).values()) for i in range(140)}) == 140


@pytest.mark.parametrize("n", [1, 12])
def test_line_plot(n, tmp_path):
    lines = {name: [0.9 - 0.01 * i - lv for lv in LEVELS] for i, name in enumerate(_names(n))}
    fig = plots.line_figure(LEVELS, lines, xlabel="corruption level", ylabel="accuracy", title="t",
                            legend_title="model")
    (ax,) = fig.axes
    assert len(ax.get_lines()) == n and ax.get_title() == "t"
    _assert_labelled(ax)
    _assert_distinct(ax.get_lines())
    _assert_legend_outside(fig)
    # the legend reads top to bottom like the right ends of the curves
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(lines)
    assert plots.line_plot(LEVELS, lines, tmp_path / "l.png", xlabel="x", ylabel="y", title="t")
    assert (tmp_path / "l.png").stat().st_size > 1000


@pytest.mark.parametrize("n", [1, 12])
def test_noise_curves_one_panel_per_corrupted_modality(n, tmp_path):
    curves = {name: _sweep(i) for i, name in enumerate(_names(n))}
    fig = plots.noise_curves_figure(curves, corruption={"image": "gaussian", "audio": "audio_noise"})
    axes = fig.axes
    titles = ["image corrupted", "audio corrupted", "all modalities corrupted together"]
    assert [ax.get_title() for ax in axes] == titles
    assert "Gaussian noise" in axes[0].get_xlabel() and "clip RMS" in axes[1].get_xlabel()
    assert axes[0].get_ylabel().startswith("accuracy") and fig.get_suptitle()
    for ax in axes:
        assert len(ax.get_lines()) == n and ax.get_xlabel()
        _assert_distinct(ax.get_lines())
    # a model looks the same in every panel
    assert [_style(ln) for ln in axes[0].get_lines()] == [_style(ln) for ln in axes[2].get_lines()]
    _assert_legend_outside(fig)
    assert len(fig.legends[0].get_texts()) == n
    assert plots.noise_curves_plot(curves, tmp_path / "n.png", key="all")
    assert (tmp_path / "n.png").stat().st_size > 1000


def test_single_model_subsets_are_a_bar_chart_with_one_annotated_bar_per_subset(tmp_path):
    values = {"image": 0.57, "audio": 0.69, "image+audio": 0.87}
    fig = plots.subset_figure({"model": values})
    (ax,) = fig.axes
    (bars,) = ax.containers
    assert len(bars) == len(SUBSETS)
    assert [t.get_text() for t in ax.get_xticklabels()] == SUBSETS
    assert {t.get_text() for t in ax.texts} == {"0.570", "0.690", "0.870"}  # values on the bars
    assert ax.get_title() and ax.get_ylabel().startswith("accuracy")
    _assert_labelled(ax)
    assert plots.subset_heatmap({"model": values}, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_many_model_subsets_are_an_annotated_heatmap_with_a_labelled_colour_bar(tmp_path):
    subsets = {name: {s: 0.5 + 0.03 * i + 0.1 * j for j, s in enumerate(SUBSETS)} for i, name in enumerate(_names(12))}
    fig = plots.subset_figure(subsets, metric="rmse")
    ax, cbar = fig.axes
    assert ax.images[0].get_array().shape == (12, 3) and len(ax.texts) == 36
    assert cbar.get_ylabel() == plots.metric_label("rmse") and "lower is better" in cbar.get_ylabel()
    assert ax.get_title() and [t.get_text() for t in ax.get_yticklabels()] == _names(12)
    _assert_labelled(ax)
    assert plots.subset_heatmap(subsets, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000


@pytest.mark.parametrize("n", [1, 12])
def test_budget_curve(n, tmp_path):
    from polymodal.evaluate.token_bench import plot_curve

    fig = plots.budget_curve_figure(_budget_res(n))
    acc, speed = fig.axes
    for ax in (acc, speed):
        _assert_labelled(ax)
        assert ax.get_title()
        _assert_distinct([ln for ln in ax.get_lines() if ln.get_label().startswith("reducer")])
    assert len(fig.legends[0].get_texts()) == n and fig.get_suptitle()
    _assert_legend_outside(fig)
    assert plot_curve(_budget_res(n), tmp_path / "b.png") and (tmp_path / "b.png").stat().st_size > 1000
    # without accuracies (regression, or not scored): only the throughput panel
    assert len(plots.budget_curve_figure(_budget_res(n, acc=False)).axes) == 1


def test_without_matplotlib_writers_return_false(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert plots.subset_heatmap({"m": {"a": 1.0}}, tmp_path / "s.png") is False
    assert plots.line_plot(LEVELS, {"a": LEVELS}, tmp_path / "l.png", xlabel="x", ylabel="y") is False
    assert not list(tmp_path.iterdir())


def test_compare_write_outputs_records_the_plots_it_wrote(tmp_path):
    from polymodal.experiments.compare import write_outputs

    models = {name: {"metric": "accuracy", "mean": 0.9, "std": 0.0, "params": 1, "train_s": 1.0, "latency_ms": 0.1,
                     "seeds": [0, 1], "subsets": dict(zip(SUBSETS, (0.6, 0.7, 0.9))), "noise": _sweep(i)}
              for i, name in enumerate(_names(12))}
    runs = [{"key": "model_00/seed0", "noise": {"corruption": {"image": "gaussian", "audio": "audio_noise"}}}]
    written = write_outputs({"models": models}, runs, tmp_path)
    assert written == ["subsets.png", "noise.png"]
    assert json.loads((tmp_path / "compare.json").read_text())["plots"] == written
    assert all((tmp_path / p).stat().st_size > 1000 for p in written)
    assert "![noise.png](noise.png)" in (tmp_path / "compare.md").read_text()
