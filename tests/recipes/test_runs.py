"""``recipes/runs.py`` and ``pm.load``: one run-folder format, read once, clear errors, nothing unpickled."""

import hashlib
import json
import pickle
import shutil
import traceback

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import polymodal as pm
from polymodal.data.schema import ModalitySpec, Schema
from polymodal.errors import PolymodalError
from polymodal.recipes.model import Model
from polymodal.recipes.runs import MANIFEST, NEEDED, RUN_TYPES, load_weights, read_run, run_type, write_run
from tests.xor_data import GROUPS, xor_table


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny fitted model saved once; tests work on copies of its folder."""
    folder = tmp_path_factory.mktemp("runs") / "run"
    model = pm.fit(xor_table(24), "y", groups=GROUPS, fusion="concat", epochs=1, dim=16, progress=False, out=folder)
    return model, folder


@pytest.fixture
def run(saved, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(saved[1], dst)
    return dst


def reseal(run) -> None:
    """Rewrite manifest.json for the files as they are now, so a test reaches the checks behind the sha256 one."""
    m = json.loads((run / MANIFEST).read_text())
    m["sha256"] = {n: hashlib.sha256((run / n).read_bytes()).hexdigest() for n in m["sha256"] if (run / n).exists()}
    (run / MANIFEST).write_text(json.dumps(m))


def _clear(exc: BaseException) -> None:
    """A clear error: raised on purpose, with no chained traceback from inside json / safetensors / torch."""
    assert isinstance(exc, PolymodalError)
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    assert "Traceback" not in str(exc)


def test_write_read_round_trip(tmp_path):
    schema = Schema({"t": ModalitySpec("t", "tabular", ["x1", "x2"], {"numeric": {"x1": [0.0, 1.0]}})}, label="y",
                    classes=["a", "b"])
    net = torch.nn.Linear(3, 2)
    config = {"run_type": "model", "model": {"dim": 8}, "train": {"epochs": 1}}
    info = {"n_train": 5, "history": [{"val_acc": 0.5}]}
    write_run(tmp_path / "r", config, schema, net, info)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted([*NEEDED, "report.json", MANIFEST])
    cfg, schema2, info2 = read_run(tmp_path / "r")
    assert cfg == config and info2 == info and schema2 == schema
    assert run_type(tmp_path / "r") == "model"
    other = load_weights(tmp_path / "r", torch.nn.Linear(3, 2))
    torch.testing.assert_close(other.weight, net.weight)
    with pytest.raises(PolymodalError, match="it is a file"):
        (tmp_path / "f").write_text("")
        write_run(tmp_path / "f", config, schema, net, info)


def test_saved_model_loads_with_its_configs_and_run_type(saved):
    model, folder = saved
    assert run_type(folder) == "model"
    loaded = pm.load(folder)
    assert set(RUN_TYPES.names()) >= {"model", "align"}  # pm.load registers every recipe's run type
    assert type(loaded) is Model and loaded.cfg == model.cfg and loaded.train_cfg == model.train_cfg
    assert loaded.info["n_train"] == model.info["n_train"]
    t = xor_table(10, seed=4)
    np.testing.assert_allclose(loaded.predict(t).filter(like="proba_").to_numpy(),
                               model.predict(t).filter(like="proba_").to_numpy(), atol=1e-6)


def test_report_is_optional(run):
    (run / "report.json").unlink()
    with pytest.raises(PolymodalError, match=r"report\.json is missing but listed in manifest\.json.*modified or torn"):
        pm.load(run)
    (run / MANIFEST).unlink()  # a run written before manifests: loads unchecked
    assert pm.load(run).info == {}


def test_a_hand_edited_file_is_refused_as_modified_or_torn(run, saved):
    schema = json.loads((run / "schema.json").read_text())
    schema["classes"] = schema["classes"][::-1]
    (run / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(PolymodalError, match=r"schema\.json does not match its sha256 in manifest\.json: the run "
                                             r"folder .* was modified or torn") as e:
        pm.load(run)
    _clear(e.value)


@pytest.mark.parametrize("absent", NEEDED)
def test_a_missing_file_is_named(run, absent):
    (run / absent).unlink()
    with pytest.raises(PolymodalError, match=rf"not a saved polymodal run: missing \['{absent}'\]") as e:
        pm.load(run)
    _clear(e.value)


def test_not_a_folder(tmp_path):
    with pytest.raises(PolymodalError, match="is not a run folder") as e:
        pm.load(tmp_path / "nowhere")
    _clear(e.value)
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(PolymodalError, match="is not a run folder"):
        pm.load(tmp_path / "file.json")


@pytest.mark.parametrize("name,text,match", [
    ("config.json", "{not json", "unreadable config"),
    ("config.json", "[1, 2]", "holds a list, not an object with model / train sections"),
    ("config.json", '{"model": {}}', "config.json has no 'train' key"),
    ("config.json", '{"train": {}}', "config.json has no 'model' key"),
    ("schema.json", '{"modalities": [{"name": "a"}]}', "unreadable config, schema or report"),
    ("schema.json", '{"modalities": [{"name": "a", "kind": "smell", "columns": ["x"]}]}', "unknown kind 'smell'"),
    ("report.json", "\x00\x01", "unreadable"),
])
def test_corrupt_json_is_a_clear_error(run, name, text, match):
    (run / name).write_text(text)
    with pytest.raises(PolymodalError, match=rf"{name} does not match its sha256.*modified or torn"):
        pm.load(run)
    reseal(run)
    with pytest.raises(PolymodalError, match=match) as e:
        pm.load(run)
    _clear(e.value)


def test_a_config_that_no_longer_validates_names_the_file_and_versions(run):
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["dim"] = 30
    (run / "config.json").write_text(json.dumps(cfg))
    reseal(run)
    with pytest.raises(PolymodalError, match=r"config\.json: dim must be a positive multiple of 4.*saved by polymodal"):
        pm.load(run)


def test_corrupt_or_mismatched_weights_are_a_clear_error(run):
    (run / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    reseal(run)
    with pytest.raises(PolymodalError, match=r"cannot load .*weights\.safetensors") as e:
        pm.load(run)
    _clear(e.value)
    save_file({"something.else": torch.zeros(2)}, str(run / "weights.safetensors"))
    reseal(run)
    with pytest.raises(PolymodalError, match=r"cannot load .*weights\.safetensors") as e:
        pm.load(run)
    _clear(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_a_run_type_of_a_higher_layer_says_how_to_load_it(run):
    cfg = json.loads((run / "config.json").read_text())
    cfg["run_type"] = "pretrain"
    (run / "config.json").write_text(json.dumps(cfg))
    reseal(run)
    with pytest.raises(PolymodalError, match=r"type 'pretrain': load it with polymodal\.pretrain\.run\.PretrainedModel"):
        pm.load(run)


def test_an_unknown_run_type_is_a_clear_error(run):
    cfg = json.loads((run / "config.json").read_text())
    cfg["run_type"] = "hologram"
    (run / "config.json").write_text(json.dumps(cfg))
    reseal(run)
    assert run_type(run) == "hologram"
    # the list holds every type whatever was imported before (lm registers itself when polymodal.lm loads)
    with pytest.raises(PolymodalError, match=r"run holds a run of type 'hologram'.*cannot load; it loads align, lm, "
                                             r"model, pretrain$") as e:
        pm.load(run)
    _clear(e.value)
    frames = traceback.extract_tb(e.value.__traceback__)
    assert all("site-packages" not in f.filename for f in frames)


def test_loading_a_run_as_the_wrong_estimator_says_what_it_holds(run):
    from polymodal.recipes.aligned import AlignedModel

    with pytest.raises(PolymodalError, match=r"holds a 'model' run, not a 'align' run; load it with pm.load"):
        AlignedModel.load(run)


class _Payload:
    """Unpickling this would create a marker file: the proof that something was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_load_never_unpickles_and_never_runs_code_from_the_folder(run, tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    # executable-looking content in every JSON file is just data
    cfg = json.loads((run / "config.json").read_text())
    cfg["polymodal_version"] = "__import__('os').system('touch PWNED')"
    (run / "config.json").write_text(json.dumps(cfg))
    info = json.loads((run / "report.json").read_text())
    info["note"] = {"__reduce__": "os.system", "py/object": "builtins.eval", "!!python/object/apply:os.system": []}
    (run / "report.json").write_text(json.dumps(info))
    reseal(run)
    # pickles lying next to the weights are never opened
    for name in ("model.pkl", "weights.pt", "pytorch_model.bin", "__init__.py"):
        (run / name).write_bytes(pickle.dumps(_Payload(marker)))

    def refuse(*a, **k):
        raise AssertionError("load must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = pm.load(run)
    assert loaded.info["note"]["__reduce__"] == "os.system"
    assert not marker.exists()
    # a pickle in place of the weights is refused, not executed
    monkeypatch.undo()
    (run / "weights.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    reseal(run)
    with pytest.raises(PolymodalError, match="cannot load"):
        pm.load(run)
    assert not marker.exists()
