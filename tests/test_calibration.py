"""Calibration: a temperature fitted on validation data, stored in the run and
applied wherever the run predicts; the test set never takes part."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from digitlab.config import TrainConfig
from digitlab.errors import ConfigError, RunError
from digitlab.evaluation import expected_calibration_error, fit_temperature
from digitlab.inference import Predictor
from digitlab.inference.classifier import temper
from digitlab.runs import load_run
from digitlab.training import train

FIXTURES = Path(__file__).parent / "fixtures"


def _softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def test_fit_temperature_recovers_the_temperature_that_made_a_model_overconfident():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.0, size=(20_000, 10))
    labels = np.array([rng.choice(10, p=p) for p in _softmax(logits)])
    overconfident = _softmax(logits * 2.5)  # a model 2.5x too sure of itself
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(2.5, rel=0.05)
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(temper(overconfident, temperature), labels)
    assert after < 0.02 < before


def test_temper_keeps_the_answer_and_sums_to_one():
    probs = _softmax(np.random.default_rng(1).normal(size=(50, 7)))
    probs[0] = [1, 0, 0, 0, 0, 0, 0]  # zeros stay zeros
    for t in (0.3, 1.0, 4.0):
        out = temper(probs, t)
        assert (out.argmax(1) == probs.argmax(1)).all()
        np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-12)
        assert out[0].tolist() == [1, 0, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(temper(probs, 1.0), probs)


@pytest.fixture(scope="module")
def calibrated_run(small_mnist, tmp_path_factory):
    config = TrainConfig(epochs=2, hidden=(32,), validation_size=1000)
    return train(config, small_mnist, run_dir=tmp_path_factory.mktemp("cal") / "run", verbose=0)


def test_the_temperature_is_stored_and_applied_where_the_run_predicts(calibrated_run, small_mnist):
    info = json.loads((calibrated_run.path / "run.json").read_text())
    calibration = info["calibration"]
    assert calibration["method"] == "temperature" and calibration["fitted_on"] == "validation"
    assert calibration["size"] == 1000 and calibration["temperature"] > 0
    assert (calibrated_run.path / "reliability.png").stat().st_size > 1000
    # metrics.json scores the calibrated answers, no worse than before.
    assert calibrated_run.metrics.ece <= calibration["ece_before"]
    assert calibrated_run.metrics.loss <= calibration["loss_before"] + 1e-9

    loaded = load_run(calibrated_run.path)
    x = small_mnist.x_test[:64] / 255.0
    raw = np.asarray(loaded.model.predict_on_batch(x.astype(np.float32)))
    expected = temper(raw, calibration["temperature"])
    np.testing.assert_allclose(loaded.predict_proba(x), expected, atol=1e-5)
    np.testing.assert_allclose(Predictor(loaded).predict_proba(x), expected, atol=1e-5)


def test_official_split_validates_and_calibrates_on_held_out_training_images(small_mnist, tmp_path):
    config = TrainConfig(epochs=1, hidden=(16,), split="official", calibration_size=200)
    run = train(config, small_mnist, run_dir=tmp_path / "run", verbose=0, plots_enabled=False)
    assert run.info.data.train_size == 3000 - 200 and run.info.data.eval_set == "test"
    assert run.metrics.size == 1000 and run.info.calibration["size"] == 200
    # The default 5,000 is capped at a tenth of a small training set.
    small = train(
        TrainConfig(epochs=1, hidden=(16,), split="official"),
        small_mnist,
        run_dir=tmp_path / "small",
        verbose=0,
        plots_enabled=False,
    )
    assert small.info.calibration["size"] == 300 and small.info.data.train_size == 2700
    assert run.info.calibration["fitted_on"] == "validation"

    plain = train(
        TrainConfig(epochs=1, hidden=(16,), split="official", calibrate=False),
        small_mnist,
        run_dir=tmp_path / "plain",
        verbose=0,
        plots_enabled=False,
    )
    assert plain.info.calibration is None and plain.info.data.train_size == 3000
    assert load_run(plain.path).classifier.temperature == 1.0


def test_calibration_options_are_checked():
    with pytest.raises(ConfigError, match="calibrate: expected true or false"):
        TrainConfig(calibrate="yes")
    with pytest.raises(ConfigError, match="calibration_size: expected a positive integer"):
        TrainConfig(calibration_size=0)
    # New fields at their defaults stay out of config.json: old configs, old keys.
    assert "calibrate" not in TrainConfig().to_dict()
    assert TrainConfig(calibrate=False).to_dict()["calibrate"] is False


@pytest.mark.parametrize("bad", [0, -1.5, "hot", None])
def test_a_bad_temperature_in_run_json_is_a_run_error(tmp_path, bad):
    target = tmp_path / "run"
    shutil.copytree(FIXTURES / "mlp-0.1.0", target)
    info = json.loads((target / "run.json").read_text())
    info["calibration"] = {"method": "temperature", "temperature": bad}
    (target / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match="temperature"):
        load_run(target)


def test_a_0_1_0_run_is_uncalibrated():
    run = load_run(FIXTURES / "mlp-0.1.0")
    assert run.info.calibration is None and run.classifier.temperature == 1.0
