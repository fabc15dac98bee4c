"""In-process (ASGI) tests of the app: bad input of every kind is a 4xx naming the record and the field, JSON
bodies for the JSON kinds, missing modalities, micro-batching, the bounded queue and the timeout."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from polymodal.serve.app import create_app
from polymodal.serve.config import ServeConfig, key_hash


def upload(png: bytes | None = None, wav: bytes | None = None, i: int | None = None) -> list:
    s = "" if i is None else f"[{i}]"
    out = []
    if png is not None:
        out.append((f"image{s}", ("d.png", png, "image/png")))
    if wav is not None:
        out.append((f"audio{s}", ("d.wav", wav, "audio/wav")))
    return out


@pytest.fixture(scope="module")
def av_client(av_model):
    cfg = ServeConfig(max_wait_ms=1, max_body_bytes=200_000, max_file_bytes=50_000, max_records=4,
                      api_key_hashes=(key_hash("secret"),))
    with TestClient(create_app(av_model, cfg), headers={"Authorization": "Bearer secret"}) as client:
        yield client


def test_missing_modalities_per_record(av_client, av_files):
    png, wav = av_files[0]
    r = av_client.post("/predict", files=[*upload(png=png), *upload(wav=wav, i=1), *upload(png, wav, i=2)])
    assert r.status_code == 200, r.text
    assert [p["missing"] for p in r.json()["predictions"]] == [["audio"], ["image"], []]
    for p in r.json()["predictions"]:
        assert sum(p["proba"].values()) == pytest.approx(1, abs=1e-5)


def truncated_wav(wav: bytes) -> bytes:
    return wav[: len(wav) // 3]


BAD = [  # (id, request kwargs built from (png, wav), status, words the message must hold)
    ("corrupt png", lambda p, w: {"files": upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, w)}, 422, ["record 0", "'image'"]),
    ("random bytes image", lambda p, w: {"files": upload(bytes(range(256)) * 4)}, 422, ["record 0", "'image'"]),
    ("truncated wav", lambda p, w: {"files": upload(p, truncated_wav(w), i=1)}, 422, ["record 1", "'audio'"]),
    ("png as audio", lambda p, w: {"files": [("audio", ("a.wav", p, "audio/wav"))]}, 422, ["record 0", "'audio'"]),
    ("wrong upload media type", lambda p, w: {"files": [("image", ("a.txt", p, "text/plain"))]}, 415, ["'image'"]),
    ("path as a form value", lambda p, w: {"files": upload(wav=w), "data": {"image": "/etc/passwd"}}, 422,
     ["record 0", "'image'", "never read"]),
    ("path in json", lambda p, w: {"json": {"records": [{"image": "/etc/passwd"}]}}, 422, ["'image'", "uploaded"]),
    ("file url in json", lambda p, w: {"json": {"records": [{"audio": "file:///etc/passwd"}]}}, 422, ["'audio'"]),
    ("unknown field", lambda p, w: {"files": upload(p) + [("colour", ("c", b"x", "image/png"))]}, 422,
     ["'colour'", "image (image), audio (audio)"]),
    ("record with nothing", lambda p, w: {"json": {"records": [{}]}}, 422, ["record 0", "none of"]),
    ("empty upload", lambda p, w: {"files": upload(b"")}, 422, ["record 0", "empty"]),
    ("gap between records", lambda p, w: {"files": upload(p) + upload(p, i=2)}, 422, ["record 1"]),
    ("json not an object", lambda p, w: {"content": b"[1, 2]", "headers": {"content-type": "application/json"}},
     422, ["records"]),
    ("broken json", lambda p, w: {"content": b'{"records": [', "headers": {"content-type": "application/json"}},
     422, ["JSON"]),
    ("records not a list", lambda p, w: {"json": {"records": {"image": None}}}, 422, ["non-empty list"]),
    ("text/plain body", lambda p, w: {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415,
     ["application/json"]),
    ("no content type", lambda p, w: {"content": b"hello"}, 415, ["multipart/form-data"]),
    ("file over the limit", lambda p, w: {"files": upload(p + b"\0" * 60_000)}, 413, ["'image'", "50,000"]),
    ("body over the limit", lambda p, w: {"files": upload(p + b"\0" * 45_000, w + b"\0" * 45_000) +
                                          upload(p + b"\0" * 45_000, w + b"\0" * 45_000, i=1)}, 413, ["200,000"]),
    ("too many records", lambda p, w: {"files": upload(p, i=5)}, 413, ["limit of 4"]),
    ("broken multipart", lambda p, w: {"content": b"--xx\r\nContent-Disposition: form-data\r\n\r\nabc",
                                       "headers": {"content-type": "multipart/form-data; boundary=xx"}}, 400, []),
]


@pytest.mark.parametrize("build,status,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_4xx(av_client, av_files, build, status, words):
    r = av_client.post("/predict", **build(*av_files[0]))
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    for w in words:
        assert w in detail, detail


def test_api_key(av_client, av_files):
    png, wav = av_files[0]
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic secret"}):
        r = av_client.post("/predict", files=upload(png, wav), headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert av_client.post("/predict", files=upload(png, wav), headers={"Authorization": "",
                                                                         "X-API-Key": "secret"}).status_code == 200
    # health, readiness and metrics need no key; the server stayed healthy through all of the above
    assert av_client.get("/healthz", headers={"Authorization": ""}).status_code == 200
    assert av_client.get("/readyz", headers={"Authorization": ""}).json() == {"ready": True}
    assert 'status="401"' in av_client.get("/metrics", headers={"Authorization": ""}).text


def test_openapi_names_the_models_fields(av_client, emoji_model, motion_model):
    body = av_client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert list(body) == ["multipart/form-data"]  # image + audio: files only, so no JSON body
    props = body["multipart/form-data"]["schema"]["properties"]
    assert props["image"]["format"] == "binary" and "(image)" in props["image"]["description"]
    assert "(audio)" in props["audio"]["description"]
    app = create_app(motion_model, ServeConfig())
    record = app.openapi()["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"]["records"]["items"]["properties"]
    assert set(record) == {"peak", "hand", "accel", "gyro"}
    assert record["peak"]["anyOf"][0] == {"type": "number"} and "(tabular)" in record["peak"]["description"]
    assert "(timeseries)" in record["accel"]["description"]
    assert "/embed" not in app.openapi()["paths"]  # no shared space in this run


@pytest.fixture(scope="module")
def motion_model(motion_run):
    import polymodal as pm

    return pm.load(motion_run)


@pytest.fixture(scope="module")
def emoji_model(emoji_run):
    import polymodal as pm

    return pm.load(emoji_run)


def test_json_records_for_series_tabular_and_text(motion_model, emoji_model):
    from polymodal.datasets import load_basicmotions, load_emoji

    from tests.serve.conftest import motion_frame

    test = motion_frame(load_basicmotions("test")).head(3)
    records = [{"accel": np.asarray(test["accel"].iloc[0]).tolist(), "gyro": np.asarray(test["gyro"].iloc[0]).tolist(),
                "peak": float(test["peak"].iloc[0]), "hand": test["hand"].iloc[0]},
               {"gyro": np.asarray(test["gyro"].iloc[1]).tolist()},  # accel and the features missing
               {"peak": 3.5, "hand": "never seen"}]  # an unseen category is a known-unknown value, not an error
    with TestClient(create_app(motion_model, ServeConfig(max_wait_ms=1))) as client:
        r = client.post("/predict", json={"records": records})
        assert r.status_code == 200, r.text
        local = motion_model.predict(test.head(1), progress=False)
        assert r.json()["predictions"][0]["prediction"] == local["prediction"].iloc[0]
        assert r.json()["predictions"][1]["missing"] == ["stats", "accel"]
        for bad, words in [({"peak": "tall"}, ["record 0", "'peak'", "number"]),
                           ({"accel": "not a series"}, ["record 0", "'accel'"]),
                           ({"accel": [[1.0, 2.0], [3.0]]}, ["record 0", "'accel'"]),
                           ({"peak": 1e300}, ["record 0", "'peak'", "too large"])]:
            r = client.post("/predict", json={"records": [{"gyro": records[0]["gyro"]}, bad]} if "accel" not in bad
                            else {"records": [bad]})
            assert r.status_code == 422, (bad, r.text)
            assert all(w in r.json()["detail"] for w in words if w != "record 0") and "record" in r.json()["detail"]
        # a form field carries a series as JSON text and a number as text
        form = {"accel": json.dumps(records[0]["accel"]), "peak": "2.5", "hand": "low"}
        r = client.post("/predict", data=form, files=[("gyro[1]", ("x", b"[1]", "text/plain"))])
        assert r.status_code == 422 and "form field, not as a file" in r.json()["detail"]
        r = client.post("/predict", files=[("dummy", ("", b"", "text/plain"))], data=form)
        assert r.status_code == 422 and "'dummy'" in r.json()["detail"]
    emoji = load_emoji("test", limit=2)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(emoji["image"].iloc[0], dtype=np.uint8)).save(buf, format="PNG")
    with TestClient(create_app(emoji_model, ServeConfig(max_wait_ms=1))) as client:
        r = client.post("/predict", json={"records": [{"name": emoji["name"].iloc[0]}, {"name": 42}]})
        assert r.status_code == 422 and "record 1, field 'name'" in r.json()["detail"], r.text
        r = client.post("/predict", json={"records": [{"name": emoji["name"].iloc[0]}]})
        assert r.status_code == 200 and r.json()["predictions"][0]["missing"] == ["image"]
        r = client.post("/predict", files={"image": ("e.png", buf.getvalue(), "image/png")},
                        data={"records": json.dumps([{"name": emoji["name"].iloc[0]}])})
        assert r.status_code == 200 and r.json()["predictions"][0]["missing"] == [], r.text


async def _concurrently(app, requests):
    """Send ``requests`` (kwargs of ``client.post``) at once to the app, with its lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            responses = await asyncio.gather(*(client.post(path, **kw) for path, kw in requests))
            metrics = (await client.get("/metrics")).text
    return responses, metrics


def _run(coro):
    """``asyncio.run`` in a thread of its own: another test in this worker may hold a running event loop in the
    main thread (playwright's sync API does, for the report's browser tests), and asyncio.run refuses to nest."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _metric(text: str, name: str) -> float:
    """A sample's value in the Prometheus text (0 when absent: a labelled series appears at its first use)."""
    line = next((x for x in text.splitlines() if x.startswith(name + " ")), None)
    return 0.0 if line is None else float(line.rsplit(" ", 1)[1])


def test_concurrent_requests_share_one_batch(av_model, av_files):
    png, wav = av_files[0]
    app = create_app(av_model, ServeConfig(max_batch=3, max_wait_ms=3000))
    # 1 + 2 records fill max_batch=3: the batch runs at once, long before max_wait_ms
    reqs = [("/predict", {"files": upload(png=png)}), ("/predict", {"files": upload(wav=wav) + upload(png, wav, i=1)})]
    responses, metrics = _run(_concurrently(app, reqs))
    assert [r.status_code for r in responses] == [200, 200]
    assert _metric(metrics, 'polymodal_batch_size_count{route="/predict"}') == 1
    assert _metric(metrics, 'polymodal_batch_size_sum{route="/predict"}') == 3
    assert _metric(metrics, 'polymodal_request_seconds_sum{route="/predict"}') < 2 * 3.0


def test_a_bad_request_fails_alone_in_its_batch(av_model, av_files):
    """The batch is decoded at once; a request whose record 1 is a truncated WAV gets its own 422 naming its own
    record 1 (not the batch's row 2), and the two good requests of the same batch are answered as if alone."""
    (png, wav), (png2, wav2) = av_files[:2]
    app = create_app(av_model, ServeConfig(max_batch=4, max_wait_ms=3000))
    reqs = [("/predict", {"files": upload(png, wav)}),
            ("/predict", {"files": upload(png2, wav2) + upload(png, truncated_wav(wav), i=1)}),
            ("/predict", {"files": upload(png2, wav2)})]
    responses, metrics = _run(_concurrently(app, reqs))
    assert [r.status_code for r in responses] == [200, 422, 200], [r.text for r in responses]
    assert "record 1, field 'audio'" in responses[1].json()["detail"]
    assert _metric(metrics, 'polymodal_batch_size_count{route="/predict"}') == 1  # one batch of all 4 records
    with TestClient(create_app(av_model, ServeConfig(max_wait_ms=1))) as client:
        for (p, w), r in zip([(png, wav), (png2, wav2)], responses[::2]):
            alone = client.post("/predict", files=upload(p, w)).json()["predictions"]
            assert r.json()["predictions"][0]["prediction"] == alone[0]["prediction"]
            np.testing.assert_allclose(list(r.json()["predictions"][0]["proba"].values()),
                                       list(alone[0]["proba"].values()), atol=1e-5)


def test_full_queue_is_429_and_slow_answer_504(av_model, av_files):
    png, wav = av_files[0]
    app = create_app(av_model, ServeConfig(max_batch=64, max_wait_ms=1500, queue_size=2))
    reqs = [("/predict", {"files": upload(png, wav)})] * 4
    responses, metrics = _run(_concurrently(app, reqs))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 429, 429]
    assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 429)
    app = create_app(av_model, ServeConfig(max_wait_ms=2000, timeout_s=0.2))
    responses, metrics = _run(_concurrently(app, [("/predict", {"files": upload(png, wav)})]))
    assert responses[0].status_code == 504
    assert _metric(metrics, 'polymodal_batch_size_count{route="/predict"}') == 0  # dropped, never computed


def test_embed_route(av_client, av_model, av_files):
    png, wav = av_files[0]
    r = av_client.post("/embed", files=upload(png=png))
    assert r.status_code == 200, r.text
    e = r.json()["embeddings"][0]
    assert e["audio"] is None and len(e["image"]) == av_model.net.align_head.embed_dim == 64
    np.testing.assert_allclose(e["image"], e["fused"], atol=1e-6)  # one modality: the fused vector is its own
    np.testing.assert_allclose(e["image"], av_model.encode("image", [png])[0], atol=1e-5)
