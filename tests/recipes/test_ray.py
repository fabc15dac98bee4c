"""Ray Train on a real local cluster (``ray.init(num_cpus=2)``, dashboard and usage statistics off, nothing leaves
the machine): ``pm.fit(..., ray_address="auto", workers=2)`` runs the training function on two Ray workers
(Lightning DDP inside Ray's gloo process group) and the driver gets the weights and writes the run folder.

Same tolerance as tests/train/test_ddp.py: identical global batches, per-rank BatchNorm statistics on CPU."""

import os

import pytest

import polymodal as pm

from tests.train.scale_common import reference_run, write_config

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def table(exported_av_digits):
    return exported_av_digits(120)


@pytest.fixture(scope="module")
def cluster():
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.slow  # real extra processes: a Ray cluster
def test_two_ray_workers_train_like_one_process(table, cluster, tmp_path):
    config = write_config(tmp_path)
    train, test = table / "train.parquet", table / "test.parquet"
    one, _ = reference_run(table)
    two = pm.fit(train, "digit", config=config, ray_address="auto", workers=2, out=tmp_path / "ray", progress=False)
    training = two.info["training"]
    assert training["world_size"] == 2 and training["contrastive_gather"] is True
    assert training["ray"] == {"workers": 2, "address": "auto"}
    assert ray.is_initialized()  # the cluster it joined is left running

    h1, h2 = one.info["training"]["history"], training["history"]
    assert len(h1) == len(h2) == 4
    for a, b in zip(h1, h2):
        for key in ("train_loss", "val_loss"):
            assert abs(a[key] - b[key]) <= 0.03 * abs(a[key]), (key, a, b)
    loaded = pm.load(tmp_path / "ray")  # the driver wrote the run folder
    acc1, acc2 = (m.evaluate(test, metrics=["accuracy"], subsets=False, progress=False)["metrics"]["accuracy"]
                  for m in (one, loaded))
    assert abs(acc1 - acc2) <= 0.05, (acc1, acc2)


def test_ray_options_are_checked_before_the_table_is_read(tmp_path):
    with pytest.raises(pm.PolymodalError, match="ray_address"):
        pm.fit(tmp_path / "missing.parquet", "digit", workers=2)
    with pytest.raises(pm.PolymodalError, match="does not resume"):
        pm.fit(tmp_path / "missing.parquet", "digit", ray_address="local", resume=True)
