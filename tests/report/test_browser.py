"""The report in a real browser (headless Debian Chromium): it loads with no console error and no request beyond
the file itself, a screenshot is taken, and the numbers in the DOM are the numbers in the run's JSON files."""

from __future__ import annotations

import json

import pytest

from tests.report.browser import external, open_report
from tests.report.conftest import cli

SECTIONS = ["overview", "metrics", "confusion", "subsets", "mnar", "noise", "tokens", "attribution", "examples",
            "training", "decode"]


def _json(path):
    return json.loads(path.read_text())


def _clean(opened):
    assert opened.errors == [], opened.errors
    assert external(opened.requests) == [], external(opened.requests)
    assert opened.screenshot.stat().st_size > 10_000  # a real picture of a real page


@pytest.fixture(scope="module")
def one_run_html(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "late.html"
    cli("report", demo["late"], "--data", demo["test"], "--out", out)
    return out


def test_one_run_report_loads_offline_and_shows_the_runs_numbers(browser, demo, one_run_html, tmp_path):
    opened = open_report(browser, one_run_html, tmp_path / "report_run.png", width=1200)
    _clean(opened)
    page, run = opened.page, demo["late"]
    shown = page.eval_on_selector_all("[data-section]", "els => els.map(e => e.dataset.section)")
    assert set(SECTIONS) <= set(shown), shown

    ev = _json(run / "eval.json")
    for k in ("accuracy", "macro_f1", "n"):
        assert opened.value(k, run="late") == pytest.approx(ev["metrics"][k], rel=1e-12)
    classes = _json(run / "schema.json")["classes"]
    for t, row in zip(classes, ev["metrics"]["confusion_matrix"]):
        assert [opened.value("confusion", run="late", true=t, pred=p) for p in classes] == row
    rob = _json(run / "robustness" / "robustness.json")
    for subset, v in rob["subsets"].items():
        assert opened.value("subset_accuracy", run="late", subset=subset) == pytest.approx(v, rel=1e-12)
    for key, curve in rob["noise"]["curves"].items():
        got = [opened.value("noise_accuracy", run="late", corrupted=key, level=lv) for lv in rob["noise"]["levels"]]
        assert got == pytest.approx(curve, rel=1e-12)
    tokens = _json(run / "tokens.json")
    for reducer, by_budget in tokens["curve"].items():
        for b, row in by_budget.items():
            assert opened.value("throughput_ratio", run="late", reducer=reducer, budget=b) == row["throughput_ratio"]
    info = _json(run / "report.json")
    assert opened.value("params", run="late") == info["params"]
    assert opened.value("best_val_acc", run="late") == pytest.approx(info["training"]["best_val_acc"], rel=1e-12)

    # the decode report: the planted unreadable image and the empty audio cell, as counted in eval.json
    rep = ev["decode_report"]
    assert rep["errors"] == {"image": 1} and rep["missing"] == {"audio": 1}
    assert opened.value("decode_errors", run="late", table="eval.json", column="image") == 1
    assert opened.value("decode_missing", run="late", table="eval.json", column="audio") == 1
    assert "absent file" in page.inner_text('[data-section="decode"]')

    # example rows: real thumbnails and playable clips, inline
    thumbs = page.eval_on_selector_all('[data-section="examples"] img.thumb',
                                       "els => els.map(e => [e.src.slice(0, 22), e.naturalWidth, e.naturalHeight])")
    assert thumbs and all(s == "data:image/png;base64," and 0 < w <= 64 and 0 < h <= 64 for s, w, h in thumbs)
    duration = page.evaluate("""() => new Promise((ok, fail) => {
        const a = document.querySelector('[data-section="examples"] audio');
        a.addEventListener('loadedmetadata', () => ok(a.duration)); a.addEventListener('error', () => fail('audio'));
        a.preload = 'metadata'; a.load(); })""")
    assert 0 < duration <= 2.0


def test_runs_side_by_side(browser, demo, tmp_path):
    """``polymodal report runs/cmp runs/m1 runs/m2``: a compare folder and two runs, one column each."""
    out = tmp_path / "compare.html"
    cli("report", demo["cmp"], demo["late"], demo["transformer"], "--out", out)
    opened = open_report(browser, out, tmp_path / "report_compare.png")
    _clean(opened)
    page = opened.page
    assert page.eval_on_selector_all(".run", "els => els.map(e => e.dataset.run)") == ["cmp", "late", "transformer"]
    rows = page.eval_on_selector_all("table.compare-runs tbody tr", "els => els.length")
    assert rows == 3
    for name, entry in _json(demo["cmp"] / "compare.json")["models"].items():
        assert opened.value("compare_mean", run="cmp", model=name) == pytest.approx(entry["mean"], rel=1e-12)
        assert opened.value("compare_params", run="cmp", model=name) == entry["params"]
    for name in ("late", "transformer"):
        ev, info = _json(demo[name] / "eval.json"), _json(demo[name] / "report.json")
        rob = demo[name] / "robustness" / "robustness.json"  # what the subset heatmap shows when there is one
        subsets = _json(rob)["subsets"] if rob.exists() else {k: v["accuracy"] for k, v in ev["subsets"].items()}
        # each number appears twice (comparison table + the run's column): both equal the JSON
        assert opened.values("accuracy", run=name) == [pytest.approx(ev["metrics"]["accuracy"], rel=1e-12)] * 2
        assert opened.values("params", run=name) == [info["params"]] * 2
        for subset, v in subsets.items():
            assert opened.values("subset_accuracy", run=name, subset=subset) == [pytest.approx(v, rel=1e-12)] * 2
    # the overlaid curves: one chart per shared validation key, drawn as an inline SVG
    charts = page.eval_on_selector_all('[data-section="comparison"] img.chart', "els => els.map(e => e.src.slice(0, 26))")
    assert charts and set(charts) == {"data:image/svg+xml;base64,"}


def test_alignment_report_shows_retrieval_numbers_and_examples(browser, demo, tmp_path):
    out = tmp_path / "align.html"
    cli("report", demo["align"], "--data", demo["data"] / "test.parquet", "--out", out)
    opened = open_report(browser, out, tmp_path / "report_align.png")
    _clean(opened)
    ev = _json(demo["align"] / "eval.json")
    for direction, levels in ev["retrieval"].items():
        for level, s in levels.items():
            for k in ("R@1", "R@5", "R@10", "median_rank"):
                got = opened.value(k, run="align", direction=direction, level=level)
                assert got == pytest.approx(s[k], rel=1e-12)
    section = opened.page.locator('[data-section="retrieval-examples"]')
    assert section.locator("img.thumb").count() > 0 and section.locator("audio").count() > 0
    ranks = opened.values("rank_of_true", run="align")
    assert ranks and all(r >= 1 for r in ranks)
