"""Time reading the four MNIST .gz files: the tutorial's per-byte loops versus digitlab.data.idx.

Usage: python benchmarks/bench_idx.py [--data-dir DIR] [--repeats N] [--full-tutorial]
                                     [--tutorial-count N]

The tutorial-style loader reads every pixel with ``struct.unpack('>B', f.read(1))``
inside Python loops. It takes minutes on the training images, so by default it runs
on the two 10k test files only and its time for all four files is extrapolated by
uncompressed byte count (clearly labelled); if that projection is under 60 s, or with
--full-tutorial, the training files are timed too. digitlab's read_idx is run
--repeats times and its median reported, next to the cost of gzip decompression
alone, the floor any reader of these files pays.  --tutorial-count N (for smoke
runs) has the tutorial loader read only the first N items of each t10k file.
"""

import argparse
import datetime
import gzip
import os
import pathlib
import platform
import statistics
import struct
import sys
import time
import zlib

import numpy as np

from _machine import cpu_name
from digitlab.data.idx import read_idx

TEST_FILES = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
TRAIN_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
FULL_RUN_LIMIT_S = 60.0


def tutorial_read_images(path, limit=None):
    """The tutorial's image reader: header with struct, then pixel by pixel into lists
    (the first ``limit`` images only, if given)."""
    with gzip.open(path, "rb") as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        count = count if limit is None else min(count, limit)
        images = []
        for _ in range(count):
            image = []
            for _ in range(rows * cols):
                pixel = struct.unpack(">B", f.read(1))[0]
                image.append(pixel)
            images.append(image)
    return np.array(images, dtype=np.uint8).reshape(count, rows, cols)


def tutorial_read_labels(path, limit=None):
    """The tutorial's label reader: header with struct, then one byte at a time."""
    with gzip.open(path, "rb") as f:
        magic, count = struct.unpack(">II", f.read(8))
        count = count if limit is None else min(count, limit)
        labels = []
        for _ in range(count):
            labels.append(struct.unpack(">B", f.read(1))[0])
    return np.array(labels, dtype=np.uint8)


def tutorial_read(path, limit=None):
    if "images" in path.name:
        return tutorial_read_images(path, limit)
    return tutorial_read_labels(path, limit)


def uncompressed_size(path):
    """Size of a gzip file's content, from its ISIZE trailer (fine for these < 4 GiB files)."""
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def timed(function):
    """Return (wall seconds, CPU seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("DIGITLAB_DATA_DIR"),
        help="folder holding the four MNIST .gz files (default: $DIGITLAB_DATA_DIR)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="runs of read_idx (default 7)")
    parser.add_argument(
        "--full-tutorial",
        action="store_true",
        help="always time the tutorial loader on the training files too (minutes)",
    )
    parser.add_argument(
        "--tutorial-count",
        type=int,
        help="the tutorial loader reads only the first N items of each t10k file, and its "
        "time for the whole files is extrapolated (for smoke runs)",
    )
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("no data folder: pass --data-dir or set DIGITLAB_DATA_DIR")
    if args.repeats < 1:
        parser.error(f"expected --repeats of at least 1. Received: --repeats={args.repeats}")
    limit = args.tutorial_count
    if limit is not None and limit < 1:
        parser.error(f"expected --tutorial-count of at least 1. Received: --tutorial-count={limit}")
    folder = pathlib.Path(args.data_dir)
    paths = {name: folder / name for name in TEST_FILES + TRAIN_FILES}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        parser.error(f"missing MNIST files: {', '.join(missing)}")

    print(
        f"machine: {datetime.datetime.now().isoformat(timespec='seconds')} | CPU: {cpu_name()}"
        f" | cores: {os.cpu_count()} | numpy {np.__version__} | Python {platform.python_version()}"
    )

    # (b) digitlab, first, so the files are in the page cache for everyone.
    runs = [timed(lambda: [read_idx(path) for path in paths.values()]) for _ in range(args.repeats)]
    digitlab_wall = statistics.median(run[0] for run in runs)
    digitlab_cpu = statistics.median(run[1] for run in runs)
    arrays = dict(zip(paths, runs[-1][2], strict=True))

    # The floor: reading the compressed bytes and inflating them, nothing else.
    def decompress_only():
        for path in paths.values():
            zlib.decompress(path.read_bytes(), 16 + zlib.MAX_WBITS)

    floor_runs = [timed(decompress_only) for _ in range(args.repeats)]
    floor = statistics.median(run[0] for run in floor_runs)
    floor_cpu = statistics.median(run[1] for run in floor_runs)

    # (a) the tutorial loader: the test files, then the training files if affordable.
    tutorial_test_s = tutorial_test_cpu = 0.0
    for name in TEST_FILES:
        seconds, cpu, array = timed(lambda name=name: tutorial_read(paths[name], limit))
        if not np.array_equal(array, arrays[name][: len(array)]):
            sys.exit(f"tutorial loader and read_idx disagree on {name}")
        share = len(array) / len(arrays[name])
        tutorial_test_s += seconds / share
        tutorial_test_cpu += cpu / share
    part = "" if limit is None else f" (EXTRAPOLATED from their first {limit:,} items)"
    print(
        f"tutorial loader (per-byte struct.unpack loops), t10k files: {tutorial_test_s:.2f} s "
        f"wall ({tutorial_test_cpu:.2f} s CPU){part}"
    )
    test_bytes = sum(uncompressed_size(paths[name]) for name in TEST_FILES)
    all_bytes = sum(uncompressed_size(path) for path in paths.values())
    scale = all_bytes / test_bytes
    if limit is None and (args.full_tutorial or tutorial_test_s * scale < FULL_RUN_LIMIT_S):
        tutorial_all_s, tutorial_all_cpu = tutorial_test_s, tutorial_test_cpu
        for name in TRAIN_FILES:
            seconds, cpu, _ = timed(lambda name=name: tutorial_read(paths[name]))
            tutorial_all_s += seconds
            tutorial_all_cpu += cpu
        how = "measured"
    else:
        tutorial_all_s, tutorial_all_cpu = tutorial_test_s * scale, tutorial_test_cpu * scale
        how = (
            f"EXTRAPOLATED from the t10k files by uncompressed size x{scale:.2f}; "
            f"use --full-tutorial to measure"
        )
    print(
        f"tutorial loader, all four files: {tutorial_all_s:.2f} s wall "
        f"({tutorial_all_cpu:.2f} s CPU) ({how})"
    )
    print(
        f"digitlab.data.idx.read_idx, all four files: median {digitlab_wall:.3f} s wall "
        f"({digitlab_cpu:.3f} s CPU) over {args.repeats} runs"
    )
    print(
        f"gzip decompression only (floor), all four files: median {floor:.3f} s wall "
        f"({floor_cpu:.3f} s CPU)"
    )
    # CPU time is the steadier comparison on a shared, busy machine.
    print(f"ratio (CPU time): digitlab is {tutorial_all_cpu / digitlab_cpu:.1f}x faster")
    print(
        f"ratio: digitlab is {tutorial_all_s / digitlab_wall:.1f}x faster than the tutorial loader"
    )


if __name__ == "__main__":
    main()
