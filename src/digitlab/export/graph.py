"""Editing ONNX graphs into digitlab's one contract (needs ``onnx`` only).

Every model digitlab exports has one input and one output:

* ``images``: float32 ``(batch, H, W)``, pixels / 255 in [0, 1], light ink on
  a dark background, framed like MNIST (what ``Classifier.predict_proba`` takes);
* ``probabilities``: float32 ``(batch, k)``, one column per class name, rows
  summing to 1, **calibrated**: the run's temperature is applied in the graph
  (``softmax(log(p) / T)``), so a consumer uses them as they are.

:func:`finish` turns a converter's raw graph (Keras through jax2onnx, a
scikit-learn estimator through skl2onnx) into that contract.
"""

from __future__ import annotations

import json

import numpy as np

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
#: The ONNX metadata key holding the JSON that is also written beside the file.
METADATA_KEY = "digitlab"


def _unique(graph, base: str) -> str:
    taken = {value for node in graph.node for value in (*node.input, *node.output)}
    taken |= {i.name for i in graph.input} | {o.name for o in graph.output}
    taken |= {t.name for t in graph.initializer}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _rename_value(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1)


def finish(
    model,
    *,
    image_shape: tuple[int, ...],
    num_classes: int,
    output: str | None = None,
    flatten: bool = False,
    double: bool = False,
    columns: list[int] | None = None,
    renormalise: bool = False,
    temperature: float = 1.0,
    metadata: dict | None = None,
):
    """``model`` (an ``onnx.ModelProto`` with one input) made to digitlab's contract.

    Args:
        image_shape: the run's image shape; the new input is ``(batch, *image_shape)``.
        num_classes: ``k``, the width of ``probabilities``.
        output: the graph output holding the probabilities (default: the first).
        flatten: the raw graph takes ``(batch, H*W)`` (scikit-learn): reshape first.
        double: the raw graph computes in float64: cast the input up and the
            answer down (scikit-learn's own arithmetic is float64).
        columns: the class index of each raw output column (an estimator that
            never saw some classes); missing classes get 0.
        renormalise: divide each row by its sum (as ``SklearnClassifier`` does).
        temperature: the run's calibration temperature, applied in the graph.
        metadata: written as JSON under :data:`METADATA_KEY` in the model's metadata.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    raw_input = graph.input[0]
    raw_output = next(o for o in graph.output if output is None or o.name == output)
    dtype = np.float64 if double else np.float32
    # Free the contract's names for the new input and output.
    if raw_output.name == OUTPUT_NAME:
        _rename_value(graph, OUTPUT_NAME, _unique(graph, "raw_probabilities"))
    if raw_input.name == INPUT_NAME and (flatten or double):
        _rename_value(graph, INPUT_NAME, _unique(graph, "raw_images"))
    front, back = [], []

    # The new input, then whatever the raw input needs: a reshape, a cast.
    current = INPUT_NAME
    if flatten:
        shape_name = _unique(graph, "flat_shape")
        graph.initializer.append(
            numpy_helper.from_array(
                np.array([-1, int(np.prod(image_shape))], dtype=np.int64), shape_name
            )
        )
        flat = _unique(graph, "flat_images")
        front.append(helper.make_node("Reshape", [current, shape_name], [flat]))
        current = flat
    if double:
        wide = _unique(graph, "images_float64")
        front.append(helper.make_node("Cast", [current], [wide], to=TensorProto.DOUBLE))
        current = wide
    if front:
        front[-1].output[0] = raw_input.name
    else:
        _rename_value(graph, raw_input.name, INPUT_NAME)

    current = raw_output.name
    if double:  # some converters answer float32 from float64 input (trees): widen it
        wide = _unique(graph, "raw_probabilities_float64")
        back.append(helper.make_node("Cast", [current], [wide], to=TensorProto.DOUBLE))
        current = wide
    if columns is not None and list(columns) != list(range(num_classes)):
        scatter = np.zeros((len(columns), num_classes), dtype=dtype)
        scatter[np.arange(len(columns)), np.asarray(columns)] = 1.0
        matrix = _unique(graph, "class_columns")
        graph.initializer.append(numpy_helper.from_array(scatter, matrix))
        placed = _unique(graph, "placed_probabilities")
        back.append(helper.make_node("MatMul", [current, matrix], [placed]))
        current = placed
    if renormalise:
        total, tiny = _unique(graph, "row_sums"), _unique(graph, "tiny")
        graph.initializer.append(numpy_helper.from_array(np.array(np.finfo(dtype).tiny), tiny))
        clipped, normal = _unique(graph, "row_sums_clipped"), _unique(graph, "normalised")
        if _opset(model) >= 13:  # axes became an input in opset 13
            axes = _unique(graph, "sum_axes")
            graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), axes))
            row_sum = helper.make_node("ReduceSum", [current, axes], [total], keepdims=1)
        else:
            row_sum = helper.make_node("ReduceSum", [current], [total], axes=[1], keepdims=1)
        back += [
            row_sum,
            helper.make_node("Max", [total, tiny], [clipped]),
            helper.make_node("Div", [current, clipped], [normal]),
        ]
        current = normal
    if temperature != 1.0:
        logs, scaled, factor = (_unique(graph, n) for n in ("log_p", "log_p_scaled", "inv_t"))
        graph.initializer.append(
            numpy_helper.from_array(np.array(1.0 / temperature, dtype=dtype), factor)
        )
        tempered = _unique(graph, "tempered")
        back += [
            helper.make_node("Log", [current], [logs]),
            helper.make_node("Mul", [logs, factor], [scaled]),
            helper.make_node("Softmax", [scaled], [tempered], axis=-1),
        ]
        current = tempered
    if double:
        narrow = _unique(graph, "probabilities_float32")
        back.append(helper.make_node("Cast", [current], [narrow], to=TensorProto.FLOAT))
        current = narrow
    if back:
        back.append(helper.make_node("Identity", [current], [OUTPUT_NAME]))
    else:
        _rename_value(graph, raw_output.name, OUTPUT_NAME)

    nodes = [*front, *graph.node, *back]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(
            INPUT_NAME, TensorProto.FLOAT, ["batch", *map(int, image_shape)]
        )
    )
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", num_classes])
    )
    del graph.value_info[:]  # the shapes inside changed; onnxruntime infers them again
    model.producer_name = "digitlab"
    if metadata is not None:
        set_metadata(model, metadata)
    return model


def set_metadata(model, metadata: dict) -> None:
    """Store ``metadata`` as JSON under :data:`METADATA_KEY` (replacing it)."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(metadata, sort_keys=True)


def get_metadata(model) -> dict | None:
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            try:
                value = json.loads(entry.value)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None
