""" "Not a digit": the shipped detector, read_image's rule, the CLI, the API and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from digitlab.data import negatives
from digitlab.inference import Predictor, read_image
from digitlab.inference.detector import load_detector
from digitlab.inference.images import frame_ink, render_photo
from digitlab.models.detector import TRUE_ACCEPT
from digitlab.ood import auroc, far_at_tar
from predict_helpers import client, encode, paper_digit, running_server, tiny_run

LIBERATION = Path("/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf")


@pytest.fixture(scope="session")
def run_dir(mnist, tmp_path_factory):
    return tiny_run(mnist, tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(run_dir):
    from digitlab.runs import load_run

    return Predictor(load_run(run_dir, quick=True))


def _letter_photo(letter: str, rng) -> bytes:
    """A photo of a typed letter in a font the detector never saw (Liberation,
    else Pillow's own)."""
    canvas = Image.new("L", (96, 96), 0)
    font = (
        ImageFont.truetype(str(LIBERATION), 64)
        if LIBERATION.is_file()
        else ImageFont.load_default(64)
    )
    ImageDraw.Draw(canvas).text((48, 48), letter, fill=255, font=font, anchor="mm")
    return render_photo(np.asarray(canvas), rng=rng)


def test_detector_loads_without_keras_and_knows_its_threshold():
    code = (
        "import sys; from digitlab.inference.detector import load_detector; "
        "d = load_detector(); import numpy as np; d.scores(np.zeros((1, 28, 28))); "
        "print(d.threshold, 'keras' in sys.modules, 'jax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    threshold, keras_loaded, jax_loaded = out.stdout.split()
    assert 0.0 < float(threshold) < 1.0
    assert keras_loaded == "False" and jax_loaded == "False"
    info = load_detector().info
    assert info["true_accept"] == TRUE_ACCEPT == 0.995
    assert info["validation"]["digits"]["accepted"] >= 0.995
    assert info["validation"]["digit photos"]["accepted"] >= 0.995


def test_mnist_test_digits_are_accepted_and_generated_non_digits_rejected(mnist):
    detector = load_detector()
    digits = mnist.x_test[:2000].astype(np.float32) / 255.0
    accepted = float(detector.is_digit(digits).mean())
    assert accepted >= 0.98, accepted  # 99.48% of all 10,000
    rng = np.random.default_rng(123)
    made = negatives.generate(40, rng)
    for family, images in made.items():
        framed = np.stack([frame_ink(image) for image in images])
        rejected = 1 - float(detector.is_digit(framed).mean())
        assert rejected >= 0.7, (family, rejected)


def test_negatives_repeat_with_the_seed_and_are_never_blank():
    first = negatives.generate(5, np.random.default_rng(7))
    second = negatives.generate(5, np.random.default_rng(7))
    assert set(first) == set(negatives.FAMILIES)
    for family in first:
        np.testing.assert_array_equal(first[family], second[family])
        assert first[family].shape == (5, 96, 96)
        assert (first[family].reshape(5, -1).max(axis=1) >= 128).all()


def test_read_image_answers_no_digit_for_noise_and_reads_it_when_asked(predictor):
    rng = np.random.default_rng(0)
    noise = frame_ink(negatives.noise(rng))
    result = read_image(predictor, noise)
    assert result["status"] == "no digit"
    assert result["reason"] == "not a digit"
    assert result["digit"] is None and result["class_name"] is None
    assert len(result["digit_scores"]) == 1
    assert result["digit_scores"][0] < result["detector"]
    assert result["top3"]  # what the classifier would have said is still shown
    anyway = read_image(predictor, noise, reject=False)
    assert anyway["status"] in ("ok", "not sure")
    assert anyway["digit_scores"] == [] and anyway["detector"] is None


def test_photos_of_digits_are_read_and_photos_of_letters_are_not(predictor, mnist, run_dir):
    from predict_helpers import confident_digits

    rng = np.random.default_rng(1)
    read = 0
    good = confident_digits(run_dir, mnist, 10)
    for index in good:
        result = read_image(predictor, encode(paper_digit(mnist.x_test[index])), single=True)
        read += result["status"] == "ok" and result["digit"] == int(mnist.y_test[index])
    assert read >= 9, read
    rejected = sum(
        read_image(predictor, _letter_photo(letter, rng), single=True)["status"] == "no digit"
        for letter in "AKMWXHRNkmwx"
    )
    assert rejected >= 10, rejected


def test_blank_is_still_reason_blank(predictor):
    result = read_image(predictor, np.zeros((28, 28)))
    assert result["status"] == "no digit" and result["reason"] == "blank"
    assert result["digit_scores"] == []


def test_predict_cli_says_not_a_digit_and_no_reject_reads_it(run_dir, tmp_path):
    rng = np.random.default_rng(2)
    photo = tmp_path / "letter.jpg"
    photo.write_bytes(_letter_photo("W", rng))
    command = [sys.executable, "-m", "digitlab", "predict", str(run_dir), str(photo)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "not a digit" in out.stdout, out.stdout
    anyway = subprocess.run(
        [*command, "--no-reject", "--json"], capture_output=True, text=True, check=True
    )
    (result,) = json.loads(anyway.stdout)
    assert result["status"] in ("ok", "not sure") and result["reason"] != "not a digit"


def test_metrics_and_report_carry_the_ood_figures(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ood = metrics["ood"]
    assert ood["method"] == "detector"
    assert set(ood["families"]) == set(negatives.FAMILIES)
    for row in ood["families"].values():
        assert 0.5 <= row["auroc"] <= 1.0
        assert 0.0 <= row["far_at_95_tar"] <= 1.0
    assert ood["digits"]["accepted"] >= 0.98
    html = (run_dir / "report.html").read_text()
    assert "Not a digit" in html and "FAR@95%TAR" in html


def test_auroc_and_far_match_their_definitions():
    rng = np.random.default_rng(3)
    positive, negative = rng.normal(1, 1, 60).round(1), rng.normal(0, 1, 50).round(1)
    pairs = [(p > n) + 0.5 * (p == n) for p in positive for n in negative]
    assert auroc(positive, negative) == pytest.approx(np.mean(pairs))
    cut = np.quantile(positive, 0.05)
    assert far_at_tar(positive, negative) == pytest.approx(np.mean(negative >= cut))


@pytest.mark.slow
def test_api_rejects_non_digits_unless_asked(run_dir, tmp_path):
    rng = np.random.default_rng(4)
    texture = (frame_ink(negatives.texture(rng)) * 255).round().astype(int).tolist()
    with running_server(run_dir, tmp_path, "--quiet") as url, client(url) as http:
        answer = http.post("/api/predict", json={"pixels": texture})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "no digit" and body["reason"] == "not a digit"
        anyway = http.post("/api/predict?reject=false", json={"pixels": texture}).json()
        assert anyway["reason"] != "not a digit"
        photo = http.post(
            "/api/predict?single=true",
            content=_letter_photo("K", rng),
            headers={"content-type": "image/jpeg"},
        ).json()
        assert photo["status"] == "no digit"


def test_the_detectors_recipe_builds_the_shipped_network_and_trains():
    """``python -m digitlab.models.detector`` builds what ships: the same layers
    and weight shapes, and its cosine schedule runs (two batches here)."""
    import digitlab.layers  # noqa: F401  (registers the saved layers)
    from digitlab._backend import keras
    from digitlab.inference.detector import MODEL_FILE
    from digitlab.models.detector import build

    model = build(0, epochs=1, steps_per_epoch=2)
    shipped = keras().models.load_model(MODEL_FILE)
    assert [w.shape for w in model.get_weights()] == [w.shape for w in shipped.get_weights()]
    x = np.random.default_rng(0).random((16, 28, 28)).astype(np.float32)
    history = model.fit(x, np.arange(16) % 2, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
