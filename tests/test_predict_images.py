"""Reading real image files: the Predictor, read_image and ``digitlab predict IMAGE...``."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from digitlab.cli import main
from digitlab.errors import ConfigError, ImageError
from digitlab.inference import Predictor, check_pixels, decode_data_url, read_image
from digitlab.runs import load_run
from predict_helpers import (
    RESULT_FIELDS,
    canvas_export,
    confident_digits,
    encode,
    number_image,
    paper_digit,
    tiny_run,
)


@pytest.fixture(scope="session")
def run_dir(mnist, tmp_path_factory):
    return tiny_run(mnist, tmp_path_factory)


@pytest.fixture(scope="session")
def predictor(run_dir):
    return Predictor(load_run(run_dir))


@pytest.fixture(scope="session")
def good(run_dir, mnist):
    """Six test digits the tiny run reads right with probability > 0.9."""
    return confident_digits(run_dir, mnist, 6)


def _decoded(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(decode_data_url(url))))


# --------------------------------------------------------------------------- Predictor


def test_predictor_matches_keras_predict_on_batch(predictor, mnist):
    from digitlab.inference.classifier import temper

    images = mnist.x_test[:37].astype(np.float32) / 255.0
    # The run's own answers: Keras' softmax scaled by the run's fitted temperature.
    raw = np.asarray(predictor.model.predict_on_batch(images))
    expected = temper(raw, predictor.classifier.temperature)
    assert predictor.classifier.temperature != 1.0
    np.testing.assert_allclose(predictor.predict_proba(images), expected, atol=1e-5)
    np.testing.assert_allclose(predictor.predict_one(images[5]), expected[5], atol=1e-5)


def test_predictor_batches_of_any_size_give_one_row_per_image(predictor, mnist):
    images = mnist.x_test[:1500].astype(np.float32) / 255.0
    probs = predictor.predict_proba(images, batch_size=1024)
    assert probs.shape == (1500, 10)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert predictor.predict_proba(images[:0]).shape == (0, 10)


def test_predictor_gives_the_same_answers_from_many_threads(predictor, mnist):
    images = mnist.x_test[:64].astype(np.float32) / 255.0
    expected = predictor.predict_proba(images)
    answers: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        answers[k] = np.stack([predictor.predict_one(image) for image in images])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 4
    for probs in answers.values():
        np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_predictor_wraps_a_run_and_keeps_its_metadata(run_dir):
    run = load_run(run_dir)
    predictor = Predictor(run, warm_up=False)
    assert predictor.run is run
    assert predictor.class_names == tuple(str(d) for d in range(10))
    assert predictor.image_shape == (28, 28)


# --------------------------------------------------------------------------- read_image


def test_read_image_png_on_paper_gives_the_digit(predictor, mnist, good, tmp_path):
    index = good[0]
    path = tmp_path / "digit.png"
    path.write_bytes(encode(paper_digit(mnist.x_test[index])))
    result = read_image(predictor, path)
    assert set(result) == RESULT_FIELDS
    assert result["file"] == str(path)
    assert result["status"] == "ok"
    assert result["digit"] == int(mnist.y_test[index])
    assert result["probability"] == result["top3"][0]["probability"] > 0.5
    assert len(result["probabilities"]) == 10
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert [t["probability"] for t in result["top3"]] == sorted(
        (t["probability"] for t in result["top3"]), reverse=True
    )
    assert result["digits"] == 1
    seen = _decoded(result["images"][0])
    assert seen.shape == (28, 28)
    assert seen.max() > 200  # light ink on black, like MNIST
    assert seen[0].max() == 0


def test_read_image_transparent_canvas_export(predictor, mnist, good):
    index = good[1]
    result = read_image(predictor, encode(canvas_export(mnist.x_test[index])), single=True)
    assert result["file"] == "<bytes>"
    assert result["digit"] == int(mnist.y_test[index])


def test_read_image_jpeg_photo(predictor, mnist, good):
    from digitlab.inference.images import render_photo

    index = good[2]
    photo = render_photo(mnist.x_test[index], rng=np.random.default_rng(3))
    assert photo[:3] == b"\xff\xd8\xff"
    result = read_image(predictor, photo, name="photo.jpg", single=True)
    assert result["file"] == "photo.jpg"
    assert result["digit"] == int(mnist.y_test[index])


def test_read_image_number_from_real_mnist_digits(predictor, mnist, good):
    chosen = good[:3]
    image = number_image([mnist.x_test[i] for i in chosen])
    result = read_image(predictor, encode(image))
    expected = "".join(str(int(mnist.y_test[i])) for i in chosen)
    assert result["status"] == "ok"
    assert result["digit"] == expected
    assert result["digits"] == 3
    assert len(result["probabilities"]) == 3
    assert all(len(row) == 10 for row in result["probabilities"])
    assert result["probability"] == pytest.approx(
        np.prod([max(row) for row in result["probabilities"]]), rel=1e-6
    )
    assert result["top3"][0]["digit"] == expected
    assert len(result["images"]) == 3
    boxes = result["boxes"]
    assert [box[0] for box in boxes] == sorted(box[0] for box in boxes)


def test_read_image_single_reads_a_number_as_one_digit(predictor, mnist, good):
    image = number_image([mnist.x_test[i] for i in good[:2]])
    result = read_image(predictor, encode(image), single=True)
    assert result["digits"] == 1
    assert len(result["probabilities"]) == 10
    assert result["digit"] is None or isinstance(result["digit"], int)


def test_read_image_blank_page_is_no_digit(predictor):
    result = read_image(predictor, encode(Image.new("L", (200, 200), 255)))
    assert result["status"] == "no digit"
    assert result["digit"] is None
    assert result["probability"] is None
    assert result["top3"] == []
    assert result["digits"] == 0


def test_read_image_below_threshold_is_not_sure(predictor, mnist, good):
    result = read_image(predictor, encode(paper_digit(mnist.x_test[good[0]])), threshold=1.0)
    assert result["status"] == "not sure"
    assert result["digit"] is None
    assert len(result["top3"]) == 3
    assert result["probability"] < 1.0


def test_read_image_pixels_go_to_the_model_as_they_are(predictor, mnist, good):
    digit = mnist.x_test[good[0]]
    as_ints = read_image(predictor, digit.tolist())
    as_floats = read_image(predictor, digit.astype(np.float32) / 255.0)
    expected = predictor.predict_one(digit.astype(np.float32) / 255.0)
    assert as_ints["file"] == "<pixels>"
    assert as_ints["digit"] == as_floats["digit"] == int(mnist.y_test[good[0]])
    np.testing.assert_allclose(as_ints["probabilities"], expected, atol=1e-6)
    assert as_ints["boxes"] == []
    assert read_image(predictor, np.zeros((28, 28)))["status"] == "no digit"


def test_read_images_answers_a_batch_as_read_image_answers_each(predictor, mnist, good):
    """A number, a photo, pixels, a blank page, a garbage file and a bad option in
    one call: one model call, the answers read_image gives one by one, and the
    errors in their places."""
    from digitlab.inference import read_images

    photo = encode(paper_digit(mnist.x_test[good[1]]), "JPEG")
    requests = [
        {"source": encode(number_image([mnist.x_test[i] for i in good[:3]]))},
        {"source": photo, "name": "photo.jpg", "single": True},
        {"source": mnist.x_test[good[2]], "threshold": 0.99},
        {"source": encode(Image.new("L", (64, 64), 255))},
        {"source": b"not an image", "name": "junk.png"},
        {"source": photo, "threshold": 2},
        {"source": mnist.x_test[good[3]], "reject": False},
    ]
    answers = read_images(predictor, requests)
    assert isinstance(answers[4], ImageError) and "junk.png" in str(answers[4])
    assert isinstance(answers[5], ConfigError) and "threshold" in str(answers[5])
    for request, answer in zip(requests, answers, strict=True):
        if isinstance(answer, Exception):
            continue
        options = dict(request)
        alone = read_image(predictor, options.pop("source"), **options)
        numbers = ("probabilities", "probability", "top3", "digit_scores")
        assert {k: v for k, v in answer.items() if k not in numbers} == {
            k: v for k, v in alone.items() if k not in numbers
        }
        # The same up to float32 rounding: a batch of nine crops is not computed
        # by the same kernels as one.
        np.testing.assert_allclose(answer["probabilities"], alone["probabilities"], atol=1e-6)
        np.testing.assert_allclose(answer["digit_scores"], alone["digit_scores"], atol=1e-6)
        assert [t["class_name"] for t in answer["top3"]] == [t["class_name"] for t in alone["top3"]]
    assert answers[0]["digits"] == 3
    assert answers[3]["reason"] == "blank"
    assert answers[6]["digit_scores"] == [] and answers[6]["detector"] is None


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((27, 28)), "28x28"),
        (np.zeros(784), "28x28"),
        (np.full((28, 28), np.nan), "finite"),
        (np.full((28, 28), 1.5), r"\[0, 1\]"),
        (np.full((28, 28), 300), "0..255"),
        (np.full((28, 28), -1), "0..255"),
        (np.full((28, 28), "a"), "numbers"),
        (np.ones((28, 28), dtype=bool), "numbers"),
    ],
)
def test_check_pixels_rejects_bad_arrays(pixels, message):
    with pytest.raises(ImageError, match=message):
        check_pixels(pixels)


def test_read_image_rejects_bad_files_and_options(predictor, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="notes.png"):
        read_image(predictor, text)
    with pytest.raises(ImageError, match="no such file"):
        read_image(predictor, tmp_path / "missing.png")
    with pytest.raises(ConfigError, match="threshold"):
        read_image(predictor, np.zeros((28, 28)), threshold=1.5)


# --------------------------------------------------------------------------- CLI


def _files(tmp_path, mnist, good):
    png = tmp_path / "seven.png"
    png.write_bytes(encode(paper_digit(mnist.x_test[good[0]])))
    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(encode(paper_digit(mnist.x_test[good[1]]).convert("RGB"), "JPEG"))
    canvas = tmp_path / "canvas.png"
    canvas.write_bytes(encode(canvas_export(mnist.x_test[good[2]])))
    number = tmp_path / "number.png"
    number.write_bytes(encode(number_image([mnist.x_test[i] for i in good[3:6]])))
    labels = [int(mnist.y_test[i]) for i in good]
    expected = [labels[0], labels[1], labels[2], "".join(map(str, labels[3:6]))]
    return [png, jpeg, canvas, number], expected


def test_cli_predict_images_json_list(run_dir, mnist, good, tmp_path, capsys):
    files, expected = _files(tmp_path, mnist, good)
    code = main(["predict", str(run_dir), *map(str, files), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    results = json.loads(out)
    assert isinstance(results, list)
    assert [r["file"] for r in results] == [str(f) for f in files]
    assert [r["digit"] for r in results] == expected
    for result in results:
        assert set(result) == RESULT_FIELDS
        assert result["status"] == "ok"


def test_cli_predict_images_text(run_dir, mnist, good, tmp_path, capsys):
    files, expected = _files(tmp_path, mnist, good)
    assert main(["predict", str(run_dir), str(files[0]), str(files[3])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{files[0]}: {expected[0]} (probability")
    assert "top 3:" in lines[0]
    assert lines[1].startswith(f"{files[3]}: {expected[3]} (3 digits")


def test_cli_predict_preview_saves_what_the_model_saw(run_dir, mnist, good, tmp_path, capsys):
    files, _ = _files(tmp_path, mnist, good)
    preview = tmp_path / "preview"
    code = main(["predict", str(run_dir), str(files[0]), str(files[3]), "--preview", str(preview)])
    assert code == 0
    names = sorted(p.name for p in preview.iterdir())
    assert names == ["number-1.png", "number-2.png", "number-3.png", "seven.png"]
    for path in preview.iterdir():
        with Image.open(path) as image:
            assert image.size == (28, 28)
            assert image.mode == "L"


def test_cli_predict_bad_file_is_one_line_and_exit_2(run_dir, mnist, good, tmp_path, capsys):
    files, expected = _files(tmp_path, mnist, good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(encode(paper_digit(mnist.x_test[0]))[:60])
    code = main(["predict", str(run_dir), str(broken), str(files[0]), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1
    assert "broken.png" in captured.err
    assert "Traceback" not in captured.err
    results = json.loads(captured.out)
    assert results[0]["status"] == "error"
    assert "broken.png" in results[0]["error"]
    assert results[1]["digit"] == expected[0]


def test_cli_predict_missing_file_exit_2(run_dir, tmp_path, capsys):
    code = main(["predict", str(run_dir), str(tmp_path / "nope.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("digitlab: error: ")
    assert "nope.png" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "neither"),
        (["image.png", "--index", "3"], "both"),
    ],
)
def test_cli_predict_needs_images_or_index(run_dir, extra, message, capsys):
    code = main(["predict", str(run_dir), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1


def test_cli_predict_threshold_out_of_range_exit_2(run_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(run_dir), "x.png", "--threshold", "2"])
    assert exit_info.value.code == 2
    assert "--threshold" in capsys.readouterr().err


def test_cli_predict_index_still_works(run_dir, capsys):
    assert main(["predict", str(run_dir), "--index", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["index"] == 3
    assert result["set"] == "validation"
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)


# --------------------------------------------------------------------------- photos


@pytest.mark.slow
def test_photo_accuracy_close_to_raw_accuracy(predictor, mnist):
    """300 test digits: rendered as phone photos and read through the whole
    pipeline, accuracy stays within a few points of the raw 28x28 digits."""
    from digitlab.inference.images import render_photo

    rng = np.random.default_rng(2024)
    indices = rng.choice(len(mnist.x_test), size=300, replace=False)
    labels = mnist.y_test[indices].astype(int)
    raw = predictor.predict_proba(mnist.x_test[indices].astype(np.float32) / 255.0).argmax(1)
    photo_digits = []
    for index in indices:
        photo = render_photo(mnist.x_test[index], rng=rng, size=(240, 320))
        result = read_image(predictor, photo, single=True, threshold=0.0)
        photo_digits.append(result["digit"] if result["status"] == "ok" else -1)
    raw_accuracy = float((raw == labels).mean())
    photo_accuracy = float((np.array(photo_digits) == labels).mean())
    assert raw_accuracy > 0.8
    assert photo_accuracy >= raw_accuracy - 0.05, (raw_accuracy, photo_accuracy)
