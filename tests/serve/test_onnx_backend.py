"""``--backend onnx``: the server's task head runs in onnxruntime on the graph `polymodal export` wrote and
checked, and answers what the PyTorch backend answers, for every subset of modalities in one batch."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from polymodal.errors import PolymodalError
from polymodal.serve.app import create_app
from polymodal.serve.config import ServeConfig
from tests.serve.test_app import upload


def test_onnx_backend_answers_like_torch(av_run, av_model, av_files, tmp_path):
    from polymodal.cli.app import app

    graph = tmp_path / "av.onnx"
    res = CliRunner().invoke(app, ["export", str(av_run), "--onnx", str(graph), "--check-rows", "8"])
    assert res.exit_code == 0, res.output
    (p0, w0), (p1, w1), (p2, _) = av_files[:3]
    files = [*upload(p0, w0), *upload(png=p1, i=1), *upload(wav=w1, i=2), *upload(p2, w0, i=3)]
    answers = {}
    for backend, onnx in (("torch", None), ("onnx", str(graph))):
        with TestClient(create_app(av_model, ServeConfig(max_wait_ms=1, backend=backend, onnx=onnx),
                                   run=av_run)) as client:
            r = client.post("/predict", files=files)
            assert r.status_code == 200, r.text
            assert client.get("/info").json()["backend"] == backend
            answers[backend] = r.json()["predictions"]
    classes = [str(c) for c in av_model.schema.classes]
    for t, o in zip(answers["torch"], answers["onnx"]):
        assert o["missing"] == t["missing"]
        np.testing.assert_allclose([o["proba"][c] for c in classes], [t["proba"][c] for c in classes], atol=1e-4)
    assert [a["missing"] for a in answers["onnx"]] == [[], ["audio"], ["image"], []]


def test_onnx_backend_without_an_export_says_what_to_do(av_run, av_model, tmp_path):
    with pytest.raises(PolymodalError, match="polymodal export"):
        create_app(av_model, ServeConfig(backend="onnx", onnx=str(tmp_path / "none.onnx")), run=av_run)
    with pytest.raises(PolymodalError, match="--backend onnx"):
        ServeConfig(onnx="x.onnx")
