"""The one frozen configuration of a training run.

Built once at the edge (CLI flags, a sweep grid, a web form), validated here,
passed down unchanged and saved with the run, so a run can be rebuilt from its
``config.json`` alone.  A sweep is ``dataclasses.replace(base, **overrides)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any

from digitlab.errors import ConfigError

SPLITS = ("tutorial", "official")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "nadam")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "elu", "selu", "swish", "linear")
LR_SCHEDULES = ("constant", "cosine")
#: What computes a Keras network's training: Keras itself (on JAX), or PyTorch
#: (:mod:`digitlab.models.torch_engine`; ``pip install 'digitlab[torch]'``).
ENGINES = ("keras", "torch")
#: The optimizers each engine trains with.
ENGINE_OPTIMIZERS = {"keras": OPTIMIZERS, "torch": ("sgd", "adam", "adamw", "rmsprop")}
#: Seeds are what every backend's generator accepts: 0 <= seed < 2**32.
MAX_SEED = 2**32
#: Training computes in float32: a larger rate would become infinity.
MAX_LEARNING_RATE = 3.4e38
#: Pixels between the points at which an elastic displacement is drawn (``elastic``).
ELASTIC_SPACING = 6
#: The most an elastic displacement may be (pixels, standard deviation).
MAX_ELASTIC = 10.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a training run computes.

    The defaults are the tutorial: ``Dense(128, relu) -> Dense(10, softmax)``,
    SGD at Keras' default learning rate (0.01), categorical cross-entropy,
    20 epochs of batch 128 on a seeded 45,000 / 15,000 split of the 60,000
    training images.
    """

    model: str = "mlp"
    hidden: tuple[int, ...] = (128,)
    activation: str = "relu"
    dropout_rate: float = 0.0
    optimizer: str = "sgd"
    learning_rate: float | None = None
    epochs: int = 20
    batch_size: int = 128
    split: str = "tutorial"
    validation_size: int = 15_000
    seed: int = 42
    lr_schedule: str = "constant"
    label_smoothing: float = 0.0
    augment: bool = False
    #: With ``augment``, also bend each training image by a smooth random
    #: displacement field of this standard deviation (pixels; 0: off).
    elastic: float = 0.0
    early_stopping: int = 0
    restore_best: bool = False
    #: A known dataset's name (``mnist``, ``fashion-mnist``); None: MNIST, or
    #: whatever the data folder holds.
    dataset: str | None = None
    #: Fit a temperature on validation data after training so that the
    #: probabilities mean what they say (see :func:`digitlab.evaluation.fit_temperature`).
    calibrate: bool = True
    #: On the official split (whose evaluation set is the test set), this many
    #: training images (the same for every seed) are held out to validate and calibrate on.
    calibration_size: int = 5000
    #: What trains a Keras network: ``"keras"`` (Keras on JAX) or ``"torch"``
    #: (the same network and recipe in PyTorch, bfloat16 on CPUs with AMX).
    engine: str = "keras"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model: expected a model name. Received: model={self.model!r}")
        if not all(_is_int(units) and units >= 1 for units in self.hidden):
            raise ConfigError(
                f"hidden: expected positive integers. Received: hidden={self.hidden!r}"
            )
        object.__setattr__(self, "hidden", tuple(int(units) for units in self.hidden))
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("split", self.split, SPLITS)
        if not isinstance(self.dropout_rate, numbers.Real) or not 0.0 <= self.dropout_rate < 1.0:
            raise ConfigError(
                f"dropout_rate: expected a number in [0, 1). Received: {self.dropout_rate!r}"
            )
        rate = self.learning_rate
        if rate is not None and (
            not isinstance(rate, numbers.Real)
            or isinstance(rate, bool)
            or not math.isfinite(rate)
            or not 0 < rate <= MAX_LEARNING_RATE
        ):
            raise ConfigError(
                f"learning_rate: expected a positive number, finite and at most "
                f"{MAX_LEARNING_RATE:g} (float32's largest). Received: {rate!r}"
            )
        for name in ("epochs", "batch_size", "validation_size", "calibration_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(
                    f"{name}: expected a positive integer. Received: {name}={value!r}"
                )
        if not _is_int(self.seed) or not 0 <= self.seed < MAX_SEED:
            raise ConfigError(
                f"seed: expected a non-negative integer below 2**32 ({MAX_SEED}), what "
                f"every backend's generator takes. Received: {self.seed!r}"
            )
        if self.dataset is not None and (not isinstance(self.dataset, str) or not self.dataset):
            raise ConfigError(
                f"dataset: expected a dataset name or None. Received: dataset={self.dataset!r}"
            )
        self._check_training_options()

    def _check_training_options(self) -> None:
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_choice("engine", self.engine, ENGINES)
        if self.optimizer not in ENGINE_OPTIMIZERS[self.engine]:
            *rest, last = ENGINE_OPTIMIZERS[self.engine]
            raise ConfigError(
                f"optimizer: --engine {self.engine} trains with {', '.join(rest)} or {last}. "
                f"Received: optimizer={self.optimizer!r}"
            )
        smoothing = self.label_smoothing
        if not isinstance(smoothing, numbers.Real) or not 0.0 <= smoothing < 1.0:
            raise ConfigError(
                f"label_smoothing: expected a number in [0, 1). Received: {smoothing!r}"
            )
        for name in ("augment", "restore_best", "calibrate"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"{name}: expected true or false. Received: {name}={value!r}")
        elastic = self.elastic
        if (
            not isinstance(elastic, numbers.Real)
            or isinstance(elastic, bool)
            or not 0.0 <= elastic <= MAX_ELASTIC
        ):
            raise ConfigError(
                f"elastic: expected a number of pixels in [0, {MAX_ELASTIC:g}]. "
                f"Received: elastic={elastic!r}"
            )
        if elastic and not self.augment:
            raise ConfigError(
                f"elastic: bends the augmented images, so it needs augment=True. "
                f"Received: elastic={elastic!r}, augment=False"
            )
        if not _is_int(self.early_stopping) or self.early_stopping < 0:
            raise ConfigError(
                "early_stopping: expected a non-negative integer (epochs of patience, "
                f"0 for off). Received: early_stopping={self.early_stopping!r}"
            )
        if self.split == "official" and (self.early_stopping or self.restore_best):
            # On the official split the monitored set is the test set: picking
            # the epoch by it would report an optimistic test accuracy.
            raise ConfigError(
                "early_stopping/restore_best: expected split='tutorial', which holds out "
                "validation images to choose the epoch by. Received: split='official' "
                "(its evaluation set is the test set)"
            )

    @classmethod
    def for_model(cls, model: str = "mlp", **fields: Any) -> TrainConfig:
        """The config for ``model``: the tutorial's defaults, then the model
        kind's own (:attr:`digitlab.models.ModelKind.defaults`), then ``fields``
        (which always win).  An unknown model name raises :class:`ConfigError`.

        Without an ``engine``, a kind that lists engines (``cnn``, ``cnn-deep``)
        gets the first of them that is installed (PyTorch's, then Keras'), and
        that engine's defaults (``cnn``: 30 epochs on ``torch``, 15 on ``keras``);
        Keras when the optimizer asked for is one the first cannot train."""
        from digitlab.models import registry

        registry.get(model)  # the error lists the valid names
        chosen = {**registry.defaults_for(model, fields.get("engine")), **fields}
        engine = chosen.get("engine", "keras")
        if (
            "engine" not in fields
            and chosen.get("optimizer", "sgd") not in ENGINE_OPTIMIZERS[engine]
        ):
            # The fastest engine cannot train this optimizer: Keras can.
            chosen = {**registry.defaults_for(model, "keras"), **fields}
        return cls(model=model, **chosen)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        for name, default in _ADDED_SINCE_0_1.items():
            if data[name] == default:
                # Configs of 0.1.0 had no such field: leaving it out at its default
                # keeps their JSON, and so the keys of existing sweep trials, unchanged.
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from ``to_dict()`` output; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError(f"config: expected a JSON object. Received: {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config: unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


#: Fields added after digitlab 0.1.0, with the default a 0.1.0 config.json means.
_ADDED_SINCE_0_1 = {
    "dataset": None,
    "calibrate": True,
    "calibration_size": 5000,
    "engine": "keras",
    "elastic": 0.0,
}


def elastic_grid(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of the coarse grid an elastic displacement is drawn on."""
    return math.ceil(height / ELASTIC_SPACING), math.ceil(width / ELASTIC_SPACING)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{name}: expected one of {', '.join(choices)}. Received: {name}={value!r}"
        )
