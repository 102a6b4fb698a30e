import numpy as np
import pytest
from sklearn import metrics as skm

from digitlab.errors import DataError
from digitlab.evaluation import expected_calibration_error, score


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)) * 2  # no probability below the 1e-7 clip
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 10, size=500)
    labels[:250] = probs[:250].argmax(axis=1)  # half right, so the metrics are not trivial
    return probs, labels


def test_score_matches_scikit_learn(predictions):
    probs, labels = predictions
    ev = score(probs, labels, set_name="validation")
    pred = probs.argmax(axis=1)
    assert ev.accuracy == pytest.approx(skm.accuracy_score(labels, pred))
    np.testing.assert_array_equal(
        ev.confusion, skm.confusion_matrix(labels, pred, labels=range(10))
    )
    p, r, f, _ = skm.precision_recall_fscore_support(
        labels, pred, labels=range(10), zero_division=0
    )
    np.testing.assert_allclose(ev.precision, p)
    np.testing.assert_allclose(ev.recall, r)
    np.testing.assert_allclose(ev.f1, f)
    assert ev.loss == pytest.approx(skm.log_loss(labels, probs, labels=range(10)), rel=1e-5)


def test_worst_mistakes_are_wrong_and_sorted_by_confidence(predictions):
    probs, labels = predictions
    ev = score(probs, labels)
    assert len(ev.mistakes) == 25
    assert np.all(ev.predictions[ev.mistakes] != labels[ev.mistakes])
    conf = probs[ev.mistakes, ev.predictions[ev.mistakes]]
    assert np.all(np.diff(conf) <= 0)
    wrong = ev.predictions != labels
    assert conf[0] == pytest.approx(probs[wrong].max(axis=1).max())


def test_to_dict_is_json_ready(predictions):
    import json

    d = score(*predictions, set_name="test").to_dict()
    json.dumps(d)
    assert d["set"] == "test" and d["size"] == 500
    assert set(d["per_class"]["3"]) == {"precision", "recall", "f1", "support"}
    assert sum(c["support"] for c in d["per_class"].values()) == 500


def test_calibration_error_is_zero_when_confidence_matches_accuracy():
    # Confidence 0.8 everywhere and right 80% of the time: perfectly calibrated.
    probs = np.full((10, 2), 0.2)
    probs[:, 0] = 0.8
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)
    # Always confident and always wrong: error 1.
    assert expected_calibration_error(np.eye(2)[[0, 0]], np.array([1, 1])) == pytest.approx(1.0)


def test_score_rejects_mismatched_shapes():
    with pytest.raises(DataError, match="expected probabilities"):
        score(np.ones((3, 2)) / 2, np.zeros(4))
    with pytest.raises(DataError, match="at least one image"):
        score(np.ones((0, 2)), np.zeros(0))
