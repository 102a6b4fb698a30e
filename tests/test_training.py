import json

import numpy as np
import pytest

from conftest import RUN_FILES
from digitlab.config import TrainConfig
from digitlab.data import split
from digitlab.errors import RunError
from digitlab.runs import load_run
from digitlab.training import train


@pytest.fixture(scope="module")
def tiny_run(small_mnist, tmp_path_factory):
    config = TrainConfig(epochs=2, optimizer="adam", validation_size=1000, seed=3)
    path = tmp_path_factory.mktemp("runs") / "tiny"
    return train(config, small_mnist, run_dir=path, verbose=0)


def test_run_folder_holds_everything(tiny_run):
    assert {p.name for p in tiny_run.path.iterdir()} == RUN_FILES
    info = json.loads((tiny_run.path / "run.json").read_text())
    assert info["params"] == 101_770
    assert info["data"]["eval_set"] == "validation" and info["data"]["eval_size"] == 1000
    assert {"keras", "numpy", "python", "keras_backend"} <= set(info["versions"])
    history = json.loads((tiny_run.path / "history.json").read_text())
    assert len(history["loss"]) == 2 and len(history["val_accuracy"]) == 2
    assert len(history["epoch_seconds"]) == 2
    metrics = json.loads((tiny_run.path / "metrics.json").read_text())
    assert np.array(metrics["confusion_matrix"]).sum() == 1000
    assert 0.5 < metrics["accuracy"] <= 1.0
    # No temporary folder is left beside the run.
    assert [p.name for p in tiny_run.path.parent.iterdir()] == ["tiny"]


def test_saved_run_predicts_exactly_like_the_trained_model(tiny_run, small_mnist):
    x = split(small_mnist, "tutorial", seed=3, validation_size=1000).x_eval[:200]
    loaded = load_run(tiny_run.path)
    assert loaded.config == tiny_run.config
    assert loaded.params == 101_770
    np.testing.assert_array_equal(loaded.predict_proba(x), tiny_run.predict_proba(x))


def test_seeded_runs_repeat_exactly(small_mnist, tmp_path):
    config = TrainConfig(epochs=1, validation_size=1000, seed=11, hidden=(32,))
    a = train(config, small_mnist, run_dir=tmp_path / "a", verbose=0, plots_enabled=False)
    b = train(config, small_mnist, run_dir=tmp_path / "b", verbose=0, plots_enabled=False)
    assert a.metrics["loss"] == b.metrics["loss"]
    assert a.metrics["confusion_matrix"] == b.metrics["confusion_matrix"]
    assert a.history["loss"] == b.history["loss"]


def test_existing_run_folder_is_never_overwritten(small_mnist, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="already exists"):
        train(TrainConfig(epochs=1), small_mnist, run_dir=target, verbose=0)
    assert (target / "notes.txt").read_text() == "mine"
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_deeper_network_has_the_expected_parameter_count(small_mnist, tmp_path):
    config = TrainConfig(epochs=1, hidden=(256, 128), dropout_rate=0.2, validation_size=1000)
    run = train(config, small_mnist, run_dir=tmp_path / "r", verbose=0, plots_enabled=False)
    assert run.params == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


def test_load_run_errors(tmp_path, tiny_run):
    with pytest.raises(RunError, match="expected a run folder"):
        load_run(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match="expected config.json"):
        load_run(empty)
    (empty / "config.json").write_text(tiny_run.config.to_json())
    with pytest.raises(RunError, match="expected a model file model.keras"):
        load_run(empty)
    (empty / "model.keras").write_bytes(b"not a zip archive")
    with pytest.raises(RunError, match="expected run.json in the run folder"):
        load_run(empty)
    for name in ("run.json", "metrics.json"):
        (empty / name).write_bytes((tiny_run.path / name).read_bytes())
    with pytest.raises(RunError, match="model.keras: expected a Keras model archive"):
        load_run(empty)
    (empty / "config.json").write_text("{broken")
    with pytest.raises(RunError, match="config.json: expected JSON"):
        load_run(empty)
