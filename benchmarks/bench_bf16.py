"""How much faster is ``--runtime torch`` than digitlab's native runtime?

Issue 10 asks for 5x the cnn's batch throughput.  digitlab's native runtime
computes in float32 on JAX (XLA:CPU), which does not use the AMX tiles of
recent Xeons; bfloat16 through XLA was no faster (``bench_predict.py``'s notes,
``bench_conv.py``'s ``conv-bf16``).  PyTorch's oneDNN does use them.  This runs
one run side by side, in one process, on the official test images, batch 1024:

* native: ``load_run(RUN).predict_proba`` (JAX, float32);
* ``load_run(RUN, runtime="torch")`` in float32 (oneDNN, channels-last, each
  BatchNormalization folded into the layer before it);
* the same in bfloat16 (autocast; what ``--runtime torch`` uses on CPUs with
  native bfloat16);

and prints images/s (best of ``--repeats``), accuracy, how many answers agree
with the native runtime's, a float32 matrix-product rate against a bfloat16
one, and the ratios.  Needs PyTorch (``pip install 'digitlab[torch]'``)::

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run",
        type=Path,
        help="a run folder of a Keras model (mlp, cnn, cnn-fast) or an ensemble of them",
    )
    parser.add_argument("--images", type=int, default=10_000, help="test images (default 10000)")
    parser.add_argument("--repeats", type=int, default=5, help="best of N (default 5)")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats: expected positive whole numbers")
    try:
        import torch
    except ImportError:
        print(
            "bench_bf16.py: needs PyTorch, which is not installed: pip install 'digitlab[torch]'",
            file=sys.stderr,
        )
        return 2

    import digitlab
    from digitlab.errors import DigitlabError

    try:
        run = digitlab.load_run(args.run)
        on_torch = digitlab.load_run(args.run, runtime="torch").classifier
    except DigitlabError as exc:
        parser.error(str(exc))
    try:
        data = digitlab.load_mnist()
    except DigitlabError as exc:
        parser.error(str(exc))
    x = data.x_test[: args.images].astype(np.float32) / 255
    y = data.y_test[: args.images]

    print(describe("digitlab", "keras", "jax", "torch", "numpy"))
    print(
        f"run: {args.run} ({run.config.model}, {run.info.params:,} parameters), "
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

    def torch_pass(name, bfloat16):
        def go():
            on_torch.model.bfloat16 = bfloat16
            answers[name] = on_torch.predict_proba(x, batch_size=1024).argmax(1)

        return go

    rows = [
        ("native (JAX, float32)", "digitlab", digitlab_pass),
        ("--runtime torch, float32", "float32", torch_pass("float32", False)),
        ("--runtime torch, bfloat16", "bfloat16", torch_pass("bfloat16", True)),
    ]
    speed = {}
    for label, key, function in rows:
        speed[key] = len(x) / best_seconds(function, args.repeats)
        agree = int((answers[key] == answers["digitlab"]).sum())
        print(
            f"{label:28s} {speed[key]:>10,.0f} images/s   accuracy "
            f"{(answers[key] == y).mean():.4f}   same answer as native {agree:,}/{len(x):,}"
        )
    print(
        f"ratio: torch bfloat16 / native {speed['bfloat16'] / speed['digitlab']:.2f}x, "
        f"torch float32 / native {speed['float32'] / speed['digitlab']:.2f}x "
        f"(issue 10's goal: 5x the cnn's; --runtime torch here: "
        f"{on_torch.description['precision']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
