"""A look inside a trained network: what it learned and why it answered.

* :func:`first_layer_weights` - the MLP's first Dense layer as one 28x28
  picture per hidden unit (the classic MNIST figure: strokes and blobs the
  unit responds to).
* :func:`hidden_activations` - every Dense layer's output for one image.
* :func:`saliency` - gradient x input: which pixels pushed the answer up
  (positive) or down (negative), for any Keras model on the JAX backend, or
  occlusion (how much the probability drops when a patch is blanked) for any
  other model.

Numbers only; :mod:`digitlab.plots` draws them (``plot_weights``,
``plot_saliency``).
"""

from __future__ import annotations

import numpy as np

from digitlab.errors import ConfigError
from digitlab.inference.predictor import as_classifier


def _keras_model(run):
    model = as_classifier(run).model
    if not hasattr(model, "layers"):
        raise ConfigError(
            f"model: expected a Keras model to look inside. Received: {type(model).__name__}"
        )
    return model


def _dense_layers(model) -> list:
    from digitlab._backend import keras

    return [layer for layer in model.layers if isinstance(layer, keras().layers.Dense)]


def first_layer_weights(run) -> np.ndarray:
    """``(units, H, W)``: the weights from every pixel into each unit of the
    first Dense layer, for a network that starts by flattening its image (the
    MLP).  Raises :class:`ConfigError` for a network that starts otherwise."""
    model = _keras_model(run)
    shape = tuple(model.input_shape[1:])
    dense = _dense_layers(model)
    if not dense or int(dense[0].kernel.shape[0]) != int(np.prod(shape)):
        raise ConfigError(
            f"model: expected a network whose first Dense layer sees every pixel (the MLP). "
            f"Received: {model.name}"
        )
    kernel = np.asarray(dense[0].kernel)  # (pixels, units)
    return kernel.T.reshape(-1, *shape)


def hidden_activations(run, image) -> list[np.ndarray]:
    """The output of every Dense layer but the last for one image ``(H, W)``
    float in [0, 1]: a list of ``(units,)`` arrays, first layer first."""
    from digitlab._backend import keras

    model = _keras_model(run)
    x = np.asarray(image, dtype=np.float32)[None]
    outputs = [layer.output for layer in _dense_layers(model)[:-1]]
    if not outputs:
        return []
    probe = keras().Model(model.inputs, outputs)
    values = probe.predict_on_batch(x)
    values = values if isinstance(values, list | tuple) else [values]
    return [np.asarray(v)[0] for v in values]


def saliency(run, images, classes=None, *, patch: int = 4) -> np.ndarray:
    """``(n, H, W)``: each pixel's share in the probability of ``classes``
    (default: the predicted class) for images ``(n, H, W)`` float in [0, 1].

    Keras on JAX: gradient x input of the class probability.  Any other
    model: occlusion, the drop in that probability when a ``patch`` x ``patch``
    square around the pixel is set to 0.
    """
    classifier = as_classifier(run)
    x = np.asarray(images, dtype=np.float32)
    probs = classifier.predict_proba(x)
    classes = probs.argmax(axis=1) if classes is None else np.asarray(classes, dtype=np.int64)
    gradient = _jax_gradient(classifier.model, x, classes)
    if gradient is not None:
        return gradient * x
    return _occlusion(classifier, x, classes, probs, patch)


def _jax_gradient(model, x: np.ndarray, classes: np.ndarray):
    if not hasattr(model, "stateless_call"):
        return None
    from digitlab._backend import keras

    if keras().backend.backend() != "jax":
        return None
    import jax
    import jax.numpy as jnp

    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    def chosen(inputs):
        out, _ = model.stateless_call(trainable, frozen, inputs, training=False)
        return jnp.sum(out[jnp.arange(inputs.shape[0]), classes])

    return np.asarray(jax.grad(chosen)(jnp.asarray(x)))


def _occlusion(classifier, x, classes, probs, patch):
    n, height, width = x.shape
    base = probs[np.arange(n), classes]
    out = np.zeros_like(x)
    for top in range(0, height, patch):
        for left in range(0, width, patch):
            blanked = x.copy()
            blanked[:, top : top + patch, left : left + patch] = 0.0
            drop = base - classifier.predict_proba(blanked)[np.arange(n), classes]
            out[:, top : top + patch, left : left + patch] = drop[:, None, None]
    return out


def saliency_png(saliency_map: np.ndarray) -> bytes:
    """A saliency map as a PNG: red where pixels pushed the answer up, blue
    where they pushed it down, white where they did nothing."""
    import io

    from PIL import Image

    values = np.asarray(saliency_map, dtype=np.float64)
    limit = float(np.abs(values).max()) or 1.0
    up = np.clip(values / limit, 0.0, 1.0)
    down = np.clip(-values / limit, 0.0, 1.0)
    rgb = np.stack([1.0 - down, 1.0 - up - down, 1.0 - up], axis=-1)
    image = Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _seen_pixels(result: dict) -> np.ndarray:
    """The images a :func:`~digitlab.inference.read_image` result says the model saw."""
    import io

    from PIL import Image

    from digitlab.inference import decode_data_url

    return np.stack(
        [
            np.asarray(Image.open(io.BytesIO(decode_data_url(url))).convert("L"), np.float32)
            / 255.0
            for url in result["images"]
        ]
    )


def activation_png(values: np.ndarray, *, columns: int = 16, cell: int = 6) -> bytes:
    """One hidden layer's activations as a grid of grey cells (brighter = more
    active, scaled to the layer's largest), ``columns`` units per row."""
    import io

    from PIL import Image

    values = np.clip(np.asarray(values, dtype=np.float32).ravel(), 0.0, None)
    rows = -(-len(values) // columns)
    grid = np.zeros(rows * columns, dtype=np.float32)
    grid[: len(values)] = values / max(float(values.max()), 1e-12)
    picture = (grid.reshape(rows, columns) * 255 + 0.5).astype(np.uint8)
    image = Image.fromarray(picture, mode="L").resize(
        (columns * cell, rows * cell), Image.Resampling.NEAREST
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def hidden(predictor, result: dict) -> list[dict]:
    """For an MLP's :func:`~digitlab.inference.read_image` result, each hidden
    layer's activations for the first image the model saw:
    ``[{"units", "active", "image"}]`` (``image`` a ``data:image/png`` URL of
    :func:`activation_png`); ``[]`` for other networks or no image."""
    import base64

    if not result.get("images"):
        return []
    try:
        first_layer_weights(predictor)  # only a network that flattens its pixels
    except ConfigError:
        return []
    layers = hidden_activations(predictor, _seen_pixels(result)[0])
    return [
        {
            "units": int(values.size),
            "active": int((values > 0).sum()),
            "image": "data:image/png;base64,"
            + base64.b64encode(activation_png(values)).decode("ascii"),
        }
        for values in layers
    ]


def why(predictor, result: dict) -> list[str]:
    """For a :func:`~digitlab.inference.read_image` result, one
    ``data:image/png`` URL per image the model saw: its saliency map for the
    class the model answered (see :func:`saliency`)."""
    import base64

    if not result.get("images"):
        return []
    maps = saliency(predictor, _seen_pixels(result))
    return [
        "data:image/png;base64," + base64.b64encode(saliency_png(m)).decode("ascii") for m in maps
    ]
