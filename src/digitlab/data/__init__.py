"""The data stage: IDX files, getting MNIST and other datasets, and the
tutorial's preprocessing and split.

* :mod:`digitlab.data.idx` - the IDX file format, read and written.
* :mod:`digitlab.data.registry` - the known datasets (MNIST, Fashion-MNIST) and their pins.
* :mod:`digitlab.data.fetch` - finding, downloading and verifying a known dataset's files
  (with :mod:`~digitlab.data.folders`, :mod:`~digitlab.data.mirrors` and
  :mod:`~digitlab.data.wheel`).
* :mod:`digitlab.data.labels` - which classes the labels stand for.
* :mod:`digitlab.data.datasets` - :class:`Dataset`, loading, splitting.
"""

from digitlab.data.datasets import (
    DATASETS,
    FASHION_MNIST_CLASS_NAMES,
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
    "DATASETS",
    "FASHION_MNIST_CLASS_NAMES",
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
