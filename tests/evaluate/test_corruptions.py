import numpy as np
import pytest
import torch

from polymodal.data.dataset import DecodedDataset
from polymodal.evaluate.corruptions import CORRUPTIONS, corrupt_dataset, corruption_for, with_presence

RNG = lambda s=0: np.random.default_rng(s)  # noqa: E731


def test_gaussian_on_images_stays_in_range_and_skips_absent_rows():
    x = torch.rand(6, 1, 8, 8)
    present = torch.tensor([True, False, True, True, False, True])
    out = CORRUPTIONS.get("gaussian")({"pixels": x}, present, 0.5, RNG())["pixels"]
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[~present], x[~present])
    assert (out[present] - x[present]).abs().mean() > 0.1


def test_gaussian_noise_scale_on_standardised_series():
    x = torch.zeros(4, 500, 2)
    length = torch.tensor([500, 250, 500, 0])
    out = CORRUPTIONS.get("gaussian")({"series": x, "length": length}, torch.ones(4, dtype=torch.bool), 0.3, RNG())["series"]
    assert torch.equal(out[1, 250:], x[1, 250:]) and torch.equal(out[3], x[3])  # padding untouched
    assert abs(float(out[0].std()) - 0.3) < 0.03


def test_occlusion_zeroes_one_square_of_the_requested_side():
    x = torch.ones(3, 1, 20, 20)
    out = CORRUPTIONS.get("occlusion")({"pixels": x}, torch.tensor([True, True, False]), 0.5, RNG())["pixels"]
    assert [int((out[i] == 0).sum()) for i in range(3)] == [100, 100, 0]


def test_audio_noise_level_is_the_rms_ratio():
    t = torch.arange(8000) / 8000
    wave = torch.stack([torch.sin(2 * torch.pi * 440 * t), 0.1 * torch.sin(2 * torch.pi * 300 * t)])
    wave[1, 4000:] = 0
    length = torch.tensor([8000, 4000])
    out = CORRUPTIONS.get("audio_noise")({"wave": wave, "length": length}, torch.ones(2, dtype=torch.bool), 0.5, RNG())
    noise = out["wave"] - wave
    for i, n in enumerate(length.tolist()):
        ratio = noise[i, :n].pow(2).mean().sqrt() / wave[i, :n].pow(2).mean().sqrt()
        assert abs(float(ratio) - 0.5) < 0.03
    assert torch.equal(out["wave"][1, 4000:], wave[1, 4000:])


def test_token_drop_keeps_order_and_shrinks_lengths():
    ids = torch.arange(2, 202).repeat(3, 1)
    length = torch.tensor([200, 100, 0])
    out = CORRUPTIONS.get("token_drop")({"ids": ids, "length": length}, torch.tensor([True, True, True]), 0.25, RNG())
    assert 130 < int(out["length"][0]) < 170 and int(out["length"][2]) == 0
    kept = out["ids"][0, : out["length"][0]]
    assert torch.all(kept[1:] > kept[:-1])  # original order
    assert torch.all(out["ids"][0, out["length"][0]:] == 0)  # padding re-made


def test_feature_drop_hides_masks():
    arrays = {"num": torch.ones(50, 4), "num_mask": torch.ones(50, 4, dtype=torch.bool),
              "cat": torch.full((50, 2), 3), "cat_mask": torch.ones(50, 2, dtype=torch.bool)}
    out = CORRUPTIONS.get("feature_drop")(arrays, torch.ones(50, dtype=torch.bool), 0.5, RNG())
    hidden = ~out["num_mask"]
    assert 0.35 < float(hidden.float().mean()) < 0.65
    assert torch.all(out["num"][hidden] == 0) and torch.all(out["cat"][~out["cat_mask"]] == 0)


def test_corruption_for_checks_the_kind():
    assert corruption_for("audio") == "audio_noise"
    assert corruption_for("image", "occlusion") == "occlusion"
    with pytest.raises(ValueError, match="does not apply to audio"):
        corruption_for("audio", "occlusion")
    with pytest.raises(KeyError):
        corruption_for("image", "nope")


def _ds(n=10):
    decoded = {"a": ({"num": np.ones((n, 2), np.float32), "num_mask": np.ones((n, 2), bool),
                      "cat": np.zeros((n, 0), np.int64), "cat_mask": np.zeros((n, 0), bool)}, np.ones(n, bool)),
               "b": ({"num": np.ones((n, 1), np.float32), "num_mask": np.ones((n, 1), bool),
                      "cat": np.zeros((n, 0), np.int64), "cat_mask": np.zeros((n, 0), bool)}, np.arange(n) % 2 == 0)}
    return DecodedDataset(decoded, np.arange(n) % 3)


def test_corrupt_dataset_copies_one_modality_and_level_zero_is_identity():
    ds = _ds()
    assert corrupt_dataset(ds, "a", "tabular", 0.0) is ds
    noisy = corrupt_dataset(ds, "a", "tabular", 1.0, seed=3)
    assert noisy.arrays["b"] is ds.arrays["b"] and torch.equal(ds.arrays["a"]["num"], torch.ones(10, 2))
    assert not torch.equal(noisy.arrays["a"]["num"], ds.arrays["a"]["num"])
    again = corrupt_dataset(ds, "a", "tabular", 1.0, seed=3)
    assert torch.equal(noisy.arrays["a"]["num"], again.arrays["a"]["num"])  # seeded


def test_with_presence_hides_on_a_view_by_row_order():
    view = _ds().subset(np.array([7, 2, 4]))
    hidden = with_presence(view, {"a": np.array([True, False, True])})
    assert hidden.present["a"].tolist() == [True, True, False, True, True, True, True, True, True, True]
    hidden_b = with_presence(view, {"b": np.array([True, True, True])})
    assert torch.equal(hidden_b.present["b"], view.present["b"])  # hiding cannot make a modality present
    with pytest.raises(ValueError, match="expected"):
        with_presence(view, {"a": np.ones(10, bool)})
