"""Known datasets (MNIST, Fashion-MNIST), how a named folder decides what it
holds, and the rules for labels: on the real MNIST, the real Fashion-MNIST of
Debian's package dataset-fashion-mnist, and IDX files written into tmp_path."""

import dataclasses
import gzip
import hashlib
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from digitlab import data
from digitlab.data import registry
from digitlab.data.fetch import default_cache_dir, fetch_dataset
from digitlab.data.idx import write_idx
from digitlab.errors import ConfigError, DataError, FetchError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
CLOTHES = (
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
NAMES = {key: file.name for key, file in registry.MNIST_FILES.items()}

needs_debian_fashion = pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Debian's package dataset-fashion-mnist is not installed ({DEBIAN_FASHION} is absent)",
)


@pytest.fixture
def no_env_data_dir(monkeypatch):
    # The suite sets DIGITLAB_DATA_DIR; the cache and system-folder routes need it unset.
    monkeypatch.delenv("DIGITLAB_DATA_DIR", raising=False)


@pytest.fixture
def real_mnist_dir():
    folder = os.environ.get("DIGITLAB_DATA_DIR")
    if not folder or not Path(folder).is_dir():
        pytest.skip("DIGITLAB_DATA_DIR does not name the real MNIST files")
    return Path(folder)


@pytest.fixture
def empty_home(tmp_path, monkeypatch, no_env_data_dir):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DIGITLAB_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def fashion():
    if not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Debian's package dataset-fashion-mnist is not installed ({DEBIAN_FASHION})")
    return data.load_dataset(DEBIAN_FASHION)


def write_folder(folder: Path, x_train, y_train, x_test, y_test) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / NAMES["train_images"], x_train)
    write_idx(folder / NAMES["train_labels"], y_train)
    write_idx(folder / NAMES["test_images"], x_test)
    write_idx(folder / NAMES["test_labels"], y_test)
    return folder


def part_of(mnist, folder: Path, *, train=6000, test=1000, y_train=None, y_test=None) -> Path:
    """The first images of MNIST (so no file matches MNIST's pins), labels as given."""
    return write_folder(
        folder,
        mnist.x_train[:train],
        mnist.y_train[:train] if y_train is None else y_train,
        mnist.x_test[:test],
        mnist.y_test[:test] if y_test is None else y_test,
    )


# ------------------------------------------------------------------ the registry


def test_known_dataset_names_and_unknown_name():
    assert data.DATASETS == ("mnist", "fashion-mnist")
    assert registry.known_dataset("fashion-mnist").class_names == CLOTHES
    assert data.FASHION_MNIST_CLASS_NAMES == CLOTHES
    message = "dataset: expected one of mnist, fashion-mnist. Received: dataset='x'"
    with pytest.raises(ConfigError) as caught:
        data.load_dataset(dataset="x")
    assert str(caught.value) == message
    with pytest.raises(ConfigError, match="Received: dataset='MNIST'"):
        fetch_dataset("MNIST")


def test_fashion_mnist_has_mirrors_and_the_debian_folder_but_no_wheel():
    spec = registry.FASHION_MNIST
    assert spec.wheel is None
    assert spec.local_folders == (str(DEBIAN_FASHION),)
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" in spec.mirrors
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/" in spec.mirrors
    # Same layout as MNIST: the same names and uncompressed sizes, other bytes.
    for key, file in spec.files.items():
        assert (file.name, file.size) == (NAMES[key], registry.MNIST_FILES[key].size)
        assert file.sha256 != registry.MNIST_FILES[key].sha256


# The gzip timestamps of Zalando's published files (2017-08-31): Debian's package
# ships the same deflate streams with the header normalised (no file name,
# another timestamp), so putting the header back rebuilds the published bytes.
ZALANDO_MTIMES = {
    "train_images": 1504176606,
    "train_labels": 1504176606,
    "test_images": 1504176627,
    "test_labels": 1504176627,
}
PUBLISHED_MD5 = {  # the Fashion-MNIST README
    "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
    "test_images": "bef4ecab320f06d8554ea6380940ec79",
    "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
}


@needs_debian_fashion
@pytest.mark.parametrize("key", list(ZALANDO_MTIMES))
def test_fashion_pins_match_the_published_md5_of_zalandos_files(key):
    file = registry.FASHION_MNIST_FILES[key]
    debian = (DEBIAN_FASHION / (file.name + ".gz")).read_bytes()
    assert debian[:4] == b"\x1f\x8b\x08\x00"  # deflate, no file name
    original = (
        b"\x1f\x8b\x08\x08"  # FNAME set
        + struct.pack("<I", ZALANDO_MTIMES[key])
        + debian[8:10]
        + file.name.encode()
        + b"\0"
        + debian[10:]
    )
    assert hashlib.md5(original).hexdigest() == PUBLISHED_MD5[key]
    assert len(original) == file.gz_size
    assert hashlib.sha256(original).hexdigest() == file.gz_sha256
    content = gzip.decompress(debian)
    assert len(content) == file.size
    assert hashlib.sha256(content).hexdigest() == file.sha256


# ------------------------------------------------------------------ Fashion-MNIST


def test_debian_folder_is_fashion_mnist_verified(fashion):
    assert fashion.name == "fashion-mnist" and fashion.verified
    assert fashion.class_names == CLOTHES and not fashion.is_digits
    assert fashion.x_train.shape == (60_000, 28, 28) and fashion.x_test.shape == (10_000, 28, 28)
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    assert fashion.sha256 == registry.FASHION_MNIST.pins
    info = fashion.info()
    assert info["checksums"] == "verified against the official Fashion-MNIST SHA-256"
    assert info["name"] == "fashion-mnist" and info["class_names"] == list(CLOTHES)
    assert info["train"]["class_counts"]["Ankle boot"] == 6000
    assert fashion.source == f"data dir {DEBIAN_FASHION}"


def test_mnist_is_digits_and_says_so(mnist):
    assert mnist.is_digits and mnist.name == "mnist"
    assert mnist.info()["checksums"] == "verified against the official MNIST SHA-256"
    assert mnist.head(10, 10).is_digits  # a part keeps the class names, not the pins


@needs_debian_fashion
def test_fashion_by_name_without_a_folder_reads_the_debian_folder_offline(empty_home):
    got = data.load_dataset(dataset="fashion-mnist", download=False, progress=False)
    assert got.name == "fashion-mnist" and got.verified and got.class_names == CLOTHES
    assert got.source == f"system folder {DEBIAN_FASHION}"
    # Read in place: nothing is copied into the cache (default_cache_dir()/"fashion-mnist").
    assert default_cache_dir() == empty_home
    assert list(empty_home.iterdir()) == []
    again = fetch_dataset("fashion-mnist", download=False, progress=False)
    assert again.paths["train_images"] == DEBIAN_FASHION / "train-images-idx3-ubyte.gz"
    assert again.sha256 == registry.FASHION_MNIST.pins


@needs_debian_fashion
def test_fashion_in_the_cache_is_used_before_the_debian_folder(empty_home):
    cache = empty_home / "fashion-mnist"
    cache.mkdir()
    for name in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(DEBIAN_FASHION / name, cache / name)
    got = fetch_dataset("fashion-mnist", download=False, progress=False)
    assert set(got.source.split(" + ")) == {f"cache {cache}", f"system folder {DEBIAN_FASHION}"}
    assert got.paths["train_labels"] == cache / "train-labels-idx1-ubyte.gz"
    assert got.paths["train_images"] == DEBIAN_FASHION / "train-images-idx3-ubyte.gz"


def test_fashion_without_any_source_and_download_off_explains(empty_home):
    spec = dataclasses.replace(registry.FASHION_MNIST, local_folders=(str(empty_home / "none"),))
    with pytest.raises(FetchError) as caught:
        fetch_dataset(spec, download=False, progress=False)
    message = str(caught.value)
    assert f"cache {empty_home / 'fashion-mnist'}" in message and "download is off" in message
    assert "install the package dataset-fashion-mnist" in message
    assert registry.FASHION_MNIST.mirrors[0] in message and "\n" not in message


@needs_debian_fashion
def test_folder_must_hold_the_dataset_asked_for(mnist, real_mnist_dir):
    got = data.load_dataset(DEBIAN_FASHION, dataset="fashion-mnist")
    assert got.verified and got.name == "fashion-mnist"
    with pytest.raises(DataError) as caught:
        data.load_dataset(real_mnist_dir, dataset="fashion-mnist")
    message = str(caught.value)
    assert f"{real_mnist_dir}/train-images-idx3-ubyte.gz fails its checksum" in message
    assert registry.FASHION_MNIST_FILES["train_images"].sha256 in message
    assert "(that is MNIST's train-images-idx3-ubyte)" in message
    with pytest.raises(DataError, match=r"that is Fashion-MNIST's train-images-idx3-ubyte"):
        data.load_dataset(DEBIAN_FASHION, dataset="mnist")
    assert data.load_dataset(real_mnist_dir, dataset="mnist").sha256 == mnist.sha256


# ------------------------------------------------------------ what a folder holds


def test_folder_of_other_28x28_images_is_its_own_dataset(mnist, tmp_path):
    # MNIST in another order: the same shapes and classes, none of its files.
    train = np.random.default_rng(0).permutation(60_000)
    test = np.random.default_rng(1).permutation(10_000)
    folder = write_folder(
        tmp_path / "shuffled",
        mnist.x_train[train],
        mnist.y_train[train],
        mnist.x_test[test],
        mnist.y_test[test],
    )
    got = data.load_dataset(folder)
    assert not got.verified and got.name == "shuffled"
    assert got.x_train.shape == (60_000, 28, 28) and got.x_test.shape == (10_000, 28, 28)
    assert got.class_names == data.MNIST_CLASS_NAMES and got.is_digits
    assert got.info()["checksums"] == "not an official dataset: recorded, not verified"
    assert set(got.sha256.values()).isdisjoint(registry.MNIST.pins.values())


@needs_debian_fashion
def test_mnist_mixed_with_one_fashion_file_is_refused(real_mnist_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for key in ("train_images", "train_labels", "test_images"):
        (folder / (NAMES[key] + ".gz")).symlink_to(real_mnist_dir / (NAMES[key] + ".gz"))
    (folder / "t10k-labels-idx1-ubyte.gz").symlink_to(DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError) as caught:
        data.load_dataset(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder}/t10k-labels-idx1-ubyte.gz: looks like MNIST but its")
    assert "its other 3 of 4 files match the official MNIST pins" in message
    assert "it is Fashion-MNIST's t10k-labels-idx1-ubyte, mixed with MNIST's files" in message


def test_mnist_with_one_other_label_file_is_refused_as_damaged(mnist, real_mnist_dir, tmp_path):
    folder = tmp_path / "relabelled"
    folder.mkdir()
    for key in ("train_images", "test_images", "test_labels"):
        (folder / (NAMES[key] + ".gz")).symlink_to(real_mnist_dir / (NAMES[key] + ".gz"))
    write_idx(folder / NAMES["train_labels"], (mnist.y_train + 1) % 10)
    pattern = (
        rf"{folder}/train-labels-idx1-ubyte: looks like MNIST but its SHA-256 is [0-9a-f]{{64}}, "
        rf"expected {registry.MNIST.pins['train_labels']} .*the file is damaged; fetch it again"
    )
    with pytest.raises(DataError, match=pattern):
        data.load_dataset(folder)


# ------------------------------------------------------------------ labels


def test_stray_label_255_is_refused_with_its_index(mnist, tmp_path):
    labels = mnist.y_train[:6000].copy()
    labels[4711] = 255
    folder = part_of(mnist, tmp_path / "stray", y_train=labels)
    with pytest.raises(DataError) as caught:
        data.load_dataset(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{folder}/train-labels-idx1-ubyte: expected labels 0..9 ")
    assert "label 255 at index 4711 is not one of them" in message
    assert "every class from 0 to the largest label must occur in the training labels" in message
    with pytest.raises(DataError, match="label 255 at index 4711"):
        data.load_idx_folder(folder)


def test_stray_label_10_in_the_training_labels_is_refused(mnist, tmp_path):
    labels = mnist.y_train[:6000].copy()
    labels[17] = 10
    folder = part_of(mnist, tmp_path / "ten", y_train=labels)
    with pytest.raises(DataError) as caught:
        data.load_dataset(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder}/train-labels-idx1-ubyte: expected labels of classes")
    assert "label 10 at index 17 is not one of them (class 10 has no test image;" in message


def test_label_10_in_the_test_labels_is_refused(mnist, tmp_path):
    labels = mnist.y_test[:1000].copy()
    labels[999] = 10
    folder = part_of(mnist, tmp_path / "ten", y_test=labels)
    pattern = (
        rf"{folder}/t10k-labels-idx1-ubyte: expected labels 0..9, the classes of the training "
        rf"labels {folder}/train-labels-idx1-ubyte; label 10 at index 999 is not one of them"
    )
    with pytest.raises(DataError, match=pattern):
        data.load_dataset(folder)


def test_labels_that_skip_class_0_are_refused(mnist, tmp_path):
    folder = part_of(
        mnist, tmp_path / "d", y_train=mnist.y_train[:6000] + 1, y_test=mnist.y_test[:1000] + 1
    )
    with pytest.raises(DataError, match=r"expected labels starting at 0 .*label 6 at index 0 "):
        data.load_dataset(folder)


def test_negative_labels_are_refused_without_class_names(mnist, tmp_path):
    labels = mnist.y_test[:1000].astype(np.int8)
    labels[3] = -2
    folder = part_of(mnist, tmp_path / "d", y_test=labels)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: .*label -2 at index 3 is not"):
        data.load_dataset(folder)


def test_class_names_refuse_labels_beyond_them(mnist, tmp_path):
    folder = part_of(mnist, tmp_path / "named")
    (folder / "classes.txt").write_text("".join(f"class {i}\n" for i in range(9)))
    first_nine = int(np.flatnonzero(mnist.y_train[:6000] == 9)[0])
    pattern = (
        rf"{folder}/train-labels-idx1-ubyte: expected labels in 0..8 \(9 classes\) as named in "
        rf"{folder}/classes.txt; label 9 at index {first_nine} is not one of them"
    )
    with pytest.raises(DataError, match=pattern):
        data.load_dataset(folder)


def test_class_names_allow_classes_without_images(mnist, tmp_path):
    # Declared names may include classes that no label uses; nothing is inferred.
    labels_train = np.minimum(mnist.y_train[:6000], 7)
    labels_test = np.minimum(mnist.y_test[:1000], 7)
    folder = part_of(mnist, tmp_path / "named", y_train=labels_train, y_test=labels_test)
    names = [f"c{i}" for i in range(12)]
    (folder / "classes.txt").write_text("\n".join(names))
    got = data.load_dataset(folder)
    assert got.class_names == tuple(names) and got.num_classes == 12 and not got.is_digits
    assert got.info()["train"]["class_counts"]["c11"] == 0


def test_ten_digit_folder_infers_the_digits(mnist, tmp_path):
    got = data.load_dataset(part_of(mnist, tmp_path / "part"))
    assert got.class_names == data.MNIST_CLASS_NAMES and got.is_digits and not got.verified
