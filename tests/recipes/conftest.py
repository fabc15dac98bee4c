import numpy as np
import pandas as pd
import pytest

COLORS = ["red", "green", "blue", "gray"]


def paired_table(n: int = 160, seed: int = 0, d: int = 6) -> pd.DataFrame:
    """Two tabular views of one latent vector (b = rotation of a + noise) and a class from the latent's argmax."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    rot = np.linalg.qr(np.random.default_rng(99).normal(size=(d, d)))[0]
    b = z @ rot + 0.05 * rng.normal(size=(n, d))
    frame = {f"a{i}": z[:, i] for i in range(d)}
    frame.update({f"b{i}": b[:, i] for i in range(d)})
    frame["cls"] = np.argmax(z[:, :4], 1)
    return pd.DataFrame(frame)


GROUP = {"a": [f"a{i}" for i in range(6)], "b": [f"b{i}" for i in range(6)]}


def text_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A colour name (text) and a noisy 4-d vector that encodes the colour (tabular)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(COLORS), n)
    x = np.eye(len(COLORS))[y] * 3 + 0.3 * rng.normal(size=(n, len(COLORS)))
    df = pd.DataFrame({f"x{i}": x[:, i] for i in range(len(COLORS))})
    df["caption"] = [COLORS[k] for k in y]
    df["label"] = [COLORS[k] for k in y]
    return df


@pytest.fixture
def pairs() -> pd.DataFrame:
    return paired_table()


@pytest.fixture
def captions() -> pd.DataFrame:
    return text_table()
