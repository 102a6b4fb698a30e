"""digitlab's on-device fit against Keras' own ``model.fit``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from digitlab._backend import keras, set_seed
from digitlab.config import TrainConfig
from digitlab.data import split
from digitlab.models import _jax_fit as _jax_steps
from digitlab.models import build_model

pytestmark = pytest.mark.skipif(
    keras().backend.backend() != "jax", reason="the on-device fit is JAX's"
)


class BatchCounter(keras().callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.batch_ends = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batch_ends += 1


def fit_both(small_mnist, config, *, steps_per_call, epochs=2, callbacks=(), rounds=1):
    parts = split(small_mnist, "official")
    x, y = parts.x_train[:1000], parts.y_train[:1000]
    validation = (parts.x_eval[:300], parts.y_eval[:300])
    results = []
    for steps in (1, steps_per_call):  # 1: Keras' own fit
        set_seed(config.seed)
        model = build_model(config, small_mnist.image_shape, 10, steps_per_epoch=16)
        counter = BatchCounter()
        for _ in range(rounds):
            history = _jax_steps.fit(
                model,
                x,
                y,
                batch_size=64,  # 15 full batches and one of 40 per epoch
                epochs=epochs,
                validation_data=validation,
                steps_per_call=steps,
                verbose=0,
                callbacks=[counter, *callbacks],
            )
        results.append((model, history.history, counter.batch_ends))
    return results


@pytest.mark.parametrize(
    "config",
    [TrainConfig(), TrainConfig(hidden=(64, 32), dropout_rate=0.3, optimizer="adam", seed=5)],
    ids=["tutorial", "dropout-adam"],
)
def test_same_weights_and_history_as_keras_fit(small_mnist, config):
    (keras_model, keras_history, _), (ours, history, batch_ends) = fit_both(
        small_mnist, config, steps_per_call=6
    )
    for expected, got in zip(keras_model.get_weights(), ours.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert history == keras_history
    # Callbacks run once per call: 6 + 6 + (3 full and the last) batches.
    assert batch_ends == 2 * 3


def test_a_second_fit_continues_like_keras(small_mnist):
    (keras_model, keras_history, _), (ours, history, _) = fit_both(
        small_mnist, TrainConfig(optimizer="adam"), steps_per_call=5, epochs=1, rounds=2
    )
    for expected, got in zip(keras_model.get_weights(), ours.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert history == keras_history


def test_early_stopping_and_a_later_plain_fit_still_work(small_mnist):
    stop = keras().callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    (_, keras_history, _), (model, history, _) = fit_both(
        small_mnist, TrainConfig(), steps_per_call=4, epochs=5, callbacks=[stop]
    )
    assert len(history["loss"]) == len(keras_history["loss"]) == 2
    # The model is left as Keras leaves it: its own fit works on real rows.
    parts = split(small_mnist, "official")
    again = model.fit(parts.x_train[:256], parts.y_train[:256], verbose=0)
    assert np.isfinite(again.history["loss"][0])
    assert model.steps_per_execution == 1


def test_compiled_programs_are_kept_between_runs(tmp_path):
    cache = tmp_path / "cache"

    def run(name, cache_setting):
        env = {**os.environ, "DIGITLAB_COMPILATION_CACHE": cache_setting}
        out = subprocess.run(
            [sys.executable, "-m", "digitlab", "train", "--epochs", "1", "--hidden", "16"]
            + ["--no-plots", "--quiet", "--json", "--run-dir", str(tmp_path / name)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert "compilation cache" not in out.stderr, out.stderr
        return json.loads(out.stdout)

    first = run("first", str(cache))
    kept = sorted(p.name for p in cache.iterdir())
    assert any("many" in name for name in kept), kept  # the scan of training steps
    second = run("second", str(cache))
    assert second["eval"] == first["eval"]  # loaded programs compute the same
    assert sorted(p.name for p in cache.iterdir()) == kept  # nothing new to compile
    run("off", "0")
    assert sorted(p.name for p in cache.iterdir()) == kept
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert run("unwritable", str(blocked / "cache"))["eval"] == first["eval"]
