"""PyTorch, the optional second way to compute digitlab's Keras networks:
``--runtime torch`` (inference) and ``--engine torch`` (training)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digitlab import cli
from digitlab.config import ACTIVATIONS, TrainConfig
from digitlab.errors import ConfigError
from digitlab.runs import load_run
from digitlab.training import train

torch = pytest.importorskip("torch", reason="digitlab[torch] is not installed")

from digitlab.inference import torch_runtime  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def tiny_mnist(small_mnist):
    """1,024 training and 256 test images of the real MNIST."""
    return small_mnist.head(1024, 256)


@pytest.fixture(scope="module")
def torch_cnn_run(tiny_mnist, tmp_path_factory):
    config = TrainConfig.for_model("cnn-fast", engine="torch", epochs=2, validation_size=256)
    path = tmp_path_factory.mktemp("torch-runs") / "cnn-fast"
    return train(config, tiny_mnist, run_dir=path, verbose=0, plots_enabled=False)


@pytest.mark.parametrize("name", ["cnn-fast-0.1.0", "mlp-0.1.0"])
def test_torch_runtime_in_float32_gives_the_native_answers(name, mnist):
    native = load_run(FIXTURES / name)
    run = load_run(FIXTURES / name, runtime="torch")
    assert run.classifier.backend == "torch"
    assert run.classifier.temperature == native.classifier.temperature
    run.classifier.model.bfloat16 = False
    images = mnist.x_test[:500].astype(np.float32) / 255
    np.testing.assert_allclose(run.predict_proba(images), native.predict_proba(images), atol=2e-5)


@pytest.mark.parametrize("name", [*ACTIVATIONS, "softmax"])
def test_torch_activations_are_the_keras_activations(name):
    import keras

    x = np.linspace(-6, 6, 121, dtype=np.float32).reshape(11, 11)
    expected = np.asarray(keras.activations.get(name)(x))
    got = torch_runtime._activation(name)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_torch_runtime_in_bfloat16_changes_almost_no_answer(mnist):
    native = load_run(FIXTURES / "cnn-fast-0.1.0")
    run = load_run(FIXTURES / "cnn-fast-0.1.0", runtime="torch")
    run.classifier.model.bfloat16 = True  # emulated where the CPU lacks it: still correct
    images = mnist.x_test[:2000].astype(np.float32) / 255
    fast, exact = run.predict_proba(images), native.predict_proba(images)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(fast.argmax(1) == exact.argmax(1)) >= 0.998
    assert np.abs(fast - exact).max() < 0.1


@pytest.fixture(scope="module")
def fixture_ensemble(mnist, tmp_path_factory):
    """An ensemble of two unlike members: the 0.1.0 cnn-fast and mlp runs."""
    from digitlab.ensemble import ensemble

    members = [FIXTURES / "cnn-fast-0.1.0", FIXTURES / "mlp-0.1.0"]
    folder = tmp_path_factory.mktemp("torch-ensemble") / "run"
    return ensemble(members, dataset=mnist, run_dir=folder, plots_enabled=False).path


def test_torch_runtime_runs_an_ensemble_as_keras_does(fixture_ensemble, mnist):
    native = load_run(fixture_ensemble)
    run = load_run(fixture_ensemble, runtime="torch")
    network = run.classifier.model
    assert isinstance(network, torch_runtime.TorchEnsemble)
    assert len(network.networks) == 2 and run.classifier.description["network"] == "ensemble"
    assert run.classifier.temperature == native.classifier.temperature != 1.0
    network.bfloat16 = False
    images = mnist.x_test[:500].astype(np.float32) / 255
    np.testing.assert_allclose(run.predict_proba(images), native.predict_proba(images), atol=2e-5)
    network.bfloat16 = True
    assert all(member.bfloat16 for member in network.networks)
    fast = run.predict_proba(images)
    assert np.mean(fast.argmax(1) == native.predict_proba(images).argmax(1)) >= 0.99


def test_torch_runtime_refuses_what_it_cannot_run():
    with pytest.raises(Exception, match="--runtime torch runs Keras networks"):
        load_run(FIXTURES / "gnb-0.1.0", runtime="torch")


def test_torch_runtime_is_a_cli_choice(capsys):
    code = cli.main(["predict", str(FIXTURES / "cnn-fast-0.1.0"), "--index", "0", "--json"])
    native = json.loads(capsys.readouterr().out)
    assert code == 0
    code = cli.main(
        [
            "predict",
            str(FIXTURES / "cnn-fast-0.1.0"),
            "--index",
            "0",
            "--json",
            "--runtime",
            "torch",
        ]
    )
    answer = json.loads(capsys.readouterr().out)
    assert code == 0
    assert answer["digit"] == native["digit"]
    code = cli.main(["predict", str(FIXTURES / "gnb-0.1.0"), "--index", "0", "--runtime", "torch"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "--runtime torch runs Keras networks" in err


def test_affine_resamples_as_the_keras_augmentation_layer_does():
    from digitlab._backend import keras
    from digitlab.layers import _bilinear

    rng = np.random.default_rng(0)
    images = rng.random((4, 28, 28, 1), dtype=np.float32)
    angle = np.array([0.0, 0.15, -0.1, 0.05], np.float32)
    scale = np.array([1.0, 0.93, 1.08, 1.0], np.float32)
    shift_x = np.array([0.0, 1.5, -2.2, 0.0], np.float32)
    shift_y = np.array([0.0, -0.7, 2.9, 3.0], np.float32)
    got = torch_runtime.affine(
        torch.from_numpy(images), *(torch.from_numpy(v) for v in (angle, scale, shift_x, shift_y))
    ).numpy()
    # The Keras layer's own formula (digitlab.layers.Augmentation.call), with these draws.
    ops = keras().ops
    centre = 13.5
    x = np.arange(28, dtype=np.float32).reshape(1, 1, 28) - centre
    y = np.arange(28, dtype=np.float32).reshape(1, 28, 1) - centre
    cos, sin = (scale * np.cos(angle))[:, None, None], (scale * np.sin(angle))[:, None, None]
    source_x = cos * x - sin * y + centre + shift_x[:, None, None]
    source_y = sin * x + cos * y + centre + shift_y[:, None, None]
    expected = np.asarray(_bilinear(ops.convert_to_tensor(images), source_x, source_y))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got[0], images[0], atol=1e-5)  # the identity map
    # An elastic displacement field (pixels) moves each source position as in Keras.
    field = rng.normal(size=(4, 28, 28, 2)).astype(np.float32)
    got = torch_runtime.affine(
        torch.from_numpy(images),
        *(torch.from_numpy(v) for v in (angle, scale, shift_x, shift_y)),
        torch.from_numpy(field),
    ).numpy()
    expected = np.asarray(
        _bilinear(ops.convert_to_tensor(images), source_x + field[..., 0], source_y + field[..., 1])
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_torch_augmentation_draws_an_elastic_field_only_when_asked():
    images = np.zeros((8, 28, 28, 1), np.float32)
    images[:, 3:25, 13:15, :] = 1.0
    still = {"rotation": 0.0, "zoom": 0.0, "shift": 0.0}

    def augmented(elastic, training=True):
        layers = [("Augmentation", {**still, "elastic": elastic}, []), ("Flatten", {}, [])]
        net = torch_runtime.TorchNetwork(layers, training=training, seed=5, bfloat16=False)
        return net(images).detach().numpy().reshape(images.shape)

    np.testing.assert_allclose(augmented(0.0), images, atol=1e-6)
    bent = augmented(1.5)
    assert np.abs(bent - images).sum(axis=(1, 2, 3)).min() > 1.0  # every image bent
    assert 0.0 <= bent.min() and bent.max() <= 1.0 + 1e-6
    assert bent[:, :, :5].max() == 0 and bent[:, :, 23:].max() == 0  # bent, not scattered
    np.testing.assert_array_equal(augmented(1.5, training=False), images)


def test_torch_schedule_is_the_keras_schedule():
    from digitlab._backend import keras
    from digitlab.models import torch_engine
    from digitlab.models.networks import make_optimizer

    config = TrainConfig(optimizer="adam", learning_rate=0.01, lr_schedule="cosine", epochs=20)
    optimizer = make_optimizer(config, steps_per_epoch=5)
    schedule = keras().optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    rate = torch_engine._schedule(config, 5)
    for step in (0, 1, 3, 5, 17, 50, 99, 100):
        assert rate(step) == pytest.approx(float(schedule(step)), rel=1e-5, abs=1e-9)


def test_engine_torch_trains_a_run_every_command_reads(torch_cnn_run, tiny_mnist):
    run = torch_cnn_run
    info = json.loads((run.path / "run.json").read_text())
    assert info["training"]["engine"] == "torch"
    assert info["training"]["precision"] in ("bfloat16", "float32")
    assert json.loads((run.path / "config.json").read_text())["engine"] == "torch"
    history = json.loads((run.path / "history.json").read_text())
    assert len(history["val_accuracy"]) == 2
    assert history["loss"][1] < history["loss"][0]
    # On training batches (batch norm on batch statistics); the evaluation is
    # low after 48 steps with either engine: the moving statistics lag.
    assert history["accuracy"][1] > 0.8
    assert math.isfinite(run.info.temperature)
    # What it saved is a plain Keras run: natively, quickly and on PyTorch alike.
    images = tiny_mnist.x_test[:64].astype(np.float32) / 255
    native = load_run(run.path).predict_proba(images)
    np.testing.assert_allclose(
        load_run(run.path, quick=True).predict_proba(images), native, atol=2e-5
    )
    again = load_run(run.path, runtime="torch")
    again.classifier.model.bfloat16 = False
    np.testing.assert_allclose(again.predict_proba(images), native, atol=2e-5)


def test_engine_torch_repeats_exactly_with_a_seed(tiny_mnist, tmp_path, torch_cnn_run):
    config = TrainConfig.for_model("cnn-fast", engine="torch", epochs=2, validation_size=256)
    again = train(config, tiny_mnist, run_dir=tmp_path / "again", verbose=0, plots_enabled=False)
    images = tiny_mnist.x_test[:64].astype(np.float32) / 255
    np.testing.assert_array_equal(again.predict_proba(images), torch_cnn_run.predict_proba(images))
    other = train(
        TrainConfig.for_model("cnn-fast", engine="torch", epochs=1, validation_size=256, seed=7),
        tiny_mnist,
        run_dir=tmp_path / "other",
        verbose=0,
        plots_enabled=False,
    )
    assert not np.array_equal(other.predict_proba(images), again.predict_proba(images))


def test_engine_torch_trains_the_tutorial_mlp_with_early_stopping(tiny_mnist, tmp_path):
    config = TrainConfig(
        engine="torch",
        epochs=30,
        early_stopping=2,
        restore_best=True,
        validation_size=256,
        optimizer="adam",
        dropout_rate=0.2,
    )
    run = train(config, tiny_mnist, run_dir=tmp_path / "mlp", verbose=0, plots_enabled=False)
    epochs = len(run.history.curves["val_loss"])
    assert epochs < 30
    assert run.metrics.accuracy > 0.85


def test_engine_torch_refuses_what_it_cannot_train(tiny_mnist, tmp_path, capsys):
    with pytest.raises(ConfigError, match="^engine: --engine torch trains Keras networks"):
        train(
            TrainConfig(model="logreg", engine="torch", validation_size=256),
            tiny_mnist,
            run_dir=tmp_path / "a",
        )
    with pytest.raises(ConfigError, match="^optimizer: --engine torch trains with sgd"):
        train(
            TrainConfig(engine="torch", optimizer="nadam", epochs=1, validation_size=256),
            tiny_mnist,
            run_dir=tmp_path / "b",
        )
    with pytest.raises(ConfigError, match="^engine: expected one of keras, torch"):
        TrainConfig(engine="tensorflow")
    code = cli.main(
        ["train", "--model", "logreg", "--engine", "torch", "--run-dir", str(tmp_path / "c")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--engine" in err
    assert not (tmp_path / "c").exists()


def test_without_pytorch_both_say_how_to_install_it(tmp_path):
    """A real process in which ``import torch`` fails, as where it is not installed."""
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from digitlab import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    for args, flag in (
        (
            ["predict", str(FIXTURES / "mlp-0.1.0"), "--index", "0", "--runtime", "torch"],
            "--runtime torch",
        ),
        (
            ["train", "--engine", "torch", "--epochs", "1", "--run-dir", str(tmp_path / "r")],
            "--engine torch",
        ),
    ):
        done = subprocess.run(
            [sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        err = done.stderr.strip()
        assert len(err.splitlines()) == 1
        assert f"{flag} needs PyTorch" in err and "pip install 'digitlab[torch]'" in err
    assert not (tmp_path / "r").exists()


def test_a_training_network_validates_as_the_inference_network_predicts(mnist):
    """Out of training, no dropout, no augmentation, batch norm on its moving
    statistics: the logits of what --engine torch trains are the run's answers."""
    from digitlab.inference import numpy_keras

    _, shape, layers = numpy_keras.read_layers(FIXTURES / "cnn-fast-0.1.0" / "model.keras")
    images = torch.from_numpy(mnist.x_test[:256].astype(np.float32) / 255)
    trained = torch_runtime.TorchNetwork(layers, training=True, bfloat16=False)
    served = torch_runtime.TorchNetwork(layers, input_shape=shape, bfloat16=False)
    with torch.inference_mode():
        trained.training = False
        logits = trained(images)
        probabilities = served(images)
        trained.training = True
        in_training = trained(images)
    np.testing.assert_allclose(logits.softmax(1).numpy(), probabilities.numpy(), atol=1e-5)
    assert not np.allclose(in_training.softmax(1).numpy(), probabilities.numpy(), atol=1e-3)


def test_train_names_the_torch_extra_for_the_strong_model_only_where_it_is_missing():
    from digitlab.cli.commands import strong_model_command

    # No flags: where PyTorch is installed, cnn trains on it by default.
    assert strong_model_command() == "digitlab train --model cnn --split official"
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from digitlab.cli.commands import strong_model_command\n"
        "print(strong_model_command())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == (
        "digitlab train --model cnn --split official "
        "(after pip install 'digitlab[torch]', it trains twice the epochs in less time)"
    )


@pytest.mark.slow
def test_serve_on_torch_keeps_the_http_contract(mnist, tmp_path):
    from predict_helpers import RESULT_FIELDS, confident_digits, encode, paper_digit, served_answers

    run_dir = FIXTURES / "cnn-fast-0.1.0"
    index = confident_digits(run_dir, mnist, 1)[0]
    photo = encode(paper_digit(mnist.x_test[index]))
    pixels = {"pixels": mnist.x_test[index].tolist()}
    served = {
        runtime: served_answers(run_dir, tmp_path, runtime, photo, pixels)
        for runtime in ("torch", "native")
    }
    assert served["torch"]["model"]["backend"] == "torch"
    assert served["native"]["model"]["backend"] == "jax.jit"
    assert len(served["torch"]["why"]["why"]) == 1  # occlusion: no gradients needed
    for got, want in zip(served["torch"]["answers"], served["native"]["answers"], strict=True):
        assert set(got) == RESULT_FIELDS
        assert got["digit"] == want["digit"] == int(mnist.y_test[index])
        assert np.abs(np.array(got["probabilities"]) - want["probabilities"]).max() <= 0.05
