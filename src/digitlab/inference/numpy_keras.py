"""The forward pass of digitlab's own Keras networks in NumPy, for quick answers.

``digitlab predict`` answers one image.  Importing Keras and JAX and
compiling the forward pass costs 1.5-3 s; the arithmetic for one image costs
microseconds.  :func:`load` reads a ``model.keras`` archive (its
``config.json`` and ``model.weights.h5``) without Keras and returns a
:class:`NumpyNetwork` when every layer is one it knows -- the layers digitlab's
mlp and cnns are made of -- or None, and the caller loads the archive
with Keras as usual.  The answers match Keras' to float32 rounding (tested).
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np

from digitlab.inference.classifier import Classifier


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
    "elu": _elu,
    "selu": lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
}


class _Unsupported(Exception):
    """A layer or option this module does not compute: use Keras."""


def _activation(name):
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise _Unsupported(name)
    return ACTIVATIONS[name]


def _conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """A stride-1 "same" convolution, channels last, as one matrix product."""
    kh, kw, cin, cout = kernel.shape
    n, h, w, _ = x.shape
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    patches = np.empty((n, h, w, kh, kw, cin), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patches[:, :, :, i, j, :] = padded[:, i : i + h, j : j + w, :]
    return patches.reshape(n * h * w, -1).dot(kernel.reshape(-1, cout)).reshape(n, h, w, cout)


def _layer(kind: str, config: dict, weights: list[np.ndarray]):
    """One layer as a function of a batch ``(n, ...)``."""
    if kind in ("Dropout", "Augmentation", "InputLayer"):
        return None
    if kind == "Flatten":
        return lambda x: x.reshape(x.shape[0], -1)
    if kind == "Reshape":
        shape = tuple(int(s) for s in config["target_shape"])
        return lambda x: x.reshape((x.shape[0], *shape))
    if kind == "Permute":
        dims = (0, *(int(d) for d in config["dims"]))
        return lambda x: x.transpose(dims)
    if kind == "Activation":
        return _activation(config.get("activation"))
    if kind == "MaxPool2x2":

        def pool(x):
            h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
            top = np.maximum(x[:, 0:h:2, 0:w:2], x[:, 0:h:2, 1:w:2])
            return np.maximum(top, np.maximum(x[:, 1:h:2, 0:w:2], x[:, 1:h:2, 1:w:2]))

        return pool
    if kind == "Dense":
        act = _activation(config.get("activation", "linear"))
        kernel = weights[0]
        bias = weights[1] if config.get("use_bias", True) else None
        if len(weights) != (2 if bias is not None else 1) or kernel.ndim != 2:
            raise _Unsupported(kind)
        return lambda x: act(x.dot(kernel) + bias if bias is not None else x.dot(kernel))
    if kind == "Conv2D":
        if (
            config.get("padding") != "same"
            or tuple(config.get("strides", (1, 1))) != (1, 1)
            or tuple(config.get("dilation_rate", (1, 1))) != (1, 1)
            or config.get("groups", 1) != 1
            or config.get("data_format", "channels_last") != "channels_last"
        ):
            raise _Unsupported(kind)
        act = _activation(config.get("activation", "linear"))
        kernel = weights[0]
        bias = weights[1] if config.get("use_bias", True) else None
        if len(weights) != (2 if bias is not None else 1) or kernel.ndim != 4:
            raise _Unsupported(kind)
        return lambda x: act(_conv_same(x, kernel) + (0 if bias is None else bias))
    if kind == "BatchNormalization":
        if config.get("axis", -1) not in (-1, [-1]):
            raise _Unsupported(kind)
        found = batch_norm_map(config, weights)
        if found is None:
            raise _Unsupported(kind)
        factor, shift = found
        return lambda x: x * factor + shift
    raise _Unsupported(kind)


def batch_norm_map(config: dict, weights: list) -> tuple[np.ndarray, np.ndarray] | None:
    """A BatchNormalization at inference as ``x * factor + shift`` (float32),
    from its Keras config and weights; None if the weights do not fit the config."""
    rest = [np.asarray(w, np.float32) for w in weights]
    gamma = rest.pop(0) if config.get("scale", True) and rest else np.float32(1.0)
    beta = rest.pop(0) if config.get("center", True) and rest else np.float32(0.0)
    if len(rest) != 2:
        return None
    mean, variance = rest
    factor = gamma / np.sqrt(variance + np.float32(config.get("epsilon", 1e-3)))
    return factor.astype(np.float32), (beta - mean * factor).astype(np.float32)


class NumpyNetwork:
    """A Keras ``Sequential`` network of known layers, computed with NumPy."""

    def __init__(self, name: str, input_shape: tuple[int, ...], layers: list, outputs: int):
        self.name = name
        self.input_shape = (None, *input_shape)
        self.output_shape = (None, outputs)
        self._layers = layers

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for layer in self._layers:
            x = layer(x)
        return x

    def __repr__(self) -> str:
        return f"NumpyNetwork({self.name!r}, {len(self._layers)} layers)"


def _snake_case(name: str) -> str:
    """Keras' ``to_snake_case``: ``BatchNormalization`` → ``batch_normalization``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _saved_name(kind: str, used: dict[str, int]) -> str:
    """Where Keras keeps a layer's weights in the archive: its class in snake
    case, numbered within the model (``dense``, ``dense_1``…), not its name."""
    base = _snake_case(kind)
    count = used.get(base, 0)
    used[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def read_layers(file: Path) -> tuple[str, tuple[int, ...], list] | None:
    """The Sequential network in the Keras archive ``file`` (already checked by
    :func:`digitlab.inference.formats.check_archive`) as ``(name, input_shape,
    layers)``, each layer ``(class_name, config, weights)`` with its weights as
    float32 arrays in Keras' order; None when the archive is not one
    Sequential network this way readable (Keras then says what is wrong)."""
    found = read_network(file)
    return found[:3] if found is not None and not found[3] else None


def read_network(file: Path) -> tuple[str, tuple[int, ...], list, bool] | None:
    """The network in the Keras archive ``file`` as ``(name, input_shape, parts,
    ensemble)``: one Sequential network (``ensemble`` False, ``parts`` its
    layers as :func:`read_layers` gives them) or an ensemble as
    :func:`digitlab.ensemble.build_network` builds it (each member's Sequential
    network, its ``Temper``, then ``Average``; ``ensemble`` True, ``parts``
    ``(layers, temperature)`` per member); None when it is neither."""
    found = _read_archive(file)
    if found is None:
        return None
    config, h5 = found
    kind = config.get("class_name")
    with h5:
        try:
            if kind == "Sequential":
                read = _sequential(config, h5["layers"])
            elif kind == "Functional":
                read = _members(config["config"]["layers"], h5["layers"])
            else:
                read = None
        except (KeyError, IndexError, TypeError, ValueError, OSError):
            return None
    if read is None:
        return None
    return (config["config"].get("name", "model"), *read, kind == "Functional")


def _members(specs: list, group) -> tuple[tuple[int, ...], list] | None:
    """An ensemble's input shape and members (:func:`read_network`) from its saved layers."""
    networks = [s for s in specs if s["class_name"] == "Sequential"]
    tempers = {_source_of(s): s for s in specs if s["class_name"] == "Temper"}
    count = len(networks)
    if not count or len(tempers) != count or len(specs) != 2 * count + 2:
        return None
    if [specs[0]["class_name"], specs[-1]["class_name"]] != ["InputLayer", "Average"]:
        return None
    averaged = {_source(arg) for arg in specs[-1]["inbound_nodes"][0]["args"][0]}
    if averaged != {t["config"]["name"] for t in tempers.values()}:
        return None
    members, used = [], {}
    for spec in specs:
        saved = _saved_name(spec["class_name"], used)
        if spec["class_name"] != "Sequential":
            continue
        temper = tempers.get(spec["config"]["name"])
        read = _sequential(spec, group[saved]["layers"])
        if temper is None or read is None:
            return None
        members.append((read[1], float(temper["config"]["temperature"])))
    input_shape = tuple(int(s) for s in specs[0]["config"]["batch_shape"][1:])
    return (input_shape, members) if math.prod(input_shape) else None


def _source(tensor: dict) -> str:
    """The layer a saved Keras tensor comes from."""
    return tensor["config"]["keras_history"][0]


def _source_of(spec: dict) -> str:
    """The layer a one-input layer's saved call reads from."""
    return _source(spec["inbound_nodes"][0]["args"][0])


def _read_archive(file: Path):
    """The archive's ``config.json`` and its open ``model.weights.h5``, or None."""
    try:
        with zipfile.ZipFile(file) as archive:
            config = json.loads(archive.read("config.json"))
            weights_file = io.BytesIO(archive.read("model.weights.h5"))
        import h5py

        return config, h5py.File(weights_file, "r")
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None


def _sequential(config: dict, group) -> tuple[tuple[int, ...], list] | None:
    """A saved Sequential network (its config and its h5 ``layers`` group) as
    ``(input_shape, layers)``, or None."""
    try:
        layers, input_shape, used = [], None, {}
        for spec in config["config"]["layers"]:
            kind, options = spec["class_name"], spec["config"]
            if kind == "InputLayer":
                input_shape = tuple(int(s) for s in options["batch_shape"][1:])
                continue
            name = _saved_name(kind, used)
            found = group[name]["vars"] if name in group else {}
            weights = [np.asarray(found[str(i)], dtype=np.float32) for i in range(len(found))]
            layers.append((kind, options, weights))
    except (KeyError, IndexError, TypeError, ValueError, OSError):
        return None
    if input_shape is None or not math.prod(input_shape):
        return None
    return input_shape, layers


def outputs_of(layers: list) -> int | None:
    """The width of the last Dense layer of ``read_layers``' list (None: none)."""
    widths = [int(options["units"]) for kind, options, _ in layers if kind == "Dense"]
    return widths[-1] if widths else None


def load(file: Path) -> NumpyNetwork | None:
    """The network in the Keras archive ``file`` (already checked by
    :func:`digitlab.inference.formats.check_archive`), or None when it has a
    layer this module does not compute."""
    found = read_layers(file)
    if found is None or outputs_of(found[2]) is None:
        return None
    name, input_shape, specs = found
    try:
        layers = [_layer(kind, options, weights) for kind, options, weights in specs]
    except _Unsupported:
        return None
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    layers = [layer for layer in layers if layer is not None]
    return NumpyNetwork(name, input_shape, layers, outputs_of(specs))


class NumpyClassifier(Classifier):
    """A :class:`NumpyNetwork` behind the :class:`Classifier` contract."""

    backend = "numpy"

    def __init__(self, network: NumpyNetwork, *, class_names, image_shape):
        super().__init__(network, class_names=class_names, image_shape=image_shape)
        self.check_network(network)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self.model(x.astype(np.float32, copy=False))
