"""Real-data fixtures for the per-kind processor tests (MNIST PNGs, FSDD WAVs from tests/fixtures/data)."""

import numpy as np
import pytest
from PIL import Image

from ._helpers import N_IMG


@pytest.fixture(scope="module")
def mnist(fixture_data):
    with np.load(fixture_data / "mnist" / "mnist_test.npz") as z:
        return z["images"][:N_IMG], z["labels"][:N_IMG]


@pytest.fixture
def png_dir(tmp_path, mnist):
    d = tmp_path / "imgs"
    d.mkdir()
    for i, a in enumerate(mnist[0]):
        Image.fromarray(a).save(d / f"{i}.png")
    return d


@pytest.fixture(scope="module")
def wav_paths(fixture_data):
    paths = sorted((fixture_data / "fsdd" / "recordings").glob("*_jackson_*.wav"))[:8]
    assert len(paths) == 8, f"FSDD fixture recordings missing from {fixture_data / 'fsdd' / 'recordings'}"
    return paths
