"""One small pre-trained run on a slice of av-digits, shared by the tests of this folder (read-only)."""

import pytest

TINY = dict(dim=16, epochs=1, batch_size=32, progress=False, fusion={"name": "transformer", "options": {"layers": 1}})


@pytest.fixture(scope="session")
def av_rows():
    from polymodal.datasets import load_av_digits

    return load_av_digits("train", limit=120), load_av_digits("test", limit=20)


@pytest.fixture(scope="session")
def pre_run(av_rows, tmp_path_factory):
    """(PretrainedModel, its run folder): 1 epoch on 120 unlabelled rows."""
    from polymodal.pretrain import pretrain

    out = tmp_path_factory.mktemp("pre") / "run"
    return pretrain(av_rows[0].drop(columns=["digit"]), out=out, **TINY), out
