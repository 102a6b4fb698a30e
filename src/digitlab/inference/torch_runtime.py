"""digitlab's Keras networks on PyTorch: the same layers, on oneDNN and AMX.

XLA:CPU, which runs Keras on JAX, uses neither oneDNN's convolutions nor the
AMX matrix tiles of recent Intel CPUs; PyTorch's CPU kernels use both.  On the
2-core Xeon this project is benchmarked on, today's ``cnn`` predicts ~5.8x as
many images per second here in bfloat16 as on JAX in float32, with 1 answer in
10,000 changed (``benchmarks/bench_bf16.py``).

:class:`TorchNetwork` computes a Sequential network given as
:func:`digitlab.inference.numpy_keras.read_layers` lists it, ``(class_name,
config, weights)`` per layer, in one of two modes:

* for inference (``training=False``): each BatchNormalization folded into the
  convolution or dense layer before it, Dropout and Augmentation left out;
* for training (``training=True``, what ``--engine torch`` trains:
  :mod:`digitlab.models.torch_engine`): every weight a parameter in Keras'
  own layout, batch norm and dropout as Keras computes them in training, the
  augmentation drawn from a seeded generator; :meth:`TorchNetwork.keras_weights`
  gives the weights back, per layer, for ``layer.set_weights``.

An ensemble run (:mod:`digitlab.ensemble`) is a :class:`TorchEnsemble`: each
member a :class:`TorchNetwork`, then the members' tempered mean.

Tensors keep Keras' channels-last layout; convolutions see a channels-first
*view* of it, which PyTorch runs as a channels-last convolution, so no layer
copies its input to change layout.  bfloat16 (autocast) is used where the CPU
computes it natively (:func:`native_bfloat16`), float32 elsewhere.

PyTorch is optional (``pip install 'digitlab[torch]'``): this module imports
it on first use, and says how to install it when it is missing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from digitlab.config import elastic_grid
from digitlab.errors import ConfigError
from digitlab.inference.classifier import Classifier

#: What this module computes: the layers digitlab's mlp and cnns use.
LAYERS = tuple(
    "Reshape Permute Augmentation Conv2D BatchNormalization Activation MaxPool2x2 Flatten "
    "Dense Dropout".split()
)


def import_torch(field: str = "runtime"):
    """``torch``, or a :class:`ConfigError` naming ``field`` and how to install it."""
    try:
        import torch
    except ImportError:
        flag = "--runtime torch" if field == "runtime" else "--engine torch"
        raise ConfigError(
            f"{field}: {flag} needs PyTorch, which is not installed. Install it: "
            "pip install 'digitlab[torch]'"
        ) from None
    return torch


def native_bfloat16() -> bool:
    """True where this CPU multiplies bfloat16 in hardware (AMX tiles or
    AVX-512 BF16): there bfloat16 is 2-4x float32's speed; elsewhere it is
    emulated and slower, and float32 is used."""
    torch = import_torch()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


class UnsupportedLayer(ValueError):
    """A layer or option :class:`TorchNetwork` does not compute."""


def _activation(name):
    import torch.nn.functional as F

    functions = {
        "linear": lambda x: x,
        "relu": F.relu,
        "sigmoid": lambda x: x.sigmoid(),
        "tanh": lambda x: x.tanh(),
        "elu": F.elu,
        "selu": F.selu,
        "gelu": F.gelu,  # exact, as Keras' "gelu" (approximate=False)
        "swish": F.silu,
        "silu": F.silu,
        "softmax": lambda x: x.softmax(-1),
    }
    if not isinstance(name, str) or name not in functions:
        raise UnsupportedLayer(f"activation {name!r}")
    return functions[name]


def _channels_first(x):
    """A channels-last batch ``(n, h, w, c)`` as a channels-first view."""
    return x.permute(0, 3, 1, 2)


def _channels_last(x):
    return x.permute(0, 2, 3, 1)


class TorchNetwork:
    """A Sequential network of :data:`LAYERS`, computed by PyTorch.

    ``layers``: ``(class_name, config, weights)`` per layer, as
    :func:`~digitlab.inference.numpy_keras.read_layers` returns them or as
    :func:`keras_layers` reads them off a live Keras model.  Calling it maps a
    float32 batch to what the Keras network returns; in training mode the last
    softmax is left out (logits, for a cross-entropy on logits).
    """

    def __init__(
        self, layers, *, input_shape=None, training: bool = False, seed: int = 0, bfloat16=None
    ):
        torch = import_torch()
        self.torch = torch
        self.training = training
        self.bfloat16 = native_bfloat16() if bfloat16 is None else bool(bfloat16)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.parameters: list = []
        self._steps: list = []
        self._weights: list = []  # per layer: the tensors keras_weights returns
        pending = list(layers)
        units = [int(config["units"]) for kind, config, _ in pending if kind == "Dense"]
        self.input_shape = (None, *input_shape) if input_shape is not None else None
        self.output_shape = (None, units[-1] if units else None)
        last = len(pending) - 1
        for index, (kind, config, weights) in enumerate(pending):
            if kind not in (*LAYERS, "Folded"):
                raise UnsupportedLayer(kind)
            folded = (
                not training
                and kind in ("Conv2D", "Dense")
                and index < last
                and pending[index + 1][0] == "BatchNormalization"
                and config.get("activation", "linear") == "linear"
            )
            self._add(
                kind,
                config,
                weights,
                final=index == last,
                fold=pending[index + 1] if folded else None,
            )
            if folded:
                pending[index + 1] = ("Folded", {}, [])

    # Building ---------------------------------------------------------------

    def _tensor(self, array, *, trainable: bool):
        t = self.torch.tensor(np.asarray(array, np.float32))
        if trainable and self.training:
            t.requires_grad_(True)
            self.parameters.append(t)
        return t

    def _add(self, kind, config, weights, *, final: bool, fold) -> None:
        import torch.nn.functional as F

        step, tensors = None, []
        if kind == "Folded" or kind in ("Dropout", "Augmentation") and not self.training:
            pass
        elif kind == "Reshape":
            shape = tuple(int(s) for s in config["target_shape"])
            step = lambda x: x.reshape((x.shape[0], *shape))  # noqa: E731
        elif kind == "Permute":
            dims = (0, *(int(d) for d in config["dims"]))
            step = lambda x: x.permute(dims)  # noqa: E731
        elif kind == "Flatten":
            step = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731
        elif kind == "MaxPool2x2":
            step = lambda x: _channels_last(F.max_pool2d(_channels_first(x), 2))  # noqa: E731
        elif kind == "Activation":
            step = _activation(config.get("activation"))
        elif kind == "Dropout":
            rate = float(config.get("rate", 0.0))
            step = lambda x: F.dropout(x, rate, training=self.training)  # noqa: E731
        elif kind == "Augmentation":
            step = self._augmentation(config)
        elif kind in ("Conv2D", "Dense"):
            step, tensors = self._linear(kind, config, weights, final=final, fold=fold)
        elif kind == "BatchNormalization":
            step, tensors = self._batch_norm(config, weights)
        if step is not None:
            self._steps.append(step)
        self._weights.append(tensors)

    def _linear(self, kind, config, weights, *, final: bool, fold):
        import torch.nn.functional as F

        use_bias = config.get("use_bias", True)
        if len(weights) != (2 if use_bias else 1):
            raise UnsupportedLayer(f"{kind} with {len(weights)} weights")
        kernel = np.asarray(weights[0], np.float32)
        bias = np.asarray(weights[1], np.float32) if use_bias else None
        if kind == "Conv2D" and (
            config.get("padding") != "same"
            or tuple(config.get("strides", (1, 1))) != (1, 1)
            or tuple(config.get("dilation_rate", (1, 1))) != (1, 1)
            or config.get("groups", 1) != 1
            or config.get("data_format", "channels_last") != "channels_last"
            or kernel.ndim != 4
        ):
            raise UnsupportedLayer(f"{kind} {config}")
        if fold is not None:
            from digitlab.inference.numpy_keras import batch_norm_map

            found = batch_norm_map(fold[1], fold[2])
            if found is None:
                raise UnsupportedLayer("BatchNormalization weights")
            factor, shift = found
            kernel = kernel * factor
            bias = shift if bias is None else bias * factor + shift
        name = config.get("activation", "linear")
        # Training: logits out of the last layer, for a cross-entropy on logits.
        act = _activation("linear" if final and self.training and name == "softmax" else name)
        tensors = [self._tensor(kernel, trainable=True)]
        if bias is not None:
            tensors.append(self._tensor(bias, trainable=True))
        w, b = tensors[0], tensors[1] if len(tensors) > 1 else None
        if kind == "Dense":

            def dense(x):
                return act(F.linear(x, w.t(), b))

            return dense, tensors

        def conv(x):
            # Keras' kernel (h, w, in, out) as PyTorch's (out, in, h, w), a view.
            y = F.conv2d(_channels_first(x), w.permute(3, 2, 0, 1), b, padding="same")
            return act(_channels_last(y))

        return conv, tensors

    def _batch_norm(self, config, weights):
        import torch.nn.functional as F

        if config.get("axis", -1) not in (-1, [-1]):
            raise UnsupportedLayer(f"BatchNormalization axis={config.get('axis')}")
        epsilon = float(config.get("epsilon", 1e-3))
        rest = [np.asarray(w, np.float32) for w in weights]
        tensors = []
        gamma = beta = None
        if config.get("scale", True):
            gamma = self._tensor(rest.pop(0), trainable=True)
            tensors.append(gamma)
        if config.get("center", True):
            beta = self._tensor(rest.pop(0), trainable=True)
            tensors.append(beta)
        if len(rest) != 2:
            raise UnsupportedLayer("BatchNormalization weights")
        mean, variance = (self._tensor(w, trainable=False) for w in rest)
        tensors += [mean, variance]
        # Keras: moving = moving * momentum + batch * (1 - momentum).
        momentum = 1.0 - float(config.get("momentum", 0.99))

        def norm(x):
            four = x.ndim == 4
            y = F.batch_norm(
                _channels_first(x) if four else x,
                mean,
                variance,
                gamma,
                beta,
                training=self.training,
                momentum=momentum,
                eps=epsilon,
            )
            return _channels_last(y) if four else y

        return norm, tensors

    def _augmentation(self, config):
        """Digitlab's Augmentation layer (:class:`digitlab.layers.Augmentation`):
        one random rotation, zoom and shift per image, and its elastic
        displacement field if it has one (:func:`affine`)."""
        import torch.nn.functional as F

        torch = self.torch
        rotation = float(config.get("rotation", 10.0)) * math.pi / 180
        zoom, shift = float(config.get("zoom", 0.1)), float(config.get("shift", 0.1))
        elastic = float(config.get("elastic", 0.0))

        def augment(x):
            if not self.training:
                return x
            n, height, width = x.shape[0], x.shape[1], x.shape[2]

            def uniform(limit):
                return (torch.rand(n, generator=self.generator) * 2 - 1) * limit

            angle, scale = uniform(rotation), 1.0 + uniform(zoom)
            field = None
            if elastic:  # bilinear with half-pixel centres, as keras.ops.image.resize
                coarse = torch.randn(n, 2, *elastic_grid(height, width), generator=self.generator)
                field = F.interpolate(coarse * elastic, size=(height, width), mode="bilinear")
                field = field.permute(0, 2, 3, 1)
            return affine(x, angle, scale, uniform(shift * width), uniform(shift * height), field)

        return augment

    # Using ------------------------------------------------------------------

    def __call__(self, x):
        """The network on a float32 batch (a tensor or an array)."""
        torch = self.torch
        if not isinstance(x, torch.Tensor):
            x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            for step in self._steps[:-1]:
                x = step(x)
            if self._steps and not self.training:
                # The last layer (its softmax) in float32: the probabilities
                # are what calibration and "not a digit" read.
                with torch.autocast("cpu", enabled=False):
                    return self._steps[-1](x.float())
            return self._steps[-1](x) if self._steps else x

    def keras_weights(self) -> list[list[np.ndarray]]:
        """Per layer of the network it was built from, its weights in Keras' order."""
        return [[t.detach().numpy().copy() for t in tensors] for tensors in self._weights]


def affine(images, angle, scale, shift_x, shift_y, field=None):
    """Channels-last ``images`` (n, h, w, c) resampled as the Augmentation layer
    does: output pixel p reads the input at ``scale * R(angle) (p - centre) +
    centre + shift`` (in pixels), plus ``field[p]`` (n, h, w, 2: x and y, in
    pixels) if given, bilinearly, black outside; one ``angle``, ``scale`` and
    shift per image (tensors of n)."""
    import torch
    import torch.nn.functional as F

    height, width = images.shape[1], images.shape[2]
    # In grid_sample's coordinates (align_corners: -1 and 1 are the centres
    # of the outer pixels).
    cx, cy = (width - 1) / 2, (height - 1) / 2
    cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos, -sin * cy / cx, shift_x / cx], 1),
            torch.stack([sin * cx / cy, cos, shift_y / cy], 1),
        ],
        1,
    ).to(images.dtype)
    channels_first = _channels_first(images)
    grid = F.affine_grid(theta, list(channels_first.shape), align_corners=True)
    if field is not None:
        grid = grid + (field / torch.tensor([cx, cy])).to(grid.dtype)
    out = F.grid_sample(
        channels_first, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return _channels_last(out)


def keras_layers(model) -> list:
    """A live Keras Sequential model's layers as :class:`TorchNetwork` takes them."""
    return [
        (type(layer).__name__, layer.get_config(), layer.get_weights()) for layer in model.layers
    ]


class TorchClassifier(Classifier):
    """A run's Keras network on PyTorch, behind the :class:`Classifier` contract.

    Inference runs under ``torch.inference_mode``; PyTorch's CPU kernels are
    thread-safe, so one classifier serves many threads.
    """

    backend = "torch"

    def __init__(self, network: TorchNetwork, *, class_names, image_shape, description=None):
        super().__init__(network, class_names=class_names, image_shape=image_shape)
        self.description = dict(description or {})
        self.check_network(network)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        torch = self.model.torch
        with torch.inference_mode():
            return self.model(x).numpy().astype(np.float32, copy=False)


class TorchEnsemble:
    """An ensemble run's network (:func:`digitlab.ensemble.build_network`) on
    PyTorch: each member a :class:`TorchNetwork` for inference, its answer
    recalibrated by its temperature as the ``Temper`` layer does, then the
    mean.  ``members``: ``(layers, temperature)`` per member, as
    :func:`~digitlab.inference.numpy_keras.read_network` reads them."""

    def __init__(self, members, *, input_shape, bfloat16=None):
        self.networks = [
            TorchNetwork(layers, input_shape=input_shape, bfloat16=bfloat16)
            for layers, _ in members
        ]
        self.temperatures = [float(temperature) for _, temperature in members]
        self.torch = self.networks[0].torch
        self.input_shape = self.networks[0].input_shape
        self.output_shape = self.networks[0].output_shape  # the members' (checked when made)

    @property
    def bfloat16(self) -> bool:
        return self.networks[0].bfloat16

    @bfloat16.setter
    def bfloat16(self, value) -> None:
        for network in self.networks:
            network.bfloat16 = bool(value)

    def __call__(self, x):
        total = 0
        for network, temperature in zip(self.networks, self.temperatures, strict=True):
            logits = network(x).clamp(1e-12, 1.0).log() / temperature
            total = total + logits.softmax(-1)
        return total / len(self.networks)


def load(file: Path, *, class_names, image_shape) -> TorchClassifier:
    """The Keras archive ``file`` (a run's ``model.keras``) as a :class:`TorchClassifier`.

    Raises :class:`ConfigError` naming ``runtime`` when PyTorch is missing or
    the network is neither one Sequential network of :data:`LAYERS` nor an
    ensemble of them (:func:`digitlab.ensemble.build_network`)."""
    from digitlab.inference import numpy_keras

    import_torch()
    found = numpy_keras.read_network(Path(file))
    if found is None:
        raise ConfigError(
            f"runtime: --runtime torch expected a network of digitlab's layers (or an "
            f"ensemble of them) in {file}. Use --runtime native"
        )
    name, input_shape, parts, ensemble = found
    try:
        network = (TorchEnsemble if ensemble else TorchNetwork)(parts, input_shape=input_shape)
    except UnsupportedLayer as exc:
        raise ConfigError(
            f"runtime: --runtime torch does not compute {exc} (in {file}). Use --runtime native"
        ) from None
    precision = "bfloat16" if network.bfloat16 else "float32"
    return TorchClassifier(
        network,
        class_names=class_names,
        image_shape=image_shape,
        description={"network": name, "precision": precision},
    )
