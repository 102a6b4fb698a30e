"""Would bfloat16 on this CPU's matrix units lift the convnets' throughput?

Issue 10 asks for 5x the cnn's batch throughput.  digitlab computes in float32
on JAX (XLA:CPU), which does not use the AMX tiles of recent Xeons; bfloat16
through XLA was no faster (``bench_predict.py``'s notes, ``bench_conv.py``'s
``conv-bf16``).  PyTorch's oneDNN does use them.  This runs one trained run's
weights side by side, in one process, on the official test images, batch 1024:

* digitlab: ``load_run(RUN).predict_proba`` (JAX, float32);
* PyTorch float32 (oneDNN, channels-last) with the same weights;
* PyTorch under ``torch.autocast("cpu", dtype=torch.bfloat16)``;

and prints images/s (best of ``--repeats``), accuracy, how many answers agree
with digitlab's, a float32 matrix-product rate against a bfloat16 one, and the
ratios.  PyTorch is not a digitlab dependency: install it first
(``pip install torch``).  Digitlab's own convnets (``cnn``, ``cnn-fast``) only::

    python benchmarks/bench_bf16.py RUN [--images 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _machine import best_seconds, describe


def matmul_rates(torch, size: int = 4096, repeats: int = 3) -> dict[str, float]:
    """GFLOP/s of one ``size`` x ``size`` matrix product, float32 and bfloat16."""
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        rates[str(dtype).removeprefix("torch.")] = (
            2 * size**3 / best_seconds(lambda a=a, b=b: a @ b, repeats) / 1e9
        )
    return rates


def torch_network(torch, keras_model):
    """The Keras network as a function of a ``(n, h, w)`` float32 tensor,
    computed NCHW (channels-last in memory) with the same weights, each
    BatchNormalization folded into the convolution or dense layer before it.
    Raises ValueError for a layer it does not know."""
    functional = torch.nn.functional
    layers = [(layer, layer.__class__.__name__) for layer in keras_model.layers]
    kinds = [kind for _, kind in layers]
    steps = []  # [kind, kernel, bias] for conv and dense (bias is folded into), else a function
    i = 0
    while i < len(layers):
        layer, kind = layers[i]
        weights = [torch.from_numpy(np.asarray(w, dtype=np.float32)) for w in layer.get_weights()]
        config = layer.get_config()
        if kind == "Reshape" and kinds[i + 1 : i + 3] == ["Permute", "Reshape"]:
            # digitlab's space-to-depth (h, w, c) -> (h/2, w/2, 4c), each
            # channel (dy * 2 + dx) * c + ci: pixel_unshuffle's order for c = 1.
            steps.append(lambda x: functional.pixel_unshuffle(x, 2))
            i += 3
            continue
        if kind == "Reshape":  # (n, h, w) -> (n, h, w, 1): NCHW (n, 1, h, w)
            steps.append(lambda x: x.unsqueeze(1))
        elif kind in ("Augmentation", "Dropout"):
            pass  # identities at inference
        elif kind in ("Conv2D", "Dense"):
            if kind == "Conv2D" and (
                config["padding"] != "same" or tuple(config["strides"]) != (1, 1)
            ):
                raise ValueError(f"{layer.name}: only stride-1 'same' convolutions")
            if config["activation"] not in ("linear", "softmax"):
                raise ValueError(f"{layer.name}: activation {config['activation']!r}")
            kernel = weights[0]
            bias = weights[1] if config["use_bias"] else torch.zeros(kernel.shape[-1])
            steps.append([kind, kernel, bias])
            if config["activation"] == "softmax":
                steps.append(lambda x: torch.softmax(x.float(), -1))
        elif kind == "BatchNormalization":
            if not steps or not isinstance(steps[-1], list):
                raise ValueError(f"{layer.name}: BatchNormalization after {kinds[i - 1]}")
            gamma, beta, mean, variance = weights
            scale = gamma / torch.sqrt(variance + config["epsilon"])
            steps[-1][1] = steps[-1][1] * scale  # the output channels are the last axis
            steps[-1][2] = (steps[-1][2] - mean) * scale + beta
        elif kind == "Activation" and config["activation"] == "relu":
            steps.append(torch.relu)
        elif kind == "MaxPool2x2":
            steps.append(lambda x: functional.max_pool2d(x, 2))
        elif kind == "Flatten":  # Keras flattens (h, w, c)
            steps.append(lambda x: x.permute(0, 2, 3, 1).flatten(1))
        else:
            raise ValueError(f"{layer.name}: layer {kind} is not digitlab's convnet")
        i += 1

    def compiled(step):
        if not isinstance(step, list):
            return step
        kind, kernel, bias = step
        if kind == "Dense":
            return lambda x: functional.linear(x, kernel.T.contiguous(), bias)
        kernel = kernel.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
        return lambda x: functional.conv2d(x, kernel, bias, padding=kernel.shape[-1] // 2)

    functions = [compiled(step) for step in steps]

    def forward(x):
        for function in functions:
            x = function(x)
            if x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
        return x

    return forward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a cnn or cnn-fast run folder")
    parser.add_argument("--images", type=int, default=10_000, help="test images (default 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="best of N (default 5)")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats: expected positive whole numbers")
    try:
        import torch
    except ImportError:
        print(
            "bench_bf16.py: needs PyTorch, which digitlab does not install: pip install torch",
            file=sys.stderr,
        )
        return 2

    import digitlab
    from digitlab.errors import DigitlabError

    try:
        run = digitlab.load_run(args.run)
    except DigitlabError as exc:
        parser.error(str(exc))
    try:
        network = torch_network(torch, run.model)
    except (AttributeError, ValueError) as exc:
        parser.error(f"{args.run}: expected a run of digitlab's cnn or cnn-fast ({exc})")
    try:
        data = digitlab.load_mnist()
    except DigitlabError as exc:
        parser.error(str(exc))
    x = data.x_test[: args.images].astype(np.float32) / 255
    y = data.y_test[: args.images]
    batches = range(0, len(x), 1024)
    tensor = torch.from_numpy(x)

    print(describe("digitlab", "keras", "jax", "torch", "numpy"))
    print(
        f"run: {args.run} ({run.config.model}, {run.params:,} parameters), "
        f"{len(x):,} test images, batch 1024, best of {args.repeats}; "
        f"torch threads {torch.get_num_threads()}"
    )
    rates = matmul_rates(torch)
    print(
        f"matrix product 4096x4096: float32 {rates['float32']:,.0f} GFLOP/s, "
        f"bfloat16 {rates['bfloat16']:,.0f} GFLOP/s"
    )

    answers = {}

    def digitlab_pass():
        answers["digitlab"] = run.predict_proba(x, batch_size=1024).argmax(1)

    def torch_pass(name, autocast):
        def go():
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                answers[name] = np.concatenate(
                    [network(tensor[i : i + 1024]).float().argmax(1).numpy() for i in batches]
                )

        return go

    rows = [
        ("digitlab (JAX, float32)", "digitlab", digitlab_pass),
        ("PyTorch float32", "float32", torch_pass("float32", False)),
        ("PyTorch bfloat16 autocast", "bfloat16", torch_pass("bfloat16", True)),
    ]
    speed = {}
    for label, key, function in rows:
        speed[key] = len(x) / best_seconds(function, args.repeats)
        agree = int((answers[key] == answers["digitlab"]).sum())
        print(
            f"{label:28s} {speed[key]:>10,.0f} images/s   accuracy "
            f"{(answers[key] == y).mean():.4f}   same answer as digitlab {agree:,}/{len(x):,}"
        )
    print(
        f"ratio: PyTorch bfloat16 / digitlab {speed['bfloat16'] / speed['digitlab']:.2f}x, "
        f"PyTorch float32 / digitlab {speed['float32'] / speed['digitlab']:.2f}x "
        f"(issue 10's goal: 5x the cnn's)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
