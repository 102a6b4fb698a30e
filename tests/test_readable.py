"""Readable output: evaluate's per-class table and ECE in words, --json on
data show, curves that make sense for a one-epoch run, and figures that never
replace a user's file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab import plots
from digitlab.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def test_evaluate_prints_a_classification_report_and_explains_ece(capsys):
    assert main(["evaluate", str(FIXTURES / "mlp-0.1.0")]) == 0
    out = capsys.readouterr().out
    assert "precision  recall  f1-score  support" in out
    assert "macro avg" in out and "accuracy" in out
    assert "expected calibration error" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows[:10]] == [str(d) for d in range(10)]
    assert sum(int(r[4].replace(",", "")) for r in rows[:10]) == 15_000


def test_data_show_json_gives_the_pixels(capsys):
    assert main(["data", "show", "--index", "0", "--set", "test", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["label"] == 7 and shown["class_name"] == "7"
    assert len(shown["pixels"]) == 28 and max(max(r) for r in shown["pixels"]) == 255


def test_data_show_writes_its_own_png_again_but_never_a_users(tmp_path, capsys):
    out = tmp_path / "samples.png"
    assert main(["data", "show", "--out", str(out), "--count", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"out": str(out), "set": "train", "count": 8}
    assert plots.is_own_png(out)
    assert main(["data", "show", "--out", str(out), "--count", "4"]) == 0  # its own file
    users = tmp_path / "holiday.png"
    Image.new("RGB", (300, 200), "white").save(users)
    before = users.read_bytes()
    assert main(["data", "show", "--out", str(users)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not one: choose another name" in err[0]
    assert users.read_bytes() == before


@pytest.mark.parametrize("epochs", [1, 4])
def test_training_curves_show_whole_epochs(epochs):
    history = {
        "loss": [1.0 / (e + 1) for e in range(epochs)],
        "val_loss": [1.1 / (e + 1) for e in range(epochs)],
        "accuracy": [0.8 + 0.02 * e for e in range(epochs)],
        "val_accuracy": [0.79 + 0.02 * e for e in range(epochs)],
    }
    fig = plots.plot_training_curves(history)
    loss_ax, accuracy_ax = fig.axes[:2]
    assert list(accuracy_ax.get_xticks()) == list(range(1, epochs + 1))
    low, high = accuracy_ax.get_ylim()
    assert 0.0 <= low < 0.79 and 0.8 + 0.02 * (epochs - 1) < high <= 1.0
    assert (len(loss_ax.texts) == 2) == (epochs == 1)  # one epoch: the values are written
    plots.save_figure(fig, "/dev/null")


# --------------------------------------------------------------------------- a look inside


def test_a_look_inside_the_mlp_and_a_convnet(small_mnist):
    from digitlab import inside
    from digitlab.errors import ConfigError
    from digitlab.runs import load_run

    mlp = load_run(FIXTURES / "mlp-0.1.0")
    weights = inside.first_layer_weights(mlp)
    assert weights.shape == (16, 28, 28)  # the fixture's 16 hidden units
    image = small_mnist.x_test[0] / 255.0
    (hidden,) = inside.hidden_activations(mlp, image)
    assert hidden.shape == (16,) and (hidden >= 0).all()  # relu
    maps = inside.saliency(mlp, small_mnist.x_test[:3] / 255.0)
    assert maps.shape == (3, 28, 28)
    assert np.all(maps[small_mnist.x_test[:3] == 0] == 0)  # gradient x input: no ink, no say

    cnn = load_run(FIXTURES / "cnn-fast-0.1.0")
    with pytest.raises(ConfigError, match="first Dense layer sees every pixel"):
        inside.first_layer_weights(cnn)
    assert inside.saliency(cnn, small_mnist.x_test[:2] / 255.0).shape == (2, 28, 28)

    baseline = load_run(FIXTURES / "gnb-0.1.0")  # no gradients: occlusion
    assert inside.saliency(baseline, small_mnist.x_test[:2] / 255.0).shape == (2, 28, 28)
    x = small_mnist.x_test[:2] / 255.0  # naive Bayes is sure to 1.0; the MLP is not
    probs = mlp.predict_proba(x)
    occluded = inside._occlusion(mlp.classifier, x, probs.argmax(1), probs, 4)
    assert np.abs(occluded).max() > 0


def test_the_report_figures_of_a_fresh_mlp_include_what_it_learned(small_mnist, tmp_path):
    from digitlab.config import TrainConfig
    from digitlab.training import train

    run = train(
        TrainConfig(epochs=1, hidden=(32,), validation_size=500),
        small_mnist,
        run_dir=tmp_path / "run",
        verbose=0,
    )
    for name in ("weights.png", "saliency.png", "reliability.png"):
        assert plots.is_own_png(run.path / name), name
    text = (run.path / "report.html").read_text(encoding="utf-8")
    assert "What the first layer learned" in text and "Why the worst mistakes" in text


@pytest.mark.slow
def test_the_api_answers_why_with_a_saliency_map_per_digit(small_mnist, tmp_path):
    import base64
    import io

    from predict_helpers import client, encode, number_image, running_server

    photo = encode(number_image([small_mnist.x_test[0], small_mnist.x_test[1]]))
    with running_server(FIXTURES / "mlp-0.1.0", tmp_path, "--quiet") as url, client(url) as http:
        plain = http.post("/api/predict", files={"file": ("n.png", photo)}).json()
        assert "why" not in plain
        reply = http.post("/api/predict?explain=true", files={"file": ("n.png", photo)})
        assert reply.status_code == 200
        answer = reply.json()
    assert answer["digit"] == plain["digit"] and len(answer["why"]) == answer["digits"] == 2
    for data_url in answer["why"]:
        assert data_url.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
        assert image.size == (28, 28) and image.mode == "RGB"
        pixels = np.asarray(image)
        assert (pixels != 255).any()  # some pixels mattered


def test_output_into_a_closed_pipe_stops_quietly():
    import subprocess
    import sys

    command = f"{sys.executable} -m digitlab data show --index 0 --json | head -n 1"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.stdout == "{\n" and done.stderr == ""
