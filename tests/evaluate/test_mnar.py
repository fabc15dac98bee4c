import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.errors import PolymodalError
from polymodal.evaluate.mnar import MNARPattern, content_score, dependence, hide_in_frame, missing_rows

LABELS = np.repeat(np.arange(10), 100)


def test_label_pattern_hides_only_the_targeted_classes_at_the_exact_rate():
    p = MNARPattern("audio", rate=0.3, depends_on="label", classes=(0, 1, 2, 3, 4))
    miss = missing_rows(p, len(LABELS), labels=LABELS, n_classes=10, seed=0)
    assert miss.sum() == 300
    assert not miss[LABELS >= 5].any()
    dep = dependence(miss, LABELS)
    mcar = dependence(missing_rows(MNARPattern("audio", 0.3, "random"), len(LABELS), seed=0), LABELS)
    assert dep["mutual_info"] > 0.2 > 0.02 > mcar["mutual_info"]  # the pattern carries label information; MCAR not
    assert dep["per_class"][0] == pytest.approx(0.6, abs=0.15)


def test_shifted_label_pattern_targets_the_complement():
    p = MNARPattern("audio", rate=0.3, depends_on="label", classes=(0, 1, 2, 3, 4))
    s = p.shifted(10)
    assert s.classes == (5, 6, 7, 8, 9)
    miss = missing_rows(s, len(LABELS), labels=LABELS, n_classes=10, seed=0)
    assert miss.sum() == 300 and not miss[LABELS < 5].any()


def test_strength_mixes_in_mcar_and_keeps_the_rate():
    p = MNARPattern("a", rate=0.3, depends_on="label", classes=(0,), strength=0.2)
    miss = missing_rows(p, len(LABELS), labels=LABELS, n_classes=10, seed=1)
    assert miss.sum() == 300
    assert miss[LABELS == 0].mean() > miss[LABELS != 0].mean()
    with pytest.raises(PolymodalError, match="lower the rate"):
        missing_rows(MNARPattern("a", rate=0.5, classes=(0,)), len(LABELS), labels=LABELS, n_classes=10)


def test_content_pattern_hides_the_highest_scores_and_its_shift_the_lowest():
    scores = np.random.default_rng(0).random(1000)
    p = MNARPattern("image", rate=0.2, depends_on="content")
    miss = missing_rows(p, 1000, scores=scores)
    assert miss.sum() == 200 and scores[miss].min() > scores[~miss].max()
    low = missing_rows(p.shifted(), 1000, scores=scores)
    assert scores[low].max() < scores[~low].min()


def test_content_scores_per_kind():
    wave = torch.zeros(3, 100)
    wave[0, :50] = 1.0
    wave[1] = 0.5
    s = content_score("audio", {"wave": wave, "length": torch.tensor([50, 100, 100])})
    assert np.allclose(s, [1.0, 0.5, 0.0])
    assert np.allclose(content_score("image", {"pixels": torch.full((2, 1, 4, 4), 0.25)}), 0.25)
    with pytest.raises(PolymodalError, match="no content score"):
        content_score("video", {})


def test_hide_in_frame_empties_cells_and_keeps_the_rest():
    f = pd.DataFrame({"img": ["a.png", "b.png", "c.png"], "x": [1, 2, 3]})
    out = hide_in_frame(f, ["img"], np.array([False, True, False]))
    assert out["img"].tolist() == ["a.png", None, "c.png"] and f["img"].tolist() == ["a.png", "b.png", "c.png"]
    with pytest.raises(ValueError, match="rows"):
        hide_in_frame(f, ["img"], np.array([True]))


def test_pattern_validation():
    with pytest.raises(PolymodalError, match="depends_on"):
        MNARPattern("a", depends_on="weather")
    with pytest.raises(PolymodalError, match="rate"):
        MNARPattern("a", rate=1.5)
