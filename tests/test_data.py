import json

import numpy as np
import pytest

from conftest import write_idx_dataset
from digitlab import data
from digitlab.data.idx import write_idx
from digitlab.errors import ConfigError, DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_load_dataset_gives_verified_mnist(mnist):
    assert mnist.verified and mnist.name == "mnist"
    assert mnist.x_train.shape == (60_000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10_000, 28, 28)
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    info = mnist.info()
    assert info["train"]["class_counts"]["1"] == 6742
    assert info["checksums"].startswith("verified")


def test_tutorial_split_is_45000_15000_seeded_and_disjoint(mnist):
    s = data.split(mnist, "tutorial", seed=42)
    assert s.x_train.shape == (45_000, 28, 28) and s.x_eval.shape == (15_000, 28, 28)
    assert s.x_train.dtype == np.float32 and 0.0 <= s.x_train.min() and s.x_train.max() == 1.0
    assert s.y_train.shape == (45_000, 10) and np.all(s.y_train.sum(axis=1) == 1)
    assert np.array_equal(s.y_train.argmax(axis=1), s.labels_train)
    assert s.eval_set == "validation"
    again = data.split(mnist, "tutorial", seed=42)
    assert np.array_equal(s.eval_indices, again.eval_indices)
    other = data.split(mnist, "tutorial", seed=1)
    assert not np.array_equal(s.eval_indices, other.eval_indices)
    # The held-out images really are the indexed training images, none reused.
    assert len(np.unique(s.eval_indices)) == 15_000
    np.testing.assert_array_equal(s.x_eval[0], mnist.x_train[s.eval_indices[0]] / np.float32(255))


def test_official_split_uses_the_test_files(mnist):
    s = data.split(mnist, "official")
    assert s.x_train.shape[0] == 60_000 and s.x_eval.shape[0] == 10_000
    assert s.eval_set == "test"


def test_split_rejects_impossible_validation_size(mnist):
    with pytest.raises(ConfigError, match="validation_size: expected 1..59999"):
        data.split(mnist, "tutorial", validation_size=60_000)


def test_one_hot_and_scale():
    assert data.one_hot(np.array([2, 0]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert data.scale(np.array([0, 255], dtype=np.uint8)).tolist() == [0.0, 1.0]


def test_custom_idx_folder_loads_without_pins(tmp_path):
    folder = write_idx_dataset(tmp_path / "letters", classes=3, shape=(8, 6))
    (folder / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    ds = data.load_dataset(folder)
    assert not ds.verified and ds.name == "letters"
    assert ds.class_names == ("a", "b", "c")
    assert ds.image_shape == (8, 6)
    assert len(ds.sha256["train_images"]) == 64
    assert "not an official dataset" in ds.info()["checksums"]


def test_custom_folder_class_names_default_to_label_range(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", classes=4)
    assert data.load_idx_folder(folder).class_names == ("0", "1", "2", "3")


def test_class_names_from_text_file(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", classes=2)
    (folder / "classes.txt").write_text("cat\ndog\n")
    assert data.load_idx_folder(folder).class_names == ("cat", "dog")


def _break(folder, name, array):
    write_idx(folder / name, array)
    return folder


@pytest.mark.parametrize(
    ("name", "array", "match"),
    [
        ("train-labels-idx1-ubyte", np.arange(59, dtype=np.uint8) % 3, "expected 60 labels"),
        ("train-labels-idx1-ubyte", np.zeros((60, 2), np.uint8), "expected labels of rank 1"),
        ("train-labels-idx1-ubyte", np.zeros(60, np.float32), "expected integer labels"),
        ("t10k-labels-idx1-ubyte", np.full(20, -1, np.int8), r"expected labels in 0..2"),
        ("train-images-idx3-ubyte", np.zeros(60, np.uint8), "at least 2 dimensions"),
        ("t10k-images-idx3-ubyte", np.zeros((20, 5, 5), np.uint8), "expected images of shape"),
        ("train-images-idx3-ubyte", np.zeros((60, 8, 8), np.float32), "expected uint8 pixel"),
    ],
)
def test_inconsistent_dataset_raises_data_error(tmp_path, name, array, match):
    folder = write_idx_dataset(tmp_path / "d", classes=3)
    (folder / "classes.txt").write_text("a\nb\nc\n")
    _break(folder, name, array)
    with pytest.raises(DataError, match=match):
        data.load_dataset(folder)


def test_label_beyond_class_names_raises(tmp_path):
    folder = write_idx_dataset(tmp_path / "d", classes=3)
    (folder / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"train-labels.*expected labels in 0..1 \(2 classes\)"):
        data.load_dataset(folder)


def test_missing_file_and_missing_folder(tmp_path):
    folder = write_idx_dataset(tmp_path / "d")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels"):
        data.load_dataset(folder)
    with pytest.raises(DataError, match="nowhere"):
        data.load_dataset(tmp_path / "nowhere")


def test_bad_classes_json(tmp_path):
    folder = write_idx_dataset(tmp_path / "d")
    (folder / "classes.json").write_text("{not json")
    with pytest.raises(DataError, match="classes.json: expected a JSON list"):
        data.load_dataset(folder)


def test_damaged_mnist_is_an_error_not_a_custom_dataset(tmp_path, mnist):
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = mnist.x_train.copy()
    images[123, 4, 5] ^= 0xFF  # one flipped pixel
    write_idx(folder / "train-images-idx3-ubyte", images)
    write_idx(folder / "train-labels-idx1-ubyte", mnist.y_train)
    write_idx(folder / "t10k-images-idx3-ubyte", mnist.x_test)
    write_idx(folder / "t10k-labels-idx1-ubyte", mnist.y_test)
    with pytest.raises(
        DataError, match="train-images-idx3-ubyte: looks like MNIST but its SHA-256"
    ):
        data.load_dataset(folder)


def test_eval_arrays_match_the_split(mnist):
    x, labels = data.eval_arrays(mnist, "validation", seed=5, validation_size=15_000)
    s = data.split(mnist, "tutorial", seed=5)
    assert np.array_equal(labels, s.labels_eval) and np.array_equal(x, s.x_eval)
    x, labels = data.eval_arrays(mnist, "test", seed=5, validation_size=15_000)
    assert x.shape == (10_000, 28, 28)
    with pytest.raises(ConfigError, match="set: expected validation, test or train"):
        data.eval_arrays(mnist, "dev", seed=5, validation_size=15_000)


def test_head_is_a_smaller_unverified_part(mnist):
    part = mnist.head(300, 50)
    assert part.x_train.shape == (300, 28, 28) and part.y_test.shape == (50,)
    np.testing.assert_array_equal(part.x_train, mnist.x_train[:300])
    assert not part.verified and part.name == "mnist[:300/50]"
    assert part.class_names == mnist.class_names
    assert len(mnist.head(10).x_test) == len(mnist.x_test)
    assert mnist.verified  # the whole is unchanged
    with pytest.raises(ConfigError, match="head: expected at least 1"):
        mnist.head(0)
