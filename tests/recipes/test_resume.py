"""Crash-safe resume: a real ``polymodal fit`` process is killed with SIGKILL at a random step, ``--resume``
continues it from ``<out>/checkpoints/last.ckpt``, and the final weights equal those of an uninterrupted run with
the same seed, bitwise (CPU, one thread). A resume with other options or another table is refused."""

import os
import random
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch

import polymodal as pm
from polymodal.train.checkpoint import ResumeError

from tests.train.scale_common import (
    cli_env, fit_command, history, reference_run, run_fit, weights, write_config,
)

STEPS = 4 * 6  # 4 epochs of 6 global batches


@pytest.fixture(scope="module")
def table(exported_av_digits):
    return exported_av_digits(120)


def _step(ckpt) -> int:
    try:  # the file is replaced atomically: an open one is always a complete checkpoint
        return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])
    except FileNotFoundError:
        return -1


def kill_at_random_step(cmd, ckpt, rng: random.Random, deadline_s: float = 240) -> int:
    """Start ``cmd``, SIGKILL it at a random instant after its checkpoint reached a random step; that step."""
    target = rng.randint(2, STEPS - 4)
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.monotonic()
        while _step(ckpt) < target:
            assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before step {target}"
            assert time.monotonic() - t0 < deadline_s, "training too slow to reach the kill point"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.15))  # anywhere inside the next step, or inside the next checkpoint write
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return target


@pytest.mark.slow  # real extra processes: kill + resume
def test_sigkill_then_resume_matches_an_uninterrupted_run_bitwise(table, tmp_path):
    train = table / "train.parquet"
    config = write_config(tmp_path, checkpoint_every_n_steps=1)
    ref, ref_run = reference_run(table)  # the same options, without the per-step checkpoints

    out, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    seed = random.randrange(1 << 30)
    target = kill_at_random_step(fit_command(train, out, config), ckpt, random.Random(seed))
    killed_at = _step(ckpt)
    assert target <= killed_at < STEPS, (seed, target, killed_at)
    assert not (out / "weights.safetensors").exists()  # it died before writing a run

    # a resume with another option, or another table, is refused before training
    with pytest.raises(ResumeError, match=r"train\.lr: 0\.005 then, 0\.004 now"):
        pm.fit(train, "digit", config=config, lr=0.004, out=out, resume=True, progress=False)
    fewer = pd.read_parquet(train).iloc[:100]  # the same files less 20 rows, paths made absolute
    for col in ("image", "audio"):
        fewer[col] = [str(table / p) for p in fewer[col]]
    with pytest.raises(ResumeError, match="table differs"):
        pm.fit(fewer, "digit", config=config, out=out, resume=True, progress=False)
    assert ckpt.exists()  # the refusals left the checkpoint alone

    res = run_fit(train, out, config, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = weights(ref_run), weights(out)
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"killed at step {killed_at} (seed {seed}): {len(diff)} tensors differ, e.g. {diff[:3]}"
    # every epoch's validation ran once, on the same weights (a skipped or repeated validation would show here)
    assert len(ref.info["training"]["history"]) == len(history(out)) == 4
    for h1, h2 in zip(ref.info["training"]["history"], history(out)):
        assert (h1["epoch"], h1["val_loss"], h1["val_acc"]) == (h2["epoch"], h2["val_loss"], h2["val_acc"])
    assert not ckpt.exists()  # the finished run no longer needs it


def test_resume_without_a_checkpoint_says_so(table, tmp_path):
    config = write_config(tmp_path)
    with pytest.raises(ResumeError, match="nothing to resume"):
        pm.fit(table / "train.parquet", "digit", config=config, out=tmp_path / "empty", resume=True, progress=False)
