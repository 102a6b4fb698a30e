"""The data stage: IDX files, getting MNIST and other datasets, and the
tutorial's preprocessing and split.

* :mod:`digitlab.data.idx` - the IDX file format, read and written.
* :mod:`digitlab.data.fetch` - finding, downloading and verifying dataset files.
* :mod:`digitlab.data.datasets` - :class:`Dataset`, loading, splitting.
"""

from digitlab.data.datasets import (
    KEYS,
    MNIST_CLASS_NAMES,
    Dataset,
    Split,
    eval_arrays,
    load_dataset,
    load_idx_folder,
    load_mnist,
    one_hot,
    scale,
    split,
)

__all__ = [
    "KEYS",
    "MNIST_CLASS_NAMES",
    "Dataset",
    "Split",
    "eval_arrays",
    "load_dataset",
    "load_idx_folder",
    "load_mnist",
    "one_hot",
    "scale",
    "split",
]
