"""The convolutional models: builders, augmentation, per-model defaults,
early stopping / best-epoch restore, and runs that save and load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from digitlab import cli
from digitlab._backend import keras
from digitlab.cli import commands
from digitlab.config import TrainConfig
from digitlab.data import split
from digitlab.errors import ConfigError
from digitlab.layers import Augmentation, MaxPool2x2
from digitlab.models import defaults_for
from digitlab.models.networks import build_model, make_optimizer
from digitlab.runs import load_run
from digitlab.training import train

CNN_PARAMS = 243_466
CNN_FAST_PARAMS = 95_498
CNN_DEEP_PARAMS = 289_930


@pytest.fixture(scope="module")
def tiny_mnist(small_mnist):
    """512 training and 256 test images of the real MNIST."""
    return small_mnist.head(512, 256)


@pytest.fixture(scope="module")
def tiny_cnn_run(tiny_mnist, tmp_path_factory):
    config = TrainConfig.for_model("cnn", epochs=1, validation_size=128, seed=5, engine="keras")
    path = tmp_path_factory.mktemp("cnn-runs") / "cnn"
    return train(config, tiny_mnist, run_dir=path, verbose=0, plots_enabled=False)


@pytest.mark.parametrize(
    ("name", "params"),
    [("cnn", CNN_PARAMS), ("cnn-deep", CNN_DEEP_PARAMS), ("cnn-fast", CNN_FAST_PARAMS)],
)
def test_cnn_builders_have_the_stated_shape_and_parameter_count(name, params):
    model = build_model(TrainConfig.for_model(name), (28, 28), 10, steps_per_epoch=10)
    assert model.output_shape == (None, 10)
    assert model.count_params() == params
    images = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    probabilities = model.predict_on_batch(images)
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn_augmentation_is_inactive_at_inference():
    model = build_model(TrainConfig.for_model("cnn"), (28, 28), 10, steps_per_epoch=10)
    images = np.random.default_rng(1).random((8, 28, 28), dtype=np.float32)
    first = model.predict(images, verbose=0)
    np.testing.assert_array_equal(model.predict(images, verbose=0), first)
    np.testing.assert_allclose(np.asarray(model(images, training=False)), first, atol=1e-6)


def test_augmentation_layer_moves_pixels_only_in_training():
    layer = Augmentation()
    images = np.zeros((16, 28, 28, 1), dtype=np.float32)
    images[:, 10:18, 12:16, :] = 1.0  # a bar the transforms must move
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    moved = np.asarray(layer(images, training=True))
    assert moved.shape == images.shape
    assert not np.allclose(moved, images)
    assert 0.0 <= moved.min() and moved.max() <= 1.0 + 1e-6


def _column_centres(images):
    """Per image and row, the mean column of its ink: (n, rows with ink)."""
    ink = images[..., 0]
    rows = ink.sum(axis=2) > 0.5
    centres = (ink * np.arange(ink.shape[2])).sum(axis=2) / np.maximum(ink.sum(axis=2), 1e-9)
    return [c[r] for c, r in zip(centres, rows, strict=True)]


def test_elastic_augmentation_bends_what_an_affine_map_keeps_straight():
    images = np.zeros((32, 28, 28, 1), dtype=np.float32)
    images[:, 3:25, 13:15, :] = 1.0  # a long vertical stroke
    # Without rotation, zoom or shift, and without elastic, nothing moves.
    still = Augmentation(rotation=0, zoom=0, shift=0, seed=3)
    np.testing.assert_allclose(np.asarray(still(images, training=True)), images, atol=1e-6)
    # An affine map keeps the stroke straight; a displacement field bends it.
    for layer, bent in ((Augmentation(seed=3), False), (Augmentation(elastic=1.5, seed=3), True)):
        curvature = []
        for centres in _column_centres(np.asarray(layer(images, training=True))):
            rows = np.arange(len(centres))
            line = np.polyval(np.polyfit(rows, centres, 1), rows)
            curvature.append(np.abs(centres - line).max())
        assert bool(np.median(curvature) > 0.3) is bent, np.median(curvature)
    elastic = Augmentation(elastic=1.5, seed=3)
    np.testing.assert_array_equal(np.asarray(elastic(images, training=False)), images)
    assert elastic.get_config()["elastic"] == 1.5
    assert Augmentation.from_config(elastic.get_config()).elastic == 1.5


def test_elastic_is_a_train_flag_and_a_checked_config_field():
    args = ["train", "--model", "cnn", "--elastic", "1.5", "--epochs", "3"]
    config = commands._train_config(cli.build_parser().parse_args(args))
    assert (config.elastic, config.augment) == (1.5, True)
    (layer,) = [
        layer
        for layer in build_model(config, (28, 28), 10, steps_per_epoch=10).layers
        if isinstance(layer, Augmentation)
    ]
    assert layer.elastic == 1.5
    assert "elastic" not in TrainConfig.for_model("cnn").to_dict()  # 0.1.0's keys kept
    assert TrainConfig.from_dict(config.to_dict()) == config
    for fields, message in (
        ({"elastic": -1.0}, r"elastic: expected a number of pixels in \[0, 10\]"),
        ({"elastic": True}, "elastic: expected a number of pixels"),
        ({"elastic": 11.0}, "elastic: expected a number of pixels"),
        ({"elastic": 1.0, "augment": False}, "elastic: .* needs augment=True"),
    ):
        with pytest.raises(ConfigError, match=message):
            TrainConfig.for_model("cnn", **fields)


@pytest.mark.skipif(keras().backend.backend() != "jax", reason="the JAX backend's fix")
def test_cnn_with_augmentation_trains_compiled_on_jax():
    # Keras' own augmentation layers would switch the whole training step to
    # op-by-op execution, ten times slower.
    model = build_model(TrainConfig.for_model("cnn"), (28, 28), 10, steps_per_epoch=10)
    assert model.jit_compile is True


def test_augmentation_draws_new_transforms_at_every_compiled_step(tiny_cnn_run):
    (layer,) = [layer for layer in tiny_cnn_run.model.layers if isinstance(layer, Augmentation)]
    # The seed generator's counter advances with each draw, inside the compiled
    # step too: 4 draws (angle, zoom, two shifts) per batch of 128.
    batches = -(-tiny_cnn_run.info["data"]["train_size"] // 128)
    assert int(np.asarray(layer.seed_generator.state.value)[1]) == 4 * batches


def test_maxpool2x2_equals_keras_max_pooling():
    images = np.random.default_rng(2).normal(size=(2, 7, 9, 3)).astype(np.float32)
    expected = keras().layers.MaxPooling2D(2)(images)
    np.testing.assert_array_equal(np.asarray(MaxPool2x2()(images)), np.asarray(expected))
    assert MaxPool2x2().compute_output_shape((None, 7, 9, 3)) == (None, 3, 4, 3)


def test_cnn_run_saves_the_resolved_config_and_loads_identically(tiny_cnn_run, tiny_mnist):
    config = json.loads((tiny_cnn_run.path / "config.json").read_text())
    assert config["model"] == "cnn"
    for field, value in defaults_for("cnn", "keras").items():
        if field != "epochs":
            assert config[field] == (list(value) if isinstance(value, tuple) else value)
    assert tiny_cnn_run.params == CNN_PARAMS
    x = split(tiny_mnist, "tutorial", seed=5, validation_size=128).x_eval
    loaded = load_run(tiny_cnn_run.path)
    assert loaded.config == tiny_cnn_run.config
    np.testing.assert_array_equal(loaded.predict_proba(x), tiny_cnn_run.predict_proba(x))


def test_cnn_run_loads_in_a_fresh_process(tiny_cnn_run):
    # The custom layers must be found without the caller importing digitlab.models.
    code = (
        "import sys; from digitlab.runs import load_run; "
        "run = load_run(sys.argv[1]); print(run.model.count_params())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tiny_cnn_run.path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, KERAS_BACKEND=keras().backend.backend()),
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(CNN_PARAMS)


def _overfitting_config(**fields):
    # An MLP on 512 images at a high learning rate overfits within a few
    # epochs, so the validation loss turns up and early stopping triggers.
    # Uncalibrated, so that the run's answers are Keras' own, the ones its
    # validation loss was computed from.
    return TrainConfig(
        optimizer="adam",
        learning_rate=0.01,
        epochs=40,
        validation_size=256,
        seed=3,
        calibrate=False,
        **fields,
    )


def _eval_loss(run, dataset):
    """The run's cross-entropy on its validation images, as Keras reports it."""
    parts = split(dataset, "tutorial", seed=run.config.seed, validation_size=256)
    probabilities = np.clip(run.predict_proba(parts.x_eval), 1e-7, 1 - 1e-7)
    return float(-np.log(probabilities[np.arange(len(probabilities)), parts.labels_eval]).mean())


def test_early_stopping_stops_once_validation_loss_stalls(tiny_mnist, tmp_path):
    config = _overfitting_config(early_stopping=2)
    run = train(config, tiny_mnist, run_dir=tmp_path / "r", verbose=0, plots_enabled=False)
    losses = run.history["val_loss"]
    assert len(losses) < config.epochs
    best = int(np.argmin(losses))
    assert len(losses) == best + 1 + 2  # stopped after two epochs without improvement
    # Without restore_best the run keeps the last epoch's weights.
    assert _eval_loss(run, tiny_mnist) == pytest.approx(losses[-1], rel=1e-4)


def test_restore_best_ends_with_the_best_epochs_weights(tiny_mnist, tmp_path):
    config = _overfitting_config(early_stopping=3, restore_best=True)
    run = train(config, tiny_mnist, run_dir=tmp_path / "r", verbose=0, plots_enabled=False)
    losses = run.history["val_loss"]
    assert int(np.argmin(losses)) < len(losses) - 1  # the last epoch was not the best
    assert _eval_loss(run, tiny_mnist) == pytest.approx(min(losses), rel=1e-4)
    loaded = load_run(run.path)
    assert loaded.config.restore_best is True
    assert _eval_loss(loaded, tiny_mnist) == pytest.approx(min(losses), rel=1e-4)


def test_for_model_applies_model_defaults_under_explicit_fields():
    assert TrainConfig.for_model("mlp") == TrainConfig()
    cnn = TrainConfig.for_model("cnn", engine="keras")
    assert (cnn.optimizer, cnn.lr_schedule, cnn.augment, cnn.epochs) == ("adam", "cosine", True, 15)
    assert TrainConfig.for_model("cnn", engine="torch").epochs == 30
    assert TrainConfig.for_model("cnn-deep", engine="torch").epochs == 25
    # What PyTorch's engine cannot train goes to Keras, with Keras' defaults.
    nadam = TrainConfig.for_model("cnn", optimizer="nadam")
    assert (nadam.engine, nadam.epochs) == ("keras", 15)
    assert TrainConfig.for_model("cnn", optimizer="sgd", epochs=3).optimizer == "sgd"
    assert TrainConfig.for_model("cnn", augment=False).augment is False


@pytest.mark.parametrize("torch_installed", [True, False])
def test_cnn_trains_on_the_fastest_engine_installed_unless_one_is_asked_for(torch_installed):
    if torch_installed:
        pytest.importorskip("torch")
    # PyTorch is made absent the way Python documents: None in sys.modules.
    code = (
        "import sys\n"
        + ("" if torch_installed else "sys.modules['torch'] = None\n")
        + "from digitlab.config import TrainConfig as C\n"
        "print([(c.engine, c.epochs) for c in (C.for_model('cnn'), C.for_model('cnn-deep'), "
        "C.for_model('cnn', engine='keras'), C.for_model('cnn', epochs=3), "
        "C.for_model('cnn-fast'), C.for_model('mlp'), C.for_model('rf'))])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fastest = "torch" if torch_installed else "keras"
    cnn, deep = (30, 25) if torch_installed else (15, 15)
    assert done.stdout.strip() == str(
        [(fastest, cnn), (fastest, deep), ("keras", 15), (fastest, 3)]
        + [("keras", 1), ("keras", 20), ("keras", 20)]
    )


def test_cli_resolves_model_defaults_and_keeps_the_tutorial():
    parser = cli.build_parser()
    assert commands._train_config(parser.parse_args(["train"])) == TrainConfig()
    cnn = commands._train_config(
        parser.parse_args(["train", "--model", "cnn", "--split", "official"])
    )
    assert cnn == TrainConfig.for_model("cnn", split="official")
    args = ["train", "--model", "cnn", "--no-augment", "--epochs", "3", "--early-stopping", "2"]
    custom = commands._train_config(parser.parse_args(args))
    assert (custom.augment, custom.epochs, custom.early_stopping) == (False, 3, 2)
    assert custom.optimizer == "adam"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"label_smoothing": 1.0}, "label_smoothing: expected a number in"),
        ({"early_stopping": -1}, "early_stopping: expected a non-negative integer"),
        ({"augment": "yes"}, "augment: expected true or false"),
        ({"lr_schedule": "step"}, "lr_schedule: expected one of constant, cosine"),
        ({"split": "official", "restore_best": True}, "expected split='tutorial'"),
        ({"split": "official", "early_stopping": 2}, "expected split='tutorial'"),
    ],
)
def test_config_rejects_bad_training_options(fields, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**fields)


def test_augment_needs_a_model_that_augments():
    with pytest.raises(ConfigError, match="augment: expected a model that augments"):
        build_model(TrainConfig(augment=True), (28, 28), 10)


def test_cnn_models_need_even_image_sizes():
    with pytest.raises(ConfigError, match="even height and width"):
        build_model(TrainConfig.for_model("cnn-fast"), (27, 28), 10, steps_per_epoch=1)


def test_cosine_schedule_needs_the_batches_per_epoch():
    with pytest.raises(ConfigError, match="lr_schedule: 'cosine' needs"):
        make_optimizer(TrainConfig(lr_schedule="cosine"))


def test_cosine_schedule_warms_up_then_ends_at_zero():
    optimizer = make_optimizer(
        TrainConfig(optimizer="adam", learning_rate=0.01, lr_schedule="cosine", epochs=20),
        steps_per_epoch=5,
    )
    schedule = keras().optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    # A tenth of the rate, rising over a tenth of training capped at one epoch (5 batches) ...
    assert float(schedule(0)) == pytest.approx(0.001)
    assert float(schedule(5)) == pytest.approx(0.01)
    # ... then a cosine: half-way down after half of the remaining 95 batches, 0 at the end.
    assert float(schedule(5 + 95 / 2)) == pytest.approx(0.005)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
