"""Tiny runs trained on slices of the bundled datasets, real PNG / WAV files, and a real uvicorn server process."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

TINY = dict(epochs=1, dim=16, batch_size=32, progress=False, seed=0)
CLI = "import sys; from polymodal.cli import app; sys.argv[0] = 'polymodal'; app()"


def wav_bytes(cell: dict) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(cell["array"]), int(cell["sampling_rate"]), format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="session")
def av_run(tmp_path_factory) -> Path:
    """An av-digits (image + audio -> digit) run with a shared space too (``align="clip"``): /predict and /embed."""
    import polymodal as pm
    from polymodal.datasets import load_av_digits

    out = tmp_path_factory.mktemp("serve") / "av"
    pm.fit(load_av_digits("train", limit=100), "digit", align="clip", out=out, **TINY)
    return out


@pytest.fixture(scope="session")
def av_model(av_run):
    import polymodal as pm

    return pm.load(av_run)


@pytest.fixture(scope="session")
def av_files() -> list[tuple[bytes, bytes]]:
    """(PNG bytes, WAV bytes) of the first 4 av-digits test rows: what a client uploads."""
    from polymodal.datasets import load_av_digits

    test = load_av_digits("test", limit=4)
    return [(png, wav_bytes(a)) for png, a in zip(test["image"], test["audio"])]


@pytest.fixture(scope="session")
def motion_run(tmp_path_factory) -> Path:
    """BasicMotions (two time series + a numeric and a categorical feature -> activity): the JSON-only kinds."""
    import polymodal as pm
    from polymodal.datasets import load_basicmotions

    frame = motion_frame(load_basicmotions("train"))
    out = tmp_path_factory.mktemp("serve") / "motion"
    pm.fit(frame, "activity", groups={"stats": ["peak", "hand"]}, out=out, **TINY)
    return out


def motion_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The BasicMotions table plus ``peak`` (the largest |acceleration| of the recording, numeric) and ``hand``
    (whether it is larger than the median: a categorical string), so every JSON kind is served."""
    peak = np.array([float(np.abs(np.asarray(a)).max()) for a in frame["accel"]])
    return frame.assign(peak=peak, hand=np.where(peak > np.median(peak), "high", "low"))


@pytest.fixture(scope="session")
def emoji_run(tmp_path_factory) -> Path:
    """Emoji (image + name text -> category): text by JSON, images by upload."""
    import polymodal as pm
    from polymodal.datasets import load_emoji

    out = tmp_path_factory.mktemp("serve") / "emoji"
    pm.fit(load_emoji("train", limit=100), "category", out=out, **TINY)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``polymodal serve`` process on 127.0.0.1; ``url``, ``proc``; its log in ``log_path``."""

    def __init__(self, run: Path, *args: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", CLI, "serve", str(run), "--port", str(self.port),
                                      "--threads", "1", "--log-level", "warning", *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 90.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}): {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the server was not ready within {timeout:.0f} s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-4000:]

    def stop(self) -> int:
        """Ctrl-C (SIGINT), as a user stops it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
