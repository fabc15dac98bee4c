"""``polymodal list WHAT`` (one table of registries, presets and datasets) and ``datasets`` (``cli/info.py``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from polymodal.cli.app import app
from polymodal.cli.info import LISTS

runner = CliRunner()


@pytest.mark.parametrize("what, names", [
    ("presets", ["default", "fast", "best", "pretrained"]),
    ("objectives", ["clip", "siglip", "symile", "pairwise", "anchor"]),
    ("kinds", ["image", "audio", "text", "tabular", "timeseries", "depth"]),
    ("corruptions", ["gaussian", "occlusion", "audio_noise", "token_drop", "feature_drop"]),
    ("heads", ["classify", "regress"]),
    ("reducers", ["merge", "prune", "pool", "zip"]),
    ("fusions", ["late", "concat", "transformer", "gated", "moe"]),
    ("encoders", ["image_conv", "audio_logmel", "tabular_ft"]),
    ("datasets", ["av-digits", "basicmotions"]),
    ("connectors", ["linear", "mlp", "pixel_shuffle", "resampler", "pool_linear"]),
])
def test_list(what, names):
    res = runner.invoke(app, ["list", what])
    assert res.exit_code == 0, res.output
    listed = [line.split(":", 1)[0] for line in res.stdout.splitlines() if line.strip()]
    assert set(names) <= set(listed), listed
    assert all(line.count(":") >= 1 for line in res.stdout.splitlines() if line.strip())


def test_descriptions_print_verbatim():
    res = runner.invoke(app, ["list", "kinds"])
    assert "pixels float32 [N, C, H, W] in [0, 1]" in res.stdout  # markup off: brackets survive
    res = runner.invoke(app, ["list", "presets"])
    assert "needs [pretrained]" in res.stdout


def test_descriptions_are_whole_first_paragraphs():
    from polymodal.fusion import FUSIONS

    res = runner.invoke(app, ["list", "fusions"])
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines())
    # the docstring's first source line stops at "cost linear in the"; the listing has the whole sentence
    assert lines["bottleneck"].endswith("cost linear in the number of modalities; pooled from the latents.")
    assert lines["transformer"].startswith('[fusion token, one "missing" token per modality')
    assert set(lines) == set(FUSIONS.names())


def test_list_unknown_names_the_choices():
    res = runner.invoke(app, ["list", "fusoins"])
    assert res.exit_code == 2
    msg = " ".join(res.stderr.split())
    assert "Did you mean 'fusions'?" in msg and all(w in msg for w in LISTS)


def test_datasets_list_and_unknown_export(tmp_path):
    res = runner.invoke(app, ["datasets", "list"])
    assert res.exit_code == 0 and "av-digits" in res.stdout
    res = runner.invoke(app, ["datasets", "export", "av-digit", str(tmp_path)])
    assert res.exit_code == 2 and "Did you mean 'av-digits'?" in res.stderr
