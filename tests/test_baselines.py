"""scikit-learn baselines: trained on the tutorial's split, saved with skops,
loaded (trusted types only) and used by every command like a Keras run."""

import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import skops.io

from digitlab.config import TrainConfig
from digitlab.data import split
from digitlab.errors import ConfigError, RunError
from digitlab.inference import Predictor, SklearnClassifier
from digitlab.models import baselines
from digitlab.models import names as model_names
from digitlab.runs import load_run
from digitlab.training import train

BASELINE_FILES = {
    "model.skops",
    "config.json",
    "run.json",
    "history.json",
    "metrics.json",
    "confusion_matrix.png",
    "predictions.png",
    "mistakes.png",
    "reliability.png",
    "report.html",
}
FAST_BASELINES = ("rf", "logreg", "knn", "gnb", "bnb")


@pytest.fixture(scope="module")
def keras_metrics_keys(small_mnist, tmp_path_factory):
    """The metrics.json keys of a Keras run, to hold the baselines to."""
    config = TrainConfig(epochs=1, hidden=(16,), validation_size=1000)
    run = train(config, small_mnist, run_dir=tmp_path_factory.mktemp("keras") / "run", verbose=0)
    return set(run.metrics), set(run.info)


@pytest.fixture(scope="module", params=FAST_BASELINES)
def baseline_run(request, small_mnist, tmp_path_factory):
    config = TrainConfig(model=request.param, validation_size=1000, seed=5)
    path = tmp_path_factory.mktemp(request.param) / "run"
    return train(config, small_mnist, run_dir=path, verbose=0)


def test_baseline_run_folder_matches_a_keras_run(baseline_run, keras_metrics_keys):
    metrics_keys, info_keys = keras_metrics_keys
    assert {p.name for p in baseline_run.path.iterdir()} == BASELINE_FILES
    metrics = json.loads((baseline_run.path / "metrics.json").read_text())
    assert set(metrics) == metrics_keys
    assert metrics["size"] == 1000 and np.array(metrics["confusion_matrix"]).sum() == 1000
    assert 0.4 < metrics["accuracy"] <= 1.0
    assert 0.0 <= metrics["ece"] <= 1.0 and metrics["loss"] > 0
    info = json.loads((baseline_run.path / "run.json").read_text())
    assert info_keys <= set(info)  # everything a Keras run records, and more
    assert info["params"] > 0 and info["size_unit"]
    assert info["model_bytes"] == (baseline_run.path / "model.skops").stat().st_size
    assert info["train_seconds"] > 0 and info["predict_seconds_per_10k"] > 0
    assert info["first_epoch_seconds"] is None and info["seconds_per_epoch"] is None
    assert info["baseline"]["fit_images"] == 2000
    assert info["baseline"]["estimator_params"]  # JSON-ready hyper-parameters
    assert json.loads((baseline_run.path / "history.json").read_text()) == {}


def test_baseline_loads_and_predicts_exactly_like_the_trained_model(baseline_run, small_mnist):
    x = split(small_mnist, "tutorial", seed=5, validation_size=1000).x_eval[:300]
    loaded = load_run(baseline_run.path)
    assert loaded.config == baseline_run.config
    assert isinstance(loaded.classifier, SklearnClassifier)
    assert type(loaded.model).__name__ == loaded.info.baseline["estimator"]
    probs = loaded.predict_proba(x)
    assert probs.shape == (300, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs, baseline_run.predict_proba(x))


def test_baseline_run_serves_through_the_predictor(baseline_run, small_mnist):
    predictor = Predictor(load_run(baseline_run.path))
    probs = predictor.predict_one(small_mnist.x_test[0].astype(np.float32) / 255)
    assert probs.shape == (10,) and abs(float(probs.sum()) - 1.0) < 1e-5


def test_baseline_model_sizes_count_what_the_docs_say(small_mnist, tmp_path):
    sizes = {}
    for name in ("logreg", "gnb", "bnb", "knn"):
        config = TrainConfig(model=name, validation_size=1000)
        run = train(config, small_mnist, run_dir=tmp_path / name, verbose=0, plots_enabled=False)
        sizes[name] = (run.params, run.info["size_unit"])
    assert sizes["logreg"] == (784 * 10 + 10, "parameters")
    assert sizes["gnb"] == (2 * 784 * 10 + 10, "parameters")
    assert sizes["bnb"] == (784 * 10 + 10, "parameters")
    assert sizes["knn"] == (2000, "stored images")


def test_svm_fits_on_a_seeded_subsample(small_mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(baselines, "SVM_TRAIN_SIZE", 400)
    config = TrainConfig(model="svm", validation_size=1000)
    run = train(config, small_mnist, run_dir=tmp_path / "svm", verbose=0, plots_enabled=False)
    assert run.info["baseline"]["fit_images"] == 400
    assert run.info["size_unit"] == "support vectors" and 0 < run.params <= 400
    loaded = load_run(run.path)
    x = split(small_mnist, "tutorial", seed=42, validation_size=1000).x_eval[:50]
    np.testing.assert_array_equal(loaded.predict_proba(x), run.predict_proba(x))


def test_classes_missing_from_training_get_a_zero_column():
    rng = np.random.default_rng(0)
    x = rng.random((60, 4, 4), dtype=np.float32)
    labels = np.arange(60) % 3  # classes 0..2 of 5
    parts = SimpleNamespace(x_train=x, labels_train=labels)
    names = [str(k) for k in range(5)]
    fitted = baselines.fit_baseline(
        TrainConfig(model="gnb"), parts, class_names=names, image_shape=(4, 4)
    )
    classifier = SklearnClassifier(fitted.model, class_names=names, image_shape=(4, 4))
    probs = classifier.predict_proba(x[:7])
    assert probs.shape == (7, 5)
    assert np.all(probs[:, 3:] == 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert classifier.predict_proba(x[:0]).shape == (0, 5)


def _copy_run(run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run.path, target)
    return target


def test_tampered_skops_file_with_foreign_types_is_refused(baseline_run, tmp_path):
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    target = _copy_run(baseline_run, tmp_path)
    # The classic attack: a function call hidden in the model file.
    evil = make_pipeline(FunctionTransformer(os.system), GaussianNB())
    skops.io.dump(evil, target / "model.skops")
    with pytest.raises(RunError, match=r"untrusted type\(s\) posix.system"):
        load_run(target)


def test_skops_file_of_another_estimator_is_refused(baseline_run, tmp_path):
    from sklearn.naive_bayes import GaussianNB

    target = _copy_run(baseline_run, tmp_path)
    other = GaussianNB() if baseline_run.config.model != "gnb" else None
    if other is None:
        from sklearn.naive_bayes import BernoulliNB

        other = BernoulliNB()
    x = np.random.default_rng(0).random((20, 784))
    other.fit(x, np.arange(20) % 10)
    skops.io.dump(other, target / "model.skops")
    with pytest.raises(RunError, match=f"for model '{baseline_run.config.model}'"):
        load_run(target)


def test_damaged_skops_file_is_a_run_error(baseline_run, tmp_path):
    target = _copy_run(baseline_run, tmp_path)
    (target / "model.skops").write_bytes(b"not a zip archive at all")
    with pytest.raises(RunError, match="expected a skops model file"):
        load_run(target)


def test_unknown_model_name_lists_keras_models_and_baselines(small_mnist):
    with pytest.raises(ConfigError, match=r"expected one of .*mlp.*rf, logreg, knn, gnb, bnb"):
        train(TrainConfig(model="boosted-trees"), small_mnist, verbose=0)
    assert {"mlp", *baselines.BASELINES} <= set(model_names())


@pytest.mark.slow
def test_cli_trains_evaluates_and_predicts_with_a_baseline(small_mnist, tmp_path):
    from digitlab.data.idx import write_idx

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_idx(data_dir / "train-images-idx3-ubyte", small_mnist.x_train)
    write_idx(data_dir / "train-labels-idx1-ubyte", small_mnist.y_train)
    write_idx(data_dir / "t10k-images-idx3-ubyte", small_mnist.x_test)
    write_idx(data_dir / "t10k-labels-idx1-ubyte", small_mnist.y_test)
    run_dir = tmp_path / "bnb-run"
    common = ["--data-dir", str(data_dir), "--json"]

    def digitlab(*args):
        done = subprocess.run(
            [sys.executable, "-m", "digitlab", *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    trained = digitlab(
        "train", "--model", "bnb", "--validation-size", "500", "--run-dir", str(run_dir), *common
    )
    assert trained["model"] == "bnb" and trained["params"] == 7850
    evaluated = digitlab("evaluate", str(run_dir), *common)
    assert evaluated["eval"]["accuracy"] == trained["eval"]["accuracy"]
    tested = digitlab("evaluate", str(run_dir), "--set", "test", *common)
    assert tested["eval"]["size"] == 1000
    predicted = digitlab("predict", str(run_dir), "--index", "3", *common)
    assert 0 <= predicted["digit"] <= 9 and len(predicted["probabilities"]) == 10
