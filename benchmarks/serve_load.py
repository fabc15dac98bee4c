"""Load test of `polymodal serve` on the av-digits model: a real server in a subprocess, a real HTTP client.

    .venv/bin/python benchmarks/serve_load.py [--quick] [--run DIR] [--requests N]

1. closed loop: ``--clients`` (50) concurrent clients send ``--requests`` (10,000) ``/predict`` requests, each a
   real PNG + WAV upload of an av-digits test row; errors, p50 / p99 latency, throughput, and the server's
   resident memory after the first 1,000 requests and at the end (``rss_growth_1k_to_10k``, a fraction);
2. the same closed loop against a server started with ``--max-batch 1`` (fewer requests: a rate needs no more),
   side by side in this run: ``batching_speedup`` = requests/s batched / requests/s unbatched;
3. open loop: requests sent at a fixed rate (half the batched closed-loop throughput), latency measured from each
   request's scheduled start, so a stall is not hidden by the client waiting (coordinated omission);
4. 1,000 malformed requests (corrupt and random files, truncated audio, wrong types and media types, paths in
   JSON, oversize bodies, missing and wrong keys, random bytes): ``malformed_4xx`` of ``malformed_total``, then
   ``healthy_after``: ``/healthz`` answers and a valid ``/predict`` gives the same answer as before.

The closed and open loops use ``Pool``, a minimal keep-alive HTTP/1.1 client over asyncio streams sending
pre-encoded requests (a load generator, like wrk): on 2 shared CPUs httpx's own per-request work (about 6 ms of CPU)
cost as much as the server's and throttled it. The malformed requests and the health check use httpx.

``onnx_max_abs_diff`` and ``onnx_vs_torch_throughput`` are copied from ``benchmarks/results/onnx_export.json``
(written by ``benchmarks/onnx_export.py``) when it exists. ``--quick``: 1,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, emit

import httpx
import numpy as np

CLI = "import sys; from polymodal.cli import app; sys.argv[0] = 'polymodal'; app()"
KEY = "bench-key"


def train_run(out: Path) -> Path:
    import polymodal as pm
    from polymodal.datasets import load_av_digits

    pm.fit(load_av_digits("train", limit=600), "digit", epochs=2, progress=False, seed=0, out=out)
    return out


def uploads(n: int = 64) -> list[tuple[bytes, bytes]]:
    import soundfile as sf
    from polymodal.datasets import load_av_digits

    test = load_av_digits("test", limit=n)
    out = []
    for png, a in zip(test["image"], test["audio"]):
        buf = io.BytesIO()
        sf.write(buf, np.asarray(a["array"]), int(a["sampling_rate"]), format="WAV", subtype="PCM_16")
        out.append((png, buf.getvalue()))
    return out


def files(png: bytes, wav: bytes) -> list:
    return [("image", ("digit.png", png, "image/png")), ("audio", ("clip.wav", wav, "audio/wav"))]


def encoded(data) -> list[bytes]:
    """Each upload's whole HTTP/1.1 request (headers + multipart body, the body encoded once by httpx): the load
    client then spends almost no CPU per request (client and server share this machine's CPUs; httpx's own
    per-request work cost about as much CPU as the server's, which throttled the server it measured)."""
    out = []
    for png, wav in data:
        req = httpx.Request("POST", "http://x/predict", files=files(png, wav))
        body = req.read()
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {req.headers['content-type']}\r\n"
                f"Content-Length: {len(body)}\r\nAuthorization: Bearer {KEY}\r\n\r\n")
        out.append(head.encode() + body)
    return out


class Pool:
    """Keep-alive HTTP/1.1 connections to the server, for pre-encoded requests (``encoded``): a minimal client (a
    load generator, like wrk), so the measurement is the server's work and not the client's."""

    def __init__(self, url: str) -> None:
        host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
        self.host, self.port, self.idle = host, int(port), []

    async def post(self, raw: bytes) -> tuple[int, bytes]:
        """(status, body) of one request; a connection the server closed is replaced."""
        for attempt in (0, 1):
            reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
                headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
            except (OSError, asyncio.IncompleteReadError):
                writer.close()
                if attempt:
                    raise
                continue
            if headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                self.idle.append((reader, writer))
            return int(lines[0].split()[1]), body
        raise AssertionError("unreachable")

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class Server:
    def __init__(self, run: Path, key_file: Path, *flags: str, threads: int) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "serve", str(run), "--port", str(self.port), "--threads", str(threads),
             "--api-key-file", str(key_file), "--max-body-mb", "1", "--log-level", "error", *flags],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 180:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server not ready in 180 s")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def closed_loop(srv: Server, data, n: int, clients: int, rss_at: int | None = None) -> dict:
    """``clients`` workers, each sending its next request when the last one is answered, ``n`` in all."""
    latencies: list[float] = []
    errors = {"count": 0, "examples": []}
    sent = 0
    rss: dict[str, float] = {}
    bodies = encoded(data)
    pool = Pool(srv.url)

    async def worker() -> None:
        nonlocal sent
        while sent < n:
            i = sent
            sent += 1
            t0 = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(pool.post(bodies[i % len(bodies)]), 60)
                ok = status == 200 and len(json.loads(body)["predictions"]) == 1
                what = f"{status}: {body[:150]!r}"
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                ok, what = False, repr(e)
            latencies.append(time.perf_counter() - t0)
            if not ok:
                errors["count"] += 1
                if len(errors["examples"]) < 5:
                    errors["examples"].append(what[:200])
            if rss_at is not None and len(latencies) == rss_at and "rss_mb_1k" not in rss:
                rss["rss_mb_1k"] = srv.rss_mb()

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(clients)))
    finally:
        pool.close()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3
    return {"requests": n, "clients": clients, "errors": errors["count"], "error_examples": errors["examples"],
            "seconds": round(wall, 2), "requests_per_s": round(n / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            **{k: round(v, 1) for k, v in rss.items()}}


async def open_loop(srv: Server, data, n: int, rate: float) -> dict:
    """``n`` requests started at ``rate`` per second whatever the answers; latency from the scheduled start."""
    bodies = encoded(data)
    latencies, errors = [], 0

    pool = Pool(srv.url)

    async def one(i: int, due: float) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        try:
            status, _ = await asyncio.wait_for(pool.post(bodies[i % len(bodies)]), 60)
            errors += status != 200
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            errors += 1
        latencies.append(time.perf_counter() - due)

    t0 = time.perf_counter() + 0.2
    try:
        await asyncio.gather(*(one(i, t0 + i / rate) for i in range(n)))
    finally:
        pool.close()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3
    return {"requests": n, "rate_per_s": round(rate, 1), "achieved_per_s": round(n / wall, 1), "errors": errors,
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}


def malformed_cases(data, rng: random.Random) -> list[tuple[str, dict]]:
    """(category, request kwargs) for the kinds of bad input a public endpoint meets."""
    png, wav = data[0]
    key = {"Authorization": f"Bearer {KEY}"}
    rand = lambda k: bytes(rng.getrandbits(8) for _ in range(k))  # noqa: E731
    return [
        ("corrupt png", {"files": files(png[:20] + rand(200), wav), "headers": key}),
        ("random bytes as image", {"files": files(rand(500), wav), "headers": key}),
        ("truncated wav", {"files": files(png, wav[: len(wav) // 3]), "headers": key}),
        ("png as audio", {"files": files(png, png), "headers": key}),
        ("wrong media type", {"files": [("image", ("x.txt", png, "text/plain"))], "headers": key}),
        ("path as form value", {"data": {"image": "/etc/passwd"}, "files": files(png, wav)[1:], "headers": key}),
        ("path in json", {"json": {"records": [{"image": "/etc/passwd", "audio": "../../x.wav"}]}, "headers": key}),
        ("wrong json types", {"json": {"records": [{"image": 5}, 3, None]}, "headers": key}),
        ("unknown field", {"files": [("weights", ("w", rand(50), "application/octet-stream"))], "headers": key}),
        ("oversize body", {"files": files(png + rand(1_100_000), wav), "headers": key}),
        ("missing key", {"files": files(png, wav)}),
        ("wrong key", {"files": files(png, wav), "headers": {"Authorization": "Bearer " + rand(8).hex()}}),
        ("random bytes body", {"content": rand(rng.randrange(1, 4000)), "headers": {
            **key, "content-type": rng.choice(["application/json", "multipart/form-data; boundary=zz",
                                               "application/octet-stream", "image/png"])}}),
    ]


async def malformed(srv: Server, data, n: int) -> dict:
    rng = random.Random(0)
    counts: dict[str, dict[str, int]] = {}
    n_4xx = 0
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
        for i in range(n):
            cases = malformed_cases(data, rng)
            name, kw = cases[i % len(cases)]
            try:
                status = str((await client.post("/predict", **kw)).status_code)
            except httpx.HTTPError as e:
                status = type(e).__name__
            n_4xx += status.isdigit() and 400 <= int(status) < 500
            counts.setdefault(name, {})[status] = counts.setdefault(name, {}).get(status, 0) + 1
    return {"malformed_total": n, "malformed_4xx": int(n_4xx), "by_case": counts}


async def check_healthy(srv: Server, data, expected) -> bool:
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as client:
        health = await client.get("/healthz")
        r = await client.post("/predict", files=files(*data[0]), headers={"Authorization": f"Bearer {KEY}"})
    return health.status_code == 200 and r.status_code == 200 and r.json()["predictions"] == expected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a trained av-digits run (default: train one, about a minute)")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="1,000 requests")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server's inference thread")
    args = ap.parse_args()
    n = 1_000 if args.quick else args.requests
    tmp = Path(tempfile.mkdtemp(prefix="serve_load-"))
    t_start = time.time()
    run = args.run or train_run(tmp / "run")
    key_file = tmp / "keys.txt"
    key_file.write_text(KEY + "\n")
    data = uploads()
    result: dict = {"run": str(args.run) if args.run else "trained here: av-digits train limit=600, 2 epochs"}

    srv = Server(run, key_file, "--max-batch", "64", "--max-wait-ms", "5", threads=args.threads)
    try:
        asyncio.run(closed_loop(srv, data, 200, args.clients))  # warm-up (not counted)
        before = _batch_totals(httpx.get(srv.url + "/metrics").text)
        batched = asyncio.run(closed_loop(srv, data, n, args.clients, rss_at=min(1000, n)))
        after = _batch_totals(httpx.get(srv.url + "/metrics").text)
        batched["mean_batch_records"] = round((after[0] - before[0]) / max(1.0, after[1] - before[1]), 2)
        batched["rss_mb_end"] = round(srv.rss_mb(), 1)
        rate = max(5.0, batched["requests_per_s"] / 2)
        opened = asyncio.run(open_loop(srv, data, min(n, 1000), rate))
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            expected = c.post("/predict", files=files(*data[0]), headers={"Authorization": f"Bearer {KEY}"}).json()[
                "predictions"]
        bad = asyncio.run(malformed(srv, data, 1000))
        healthy = asyncio.run(check_healthy(srv, data, expected))
        metrics = httpx.get(srv.url + "/metrics").text
    finally:
        srv.stop()
    whole = _batch_totals(metrics)

    srv1 = Server(run, key_file, "--max-batch", "1", "--max-wait-ms", "0", threads=args.threads)
    try:
        asyncio.run(closed_loop(srv1, data, 100, args.clients))
        single = asyncio.run(closed_loop(srv1, data, min(n, 1500), args.clients))
    finally:
        srv1.stop()

    result.update({
        "errors": batched["errors"] + opened["errors"],
        "p50_ms": batched["p50_ms"], "p99_ms": batched["p99_ms"],
        "batching_speedup": round(batched["requests_per_s"] / single["requests_per_s"], 2),
        "rss_growth_1k_to_10k": round(batched["rss_mb_end"] / batched["rss_mb_1k"] - 1, 4),
        "malformed_total": bad["malformed_total"], "malformed_4xx": bad["malformed_4xx"], "healthy_after": healthy,
        "closed_loop": batched, "closed_loop_max_batch_1": single, "open_loop": opened,
        "mean_batch_records": batched["mean_batch_records"],
        "mean_batch_records_whole_run": round(whole[0] / whole[1], 2) if whole[1] else None,
        "malformed_by_case": bad["by_case"],
    })
    onnx = RESULTS / "onnx_export.json"
    if onnx.exists():
        o = json.loads(onnx.read_text())
        result["onnx_max_abs_diff"] = o.get("onnx_max_abs_diff")
        result["onnx_vs_torch_throughput"] = o.get("onnx_vs_torch_throughput")
        result["onnx_source"] = "copied from benchmarks/results/onnx_export.json (benchmarks/onnx_export.py)"
    load = os.getloadavg()
    result["note"] = (f"{'quick run, ' if n < 10_000 else ''}{n} requests; client and server share this machine "
                      f"({os.cpu_count()} CPUs, shared with other jobs: load average {load[0]:.1f} at the end), so "
                      "absolute latencies are noisy; the speedup is a ratio within one run. The --max-batch 1 "
                      f"server got {single['requests']} requests (a rate needs no more). Server: 1 uvicorn worker, "
                      f"{args.threads} torch thread(s); the load client is a minimal keep-alive HTTP/1.1 client (Pool) "
                      "sending pre-encoded requests, about 0.1 ms of CPU a request (httpx cost about 6 ms, as much "
                      "as the server, and starved it of the shared CPUs); "
                      f"{opened['requests']} open-loop requests; mean_batch_records is the batched closed loop's "
                      "(mean_batch_records_whole_run adds the warm-up, open-loop and malformed requests); near 1 it "
                      "would mean the server was bound by per-request work (HTTP parsing, the client), not by the "
                      f"net, so batching could not pay; took {time.time() - t_start:.0f} s in all.")
    emit("serve_load", result)


def _batch_totals(metrics: str) -> tuple[float, float]:
    """(records, batches) of /predict so far, from the server's batch-size histogram."""
    vals = {"sum": 0.0, "count": 0.0}
    for line in metrics.splitlines():
        for k in vals:
            if line.startswith(f'polymodal_batch_size_{k}{{route="/predict"}}'):
                vals[k] = float(line.rsplit(" ", 1)[1])
    return vals["sum"], vals["count"]


if __name__ == "__main__":
    main()
