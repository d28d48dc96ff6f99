"""Prediction on images: statuses, calibration, order, the contact sheet, multi-digit reading."""

import json

import numpy as np
import pytest
from PIL import Image

import mnistlab
from mnistlab.data import ImageError
from mnistlab.predict import PredictError, Predictor, image_files, load_predictor


@pytest.fixture(scope="module")
def predictor(small_run):
    return Predictor.from_run(small_run.run.path)


@pytest.fixture(scope="module")
def sure_digits(mnist, predictor):
    """Per class, test digits the model reads right with confidence >= 0.9 on the raw 28x28:
    what the image tests start from, so a failure points at the image path, not the model."""
    probs = predictor.probabilities(mnist.x_test[:2000])
    good = (probs.argmax(1) == mnist.y_test[:2000]) & (probs.max(1) >= 0.9)
    return {d: mnist.x_test[:2000][good & (mnist.y_test[:2000] == d)] for d in range(10)}


def _as_photo(digit28, size=240, offset=(30, 50)):
    """Dark ink on light grey paper, enlarged 6x and placed off-centre, as a PNG file's bytes."""
    big = np.asarray(Image.fromarray(digit28).resize((168, 168), Image.BILINEAR), dtype=np.float64)
    page = np.full((size, size + 60), 215.0)
    top, left = offset
    page[top : top + 168, left : left + 168] -= big * 0.8
    return np.uint8(np.clip(page, 0, 255))


def test_calibration_is_fitted_and_loaded(small_run, predictor):
    calibration = small_run.metrics["calibration"]
    assert calibration["fitted_on"] == "validation split (1,200 images)"
    assert 0.05 < calibration["temperature"] < 20 and calibration["temperature"] != 1.0
    assert predictor.temperature == pytest.approx(calibration["temperature"])
    assert calibration["val_ece_after"] <= calibration["val_ece_before"] + 1e-6


def test_photos_of_digits_are_read(tmp_path, sure_digits, predictor):
    files = []
    for d in range(10):
        path = tmp_path / f"{d}.png"
        Image.fromarray(_as_photo(sure_digits[d][0])).save(path)
        files.append(path)
    predictions = predictor.predict(files)
    assert [p.path for p in predictions] == [str(f) for f in files]  # input order
    assert sum(p.digit == d for d, p in enumerate(predictions)) >= 9
    for p in predictions:
        assert p.image.shape == (28, 28) and p.image.dtype == np.uint8
        assert p.top3[0] == (p.digit, p.confidence) and len(p.top3) == 3
        assert p.top3[0][1] >= p.top3[1][1] >= p.top3[2][1]
        assert p.status in ("ok", "unsure")


def test_blank_page_is_no_digit_and_threshold_makes_unsure(predictor, sure_digits):
    blank = np.full((200, 200), 230, np.uint8)
    strict = Predictor(predictor.model, predictor.temperature, min_confidence=1.0)
    blank_answer, digit_answer = strict.predict([blank, _as_photo(sure_digits[3][0])])
    assert blank_answer.status == "no_digit" and blank_answer.path == "<image 0>"
    assert digit_answer.status == "unsure" and digit_answer.digit == 3  # still the best guess
    relaxed = Predictor(predictor.model, predictor.temperature, min_confidence=0.0)
    assert relaxed.predict([_as_photo(sure_digits[3][0])])[0].status == "ok"


def test_json_form(predictor, sure_digits):
    answer = predictor.predict([_as_photo(sure_digits[7][0])], names=["seven.png"])[0].to_dict()
    assert set(answer) == {"path", "digit", "confidence", "top3", "status"}
    assert answer["path"] == "seven.png" and answer["digit"] == 7
    assert [t["digit"] for t in answer["top3"]][0] == 7
    json.dumps(answer)  # plain types only


def test_python_api_matches_predictor(small_run, tmp_path, sure_digits, predictor):
    path = tmp_path / "two.png"
    Image.fromarray(_as_photo(sure_digits[2][0])).save(path)
    via_api = mnistlab.predict(small_run.run.path, str(tmp_path))  # a folder stands for its images
    assert [p.to_dict() for p in via_api] == [p.to_dict() for p in predictor.predict([path])]


def test_a_run_without_onnx_is_predicted_by_keras(small_run, predictor):
    loaded, runtime = load_predictor(small_run.run.path)  # the fixture's run was never exported
    assert runtime == "keras" and loaded.temperature == predictor.temperature


def test_undecodable_image_is_one_clear_error(tmp_path, predictor):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(ImageError, match="notes.png"):
        predictor.predict([bad])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PredictError, match="holds no images"):
        image_files([empty])
    with pytest.raises(PredictError, match="no images given"):
        image_files([])


def test_read_a_number(predictor, sure_digits):
    text = "2026"
    width = 170 * len(text) + 60
    page = np.full((260, width), 220.0)
    for k, ch in enumerate(text):
        big = np.asarray(Image.fromarray(sure_digits[int(ch)][k]).resize((168, 168), Image.BILINEAR), float)
        page[40:208, 30 + 170 * k : 198 + 170 * k] -= big * 0.8
    reading = predictor.read(np.uint8(np.clip(page, 0, 255)))
    assert reading.text == text
    lefts = [box[1] for box in reading.boxes]
    assert lefts == sorted(lefts) and len(reading.digits) == 4
    assert reading.to_dict()["digits"][0]["box"] == list(reading.boxes[0])
    empty = predictor.read(np.full((100, 300), 240, np.uint8))
    assert empty.text == "" and empty.status == "no_digit"
