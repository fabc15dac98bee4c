"""The frozen-feature cache: identical features, hits on the second epoch, keys, off switch, concurrency."""

from __future__ import annotations

import os
import threading

import torch

from polymodal.data.schema import ModalitySpec
from polymodal.encoders import ENCODERS
from polymodal.encoders.pretrained.cache import FeatureCache, default_root, open_cache, row_keys


def vision(tiny, **options):
    folder = tiny("vit")
    spec = ModalitySpec("i", "image", ["i"], {"size": [30, 30], "channels": 3})
    torch.manual_seed(0)  # the same projection every time
    return ENCODERS.build("hf_vision", spec, 16, path=str(folder), **options)


def batch(n=6, seed=0):
    return {"pixels": torch.rand(n, 3, 30, 30, generator=torch.Generator().manual_seed(seed))}


def test_second_epoch_hits_and_features_are_identical(tiny, tmp_path):
    enc = vision(tiny)
    assert enc.cache is not None and str(enc.cache.dir).startswith(str(tmp_path / "pm-cache"))
    x, present = batch(), torch.tensor([True, True, False, True, True, True])
    enc.train()  # a training epoch: the frozen backbone still runs in eval mode
    first = enc(x, present)
    assert (enc.cache.hits, enc.cache.misses) == (0, 5)  # absent rows are not encoded
    second = enc(x, present)
    assert (enc.cache.hits, enc.cache.misses) == (5, 5)
    torch.testing.assert_close(first.x, second.x, atol=0, rtol=0)
    # a fresh encoder (new process, say) reads the disk, not its memory, and gets the same features
    again = vision(tiny)
    third = again(x, present)
    assert (again.cache.hits, again.cache.misses) == (5, 0)
    with torch.no_grad():
        uncached, _ = again.features(x)
    torch.testing.assert_close(again.cache.lookup(x, again.features)[0], uncached, atol=0, rtol=0)
    torch.testing.assert_close(first.x, third.x, atol=0, rtol=0)


def test_keys_follow_content_and_model(tiny):
    enc = vision(tiny)
    x = batch(4)
    enc(x, torch.ones(4, dtype=torch.bool))
    y = {"pixels": x["pixels"].clone()}
    y["pixels"][2, 0, 0, 0] += 0.01  # one pixel of one row changed: only that row misses
    enc(y, torch.ones(4, dtype=torch.bool))
    assert (enc.cache.hits, enc.cache.misses) == (3, 5)
    other = vision(tiny, pool="mean")  # another pooling is another model key
    assert other.cache.dir != enc.cache.dir


def test_length_cuts_padding_out_of_the_key():
    a = {"ids": torch.tensor([[5, 6, 0, 0]]), "length": torch.tensor([2])}
    b = {"ids": torch.tensor([[5, 6, 9, 9, 0]]), "length": torch.tensor([2])}
    c = {"ids": torch.tensor([[5, 7, 0, 0]]), "length": torch.tensor([2])}
    assert row_keys(a) == row_keys(b) != row_keys(c)


def test_off_switches(tiny, monkeypatch, tmp_path):
    assert vision(tiny, cache=False).cache is None
    monkeypatch.setenv("POLYMODAL_FEATURE_CACHE", "0")
    assert vision(tiny).cache is None
    assert vision(tiny, cache=str(tmp_path / "mine")).cache.dir.parent == tmp_path / "mine"  # explicit folder wins
    monkeypatch.delenv("POLYMODAL_FEATURE_CACHE")
    assert vision(tiny, trainable=True).cache is None  # a trainable backbone is never cached
    monkeypatch.delenv("POLYMODAL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "polymodal" / "features"


def test_corrupt_entries_are_recomputed(tmp_path):
    cache = FeatureCache(tmp_path, "m")
    calls = []

    def compute(inputs):
        calls.append(len(inputs["v"]))
        return inputs["v"][:, None, :] * 2, torch.ones(len(inputs["v"]), 1, dtype=torch.bool)

    v = {"v": torch.arange(6.0).view(3, 2)}
    cache.lookup(v, compute)
    files = sorted(cache.dir.rglob("*.npz"))
    assert len(files) == 3
    files[0].write_bytes(b"garbage")
    fresh = FeatureCache(tmp_path, "m")
    x, _ = fresh.lookup(v, compute)
    assert calls == [3, 1] and torch.equal(x[:, 0], v["v"] * 2)


def test_concurrent_writers_and_readers(tmp_path):
    """Threads writing and reading the same keys never see a partial entry (writes are rename-atomic)."""
    v = {"v": torch.randn(16, 8, generator=torch.Generator().manual_seed(0))}

    def compute(inputs):
        return inputs["v"][:, None, :].repeat(1, 3, 1), torch.ones(len(inputs["v"]), 3, dtype=torch.bool)

    want = compute(v)[0]
    errors = []

    def work():
        try:
            for _ in range(5):
                x, _ = FeatureCache(tmp_path, "shared").lookup(v, compute)  # a new cache: reads the disk
                assert torch.equal(x, want)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not [f for f in os.listdir(next(tmp_path.iterdir())) if f.endswith(".tmp")]
    assert len(list(tmp_path.rglob("*.npz"))) == 16


def test_open_cache_options(tmp_path):
    assert open_cache(False, "m") is None
    assert isinstance(open_cache(str(tmp_path), "m"), FeatureCache)


def test_text_tokens_from_the_cache_match_the_batch_width(tiny):
    spec = ModalitySpec("t", "text", ["t"], {"max_len": 12})
    enc = ENCODERS.build("hf_text", spec, 16, path=str(tiny("bert")), pool="tokens").eval()
    ids = torch.tensor([[2, 6, 7, 3, 0, 0, 0, 0]])
    length = torch.tensor([4])
    narrow = enc({"ids": ids[:, :5], "length": length}, torch.ones(1, dtype=torch.bool))
    wide = enc({"ids": ids, "length": length}, torch.ones(1, dtype=torch.bool))  # same row key: a cache hit
    assert enc.cache.hits == 1 and narrow.x.shape[1] == 5 and wide.x.shape[1] == 8
    torch.testing.assert_close(wide.x[:, :4], narrow.x[:, :4], atol=1e-6, rtol=0)
    assert wide.mask[0].tolist() == [True] * 4 + [False] * 4
