"""End to end: the real CLI starts a real uvicorn server in a subprocess; a client talks HTTP to it."""

from __future__ import annotations

import numpy as np
import httpx
import pandas as pd
import pytest

from polymodal.serve.config import key_hash


def files(png: bytes, wav: bytes, i: int | None = None) -> list[tuple[str, tuple[str, bytes, str]]]:
    s = "" if i is None else f"[{i}]"
    return [(f"image{s}", ("digit.png", png, "image/png")), (f"audio{s}", ("clip.wav", wav, "audio/wav"))]


@pytest.fixture(scope="module")
def live(av_run, tmp_path_factory):
    """One real server for this module: API keys (one in clear, one stored as its hash) and an index."""
    import polymodal as pm
    from polymodal.datasets import load_av_digits

    from tests.serve.conftest import Server

    tmp = tmp_path_factory.mktemp("live")
    keys = tmp / "keys.txt"
    keys.write_text(f"# one key in clear, one stored as its hash\nkey-one\nsha256:{key_hash('key-two')}\n")
    table = load_av_digits("test", limit=20)
    pm.Index.build(av_run, table, tmp / "idx")
    srv = Server(av_run, "--api-key-file", str(keys), "--max-batch", "8", "--max-wait-ms", "2", "--index",
                 str(tmp / "idx"), log_path=tmp / "server.log")
    try:
        srv.wait_ready()
        yield srv, table, tmp / "idx"
    finally:
        srv.stop()


def test_predict_embed_metrics_over_http(live, av_model, av_files):
    srv = live[0]
    png, wav = av_files[0]
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.post("/predict", files=files(png, wav)).status_code == 401
        assert http.post("/predict", files=files(png, wav), headers={"Authorization": "Bearer nope"}).status_code == 401
        r = http.post("/predict", files=files(png, wav), headers={"Authorization": "Bearer key-one"})
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        # several records in one request, one of them missing its audio
        many = [*files(png, wav), *files(*av_files[1], i=1), ("image[2]", ("x.png", av_files[2][0], "image/png"))]
        r2 = http.post("/predict", files=many, headers={"X-API-Key": "key-two"})
        assert r2.status_code == 200, r2.text
        emb = http.post("/embed", files=files(png, wav), headers={"X-API-Key": "key-two"})
        assert emb.status_code == 200, emb.text
        metrics = http.get("/metrics").text
    # the server answers what the library answers for the same uploaded bytes
    table = pd.DataFrame({"image": [png, av_files[1][0], av_files[2][0]], "audio": [wav, av_files[1][1], None]})
    local = av_model.predict(table, progress=False)
    classes = [str(c) for c in av_model.schema.classes]
    served = r2.json()["predictions"]
    assert [p["prediction"] for p in served] == local["prediction"].tolist()
    np.testing.assert_allclose([[p["proba"][c] for c in classes] for p in served],
                               local[[f"proba_{c}" for c in av_model.schema.classes]].to_numpy(), atol=1e-5)
    assert got[0]["proba"] == pytest.approx(served[0]["proba"], abs=1e-5)
    assert [p["missing"] for p in served] == [[], [], ["audio"]]
    vectors = emb.json()["embeddings"][0]
    local_emb = av_model.embed(pd.DataFrame({"image": [png], "audio": [wav]}))
    np.testing.assert_allclose(vectors["image"], local_emb["emb_image"].iloc[0], atol=1e-5)
    np.testing.assert_allclose(vectors["fused"], local_emb["emb_fused"].iloc[0], atol=1e-5)
    assert 'polymodal_requests_total{route="/predict",status="401"} 2.0' in metrics
    assert 'polymodal_requests_total{route="/predict",status="200"} 2.0' in metrics
    assert 'polymodal_batch_size_sum{route="/predict"} 4.0' in metrics
    assert 'polymodal_queue_depth{route="/predict"} 0.0' in metrics


def test_search_over_http(live, av_model):
    import polymodal as pm

    srv, table, idx = live
    png = table["image"].iloc[3]
    key = {"X-API-Key": "key-one"}
    r = httpx.post(srv.url + "/search", files={"image": ("q.png", png, "image/png")}, data={"top_k": "3"},
                   headers=key, timeout=30)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    local = pm.Index(idx, av_model).search(image=png, top_k=3)
    assert [row["score"] for row in results] == pytest.approx(local["score"].tolist(), abs=1e-5)
    bad = httpx.post(srv.url + "/search", files={"image": ("q.png", png, "image/png")}, data={"top_k": "0"},
                     headers=key, timeout=30)
    assert bad.status_code == 422 and "top_k" in bad.json()["detail"]


def test_stops_on_ctrl_c(live):
    srv = live[0]
    assert srv.stop() == 0, srv.log()


def test_bad_flags_exit_2(tmp_path, av_run):
    from typer.testing import CliRunner

    from polymodal.cli.app import app

    for args in (["serve", str(tmp_path / "absent")], ["serve", str(av_run), "--backend", "tensorflow"],
                 ["serve", str(av_run), "--api-key-file", str(tmp_path / "absent.txt")],
                 ["serve", str(av_run), "--max-batch", "0"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
