"""The shared-embedding CLI (``cli/align.py``, ``cli/index.py``) on real data: align -> embed -> index build ->
search -> evaluate -> zero-shot.

av-digits (exported to PNG / WAV / Parquet) for audio <-> image; a slice of the emoji set for text."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli.app import app
from tests.cli.helpers import flat

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(exported_av_digits):
    return exported_av_digits(60)


def test_align_embed_index_search_evaluate(exported, tmp_path):
    run, idx = tmp_path / "emb", tmp_path / "idx"
    res = runner.invoke(app, ["align", str(exported / "train.parquet"), "--modalities", "image,audio", "--label", "digit",
                              "--objective", "siglip", "--out", str(run), "--epochs", "2", "--dim", "32",
                              "--embed-dim", "16", "--batch-size", "32"])
    assert res.exit_code == 0, res.output
    assert json.loads((run / "config.json").read_text())["run_type"] == "align"

    res = runner.invoke(app, ["embed", str(run), str(exported / "test.parquet"), "--out", str(tmp_path / "e.parquet")])
    assert res.exit_code == 0, res.output
    emb = pd.read_parquet(tmp_path / "e.parquet")
    assert list(emb.columns) == ["emb_image", "emb_audio", "emb_fused"] and len(emb) == 60
    assert np.allclose(np.linalg.norm(np.stack(emb.emb_image), axis=1), 1, atol=1e-5)

    test = pd.read_parquet(exported / "test.parquet")
    test["split"] = ["a" if i % 2 else "b" for i in range(len(test))]
    test.to_parquet(exported / "test_meta.parquet")
    res = runner.invoke(app, ["index", "build", str(run), str(exported / "test_meta.parquet"), "--index", str(idx)])
    assert res.exit_code == 0, res.output
    assert "60 rows (60 added" in flat(res)
    res = runner.invoke(app, ["index", "build", str(run), str(exported / "test_meta.parquet"), "--index", str(idx)])
    assert "0 added, 0 updated, 60 unchanged" in flat(res)

    query = exported / test.audio.iloc[0]
    res = runner.invoke(app, ["search", str(idx), "--audio", str(query), "--top-k", "3", "--where", "split = 'a'", "--json"])
    assert res.exit_code == 0, res.output
    hits = [json.loads(line) for line in res.output.strip().splitlines()]
    assert len(hits) == 3 and all(h["split"] == "a" for h in hits) and "image" in hits[0]
    res = runner.invoke(app, ["search", str(idx), "--text", "seven"])
    assert res.exit_code == 2 and "no text modality" in flat(res)
    res = runner.invoke(app, ["search", str(idx), "--audio", str(query), "--where", "nonexistent = 1"])
    assert res.exit_code == 2 and "--where" in flat(res)

    res = runner.invoke(app, ["evaluate", str(run), str(exported / "test.parquet"), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert set(rep["retrieval"]) == {"image->audio", "audio->image"}
    assert {"instance", "class"} <= set(rep["retrieval"]["audio->image"])
    assert "before" in rep["modality_gap"] and "modality gap image|audio" in flat(res)

    res = runner.invoke(app, ["zero-shot", str(run), str(exported / "test.parquet"), "--support",
                              str(exported / "train.parquet"), "--label", "digit", "--modality", "audio",
                              "--out", str(tmp_path / "z.csv")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "z.csv")) == 60
    res = runner.invoke(app, ["zero-shot", str(run), str(exported / "test.parquet"), "--labels", "a,b"])
    assert res.exit_code == 2 and "no text modality" in flat(res)


def _png(img) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_text_query_and_zero_shot_labels_on_emoji(fixture_data, tmp_path):
    # the fixture holds only the 80 emoji this test uses: every 4th of the "Flags" and "Food & Drink" rows of
    # emoji_google_64.npz, first 80 (its `rows` key gives their source indices; see tests/fixtures/data/README.md)
    z = np.load(fixture_data / "emoji" / "emoji_google_64_rows.npz")
    assert len(z["rows"]) == 80 and set(z["category"]) == {"Flags", "Food & Drink"}
    df = pd.DataFrame({"image": [_png(img) for img in z["images"]], "name": z["name"].tolist(),
                       "category": z["category"].tolist()})
    df.to_parquet(tmp_path / "emoji.parquet")
    run = tmp_path / "emb"
    res = runner.invoke(app, ["align", str(tmp_path / "emoji.parquet"), "--kinds", "name=text", "--label", "category",
                              "--out", str(run), "--epochs", "2", "--dim", "32", "--embed-dim", "16"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["zero-shot", str(run), str(tmp_path / "emoji.parquet"), "--labels", "flag,food",
                              "--templates", "{}|a {} emoji", "--out", str(tmp_path / "z.jsonl")])
    assert res.exit_code == 0, res.output
    z = pd.read_json(tmp_path / "z.jsonl", lines=True)
    assert set(z.prediction) <= {"flag", "food"} and {"score_flag", "score_food"} <= set(z.columns)
    res = runner.invoke(app, ["index", "build", str(run), str(tmp_path / "emoji.parquet"), "--index", str(tmp_path / "i")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", str(tmp_path / "i"), "--text", "flag", "-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert len(res.output.strip().splitlines()) == 2


def test_align_errors(exported, tmp_path):
    res = runner.invoke(app, ["align", str(exported / "train.parquet"), "--modalities", "image", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "at least 2 modalities" in flat(res)
    res = runner.invoke(app, ["align", str(exported / "train.parquet"), "--objective", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "objective 'nope'" in flat(res) and "siglip" in res.stderr
    res = runner.invoke(app, ["align", str(exported / "train.parquet"), "--use", "image,text", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown modalities ['text']" in " ".join(res.stderr.split())
    res = runner.invoke(app, ["align", str(exported / "train.parquet"), "--use", "image,audio", "--lock", "audio",
                              "--epochs", "1", "--out", str(tmp_path / "x")])  # the built-in audio encoder trains
    assert res.exit_code == 2 and "not a frozen pretrained tower" in flat(res), res.output
    res = runner.invoke(app, ["search", str(tmp_path / "nothing"), "--text", "x"])
    assert res.exit_code == 2 and "not a polymodal index" in flat(res)


def test_fit_with_align_then_embed(exported, tmp_path):
    run = tmp_path / "m"
    res = runner.invoke(app, ["fit", str(exported / "train.parquet"), "--label", "digit", "--fusion", "concat",
                              "--out", str(run), "--epochs", "1", "--dim", "32", "--align", "clip", "--align-weight", "0.5"])
    assert res.exit_code == 0, res.output
    spec = json.loads((run / "config.json").read_text())["model"]["align"]
    assert spec["objective"]["name"] == "clip" and spec["weight"] == 0.5
    res = runner.invoke(app, ["embed", str(run), str(exported / "test.parquet"), "--out", str(tmp_path / "e.jsonl")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_json(tmp_path / "e.jsonl", lines=True)) == 60
