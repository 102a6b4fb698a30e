import dataclasses

import pytest

from digitlab.config import TrainConfig
from digitlab.errors import ConfigError


def test_defaults_are_the_tutorial():
    config = TrainConfig()
    assert config.model == "mlp"
    assert config.hidden == (128,)
    assert config.activation == "relu"
    assert config.optimizer == "sgd"
    assert config.learning_rate is None  # Keras' SGD default, 0.01
    assert (config.epochs, config.batch_size) == (20, 128)
    assert (config.split, config.validation_size) == ("tutorial", 15_000)


def test_config_round_trips_through_dict():
    config = TrainConfig(hidden=[256, 128], optimizer="adam", learning_rate=1e-3, seed=7)
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config
    assert again.hidden == (256, 128)


def test_replace_makes_a_sweep_trial():
    trial = dataclasses.replace(TrainConfig(), hidden=(64, 64), seed=3)
    assert trial.hidden == (64, 64) and trial.epochs == 20


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("hidden", (0,), "hidden: expected positive integers"),
        ("hidden", (12.5,), "hidden: expected positive integers"),
        ("epochs", 0, "epochs: expected a positive integer. Received: epochs=0"),
        ("batch_size", -1, "batch_size: expected a positive integer"),
        ("epochs", True, "epochs: expected a positive integer"),
        ("optimizer", "sgdd", "optimizer: expected one of sgd"),
        ("activation", "rellu", "activation: expected one of relu"),
        ("split", "random", "split: expected one of tutorial, official"),
        ("dropout_rate", 1.0, r"dropout_rate: expected a number in \[0, 1\)"),
        ("learning_rate", 0.0, "learning_rate: expected a positive number"),
        ("seed", -1, "seed: expected a non-negative integer"),
    ],
)
def test_invalid_values_raise_config_error(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{field: value})


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="unknown field"):
        TrainConfig.from_dict({"epochs": 3, "epochz": 4})
