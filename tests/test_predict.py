"""Prediction on images: statuses, calibration, order, inputs in every form, multi-digit reading."""

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import mnistlab
from mnistlab.data import ImageError
from mnistlab.errors import MnistlabError
from mnistlab.predict import (
    STATUSES,
    PredictError,
    Predictor,
    contact_sheet,
    image_files,
    load_predictor,
    reading_sheet,
)


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
    # No digit and no confidence to misread: an app testing `confidence > 0.5` accepts nothing.
    assert (blank_answer.digit, blank_answer.confidence, blank_answer.top3) == (None, None, ())
    assert blank_answer.to_dict() == {"path": "<image 0>", "digit": None, "confidence": None, "top3": [],
                                      "status": "no_digit"}
    assert json.loads(json.dumps(blank_answer.to_dict()))["digit"] is None  # JSON null
    assert not blank_answer.image.any()
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
    expected = [p.to_dict() for p in predictor.predict([path])]
    via_api = mnistlab.predict(str(tmp_path), run=small_run.run.path)  # a folder stands for its images
    assert [p.to_dict() for p in via_api] == expected
    old_order = mnistlab.predict(small_run.run.path, str(tmp_path))  # as it was written before run was optional
    assert [p.to_dict() for p in old_order] == expected
    reading = mnistlab.read_number(path, run=small_run.run.path)
    assert reading.to_dict() == mnistlab.read_number(small_run.run.path, path).to_dict()
    assert reading.text == "2"


def test_a_run_without_onnx_is_predicted_by_keras(small_run, predictor):
    loaded = load_predictor(small_run.run.path)  # the fixture's run was never exported
    assert loaded.runtime == "keras" and loaded.temperature == predictor.temperature
    assert Predictor.load(small_run.run.path).runtime == "keras"


def test_library_use_prints_nothing_of_tensorflow(small_run, tmp_path, sure_digits):
    """Loading a Keras model from Python leaves the user's stderr clean (TensorFlow's C++ start-up
    notes go to fd 2 before its logging starts)."""
    path = tmp_path / "five.png"
    Image.fromarray(_as_photo(sure_digits[5][0])).save(path)
    code = ("import mnistlab, sys\n"
            f"p = mnistlab.predict({str(path)!r}, run={str(small_run.run.path)!r})[0]\n"
            "print(p.digit, 'keras' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split() == ["5", "True"], done.stderr
    assert done.stderr == ""


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
    assert reading.text == text and len(reading.digits) == 4
    # Box: x from the left, y from the top, right and bottom exclusive, in the page's pixels. Each
    # digit was pasted at rows 40-208 and columns 30 + 170 k to 198 + 170 k, its ink inside that.
    for k, box in enumerate(reading.boxes):
        assert 30 + 170 * k <= box.left < box.right <= 198 + 170 * k and 40 <= box.top < box.bottom <= 208
        assert box.right - box.left > 40 and box.bottom - box.top > 100  # the ink's, not a sliver
    assert reading.to_dict()["digits"][0]["box"] == dict(zip(("left", "top", "right", "bottom"), reading.boxes[0]))
    empty = predictor.read(np.full((100, 300), 240, np.uint8))
    assert empty.text == "" and empty.status == "no_digit"
    assert empty.confidence is None and empty.to_dict()["confidence"] is None


def _number(sure_digits, text):
    width = 170 * len(text) + 60
    page = np.full((260, width), 220.0)
    for k, ch in enumerate(text):
        big = np.asarray(Image.fromarray(sure_digits[int(ch)][k]).resize((168, 168), Image.BILINEAR), float)
        page[40:208, 30 + 170 * k : 198 + 170 * k] -= big * 0.8
    return np.uint8(np.clip(page, 0, 255))


def test_a_number_is_ok_only_when_all_its_digits_together_are(predictor, sure_digits):
    """read's status follows the joint confidence: digits each sure enough can make an unsure number."""
    image = _number(sure_digits, "380")
    relaxed = Predictor(predictor.model, predictor.temperature, min_confidence=0.0).read(image)
    each = [d.confidence for d in relaxed.digits]
    joint = relaxed.confidence
    assert joint == pytest.approx(np.prod(each)) and relaxed.status == "ok"
    if joint > min(each) - 1e-3:
        pytest.skip(f"the digits are too sure ({each}) to fall between their product and their least")
    threshold = (joint + min(each)) / 2  # every digit passes it, the number does not
    reading = Predictor(predictor.model, predictor.temperature, min_confidence=threshold).read(image)
    assert [d.status for d in reading.digits] == ["ok"] * 3
    assert reading.status == "unsure" and reading.to_dict()["status"] == "unsure"
    assert Predictor(predictor.model, predictor.temperature, min_confidence=joint * 0.99).read(image).status == "ok"


# -- inputs as people hold them -----------------------------------------------------------------


def _forms(grey_page):
    """The same picture in every form the Python API takes, named."""
    rgb = np.stack([grey_page] * 3, axis=-1)
    rgba = np.concatenate([rgb, np.full(grey_page.shape + (1,), 255, np.uint8)], axis=-1)
    png = io.BytesIO()
    Image.fromarray(grey_page).save(png, format="PNG")
    tinted = rgb.copy()
    tinted[..., 2] = np.minimum(255, tinted[..., 2].astype(int) + 20).astype(np.uint8)  # blue-ish paper
    bgr = np.ascontiguousarray(tinted[..., ::-1])  # as OpenCV's cv2.imread holds it
    return {
        "grey uint8": grey_page,
        "grey float": grey_page.astype(np.float32) / 255,
        "grey (H, W, 1)": grey_page[..., None],
        "RGB uint8": rgb,
        "RGB float64": rgb / 255.0,
        "RGBA uint8": rgba,
        "BGR passed as img[..., ::-1]": bgr[..., ::-1],  # a view with a negative stride
        "PNG bytes": png.getvalue(),
        "bytearray": bytearray(png.getvalue()),
        "PIL L": Image.fromarray(grey_page),
        "PIL RGB": Image.fromarray(rgb),
        "PIL RGBA": Image.fromarray(rgba),
        "PIL P": Image.fromarray(rgb).convert("P"),
    }


def test_every_form_of_an_image_gives_the_same_answer(predictor, sure_digits, tmp_path):
    page = _as_photo(sure_digits[4][0])
    path = tmp_path / "four.png"
    Image.fromarray(page).save(path)
    oracle = predictor.predict(path)[0]  # one source, not in a list
    assert oracle.digit == 4 and oracle.path == str(path)
    forms = _forms(page)
    answers = predictor.predict(list(forms.values()), names=list(forms))
    for name, answer in zip(forms, answers, strict=True):
        assert answer.digit == 4, name
        assert answer.confidence == pytest.approx(oracle.confidence, abs=0.02), name
        if name != "PIL P":  # Pillow's 216-colour web palette has fewer greys than the picture
            # What the model saw is the file's, to the luma's rounding (half a grey level) scaled up.
            assert np.abs(answer.image.astype(int) - oracle.image).max() <= 8, name


def test_rgba_transparency_is_paper_as_for_a_file(predictor, sure_digits):
    """Ink drawn on a transparent canvas: the array reads as the PNG holding it does."""
    ink = np.asarray(Image.fromarray(sure_digits[7][0]).resize((140, 140), Image.BILINEAR))
    rgba = np.zeros((160, 160, 4), np.uint8)  # black ink, visible only where drawn
    rgba[10:150, 10:150, 3] = ink
    png = io.BytesIO()
    Image.fromarray(rgba).save(png, format="PNG")
    from_array, from_file = predictor.predict([rgba, png.getvalue()])
    assert from_array.digit == from_file.digit == 7
    assert np.abs(from_array.image.astype(int) - from_file.image).max() <= 8


@pytest.mark.parametrize(
    "source, words",
    [
        (None, "not None"),
        (7, "not an int"),
        ({"image": "seven.png"}, "not a dict"),
        ([[0, 255], [255, 0]], "np.asarray"),
        (np.zeros((3, 28, 28), np.uint8), "channels last"),
        (np.zeros((28, 28, 2), np.uint8), "shape (28, 28, 2)"),
        (np.zeros((2, 28, 28, 3), np.uint8), "list of arrays"),
        (np.zeros((28, 28), np.int64), "astype(np.uint8)"),
        (np.zeros((28, 28), bool), "got bool"),
        (np.full((28, 28, 3), 200.0), "divide 0..255 values by 255"),
        (np.full((28, 28), np.nan, np.float32), "NaN"),
        (Image.new("RGB", (0, 5)), "no pixels"),
    ],
)
def test_anything_else_is_one_image_error(predictor, source, words):
    with pytest.raises(ImageError, match=re.escape(words)) as caught:
        predictor.predict([source])
    assert isinstance(caught.value, MnistlabError) and "\n" not in str(caught.value)
    with pytest.raises(ImageError):
        predictor.read(source)


def test_the_contact_sheet_takes_every_form_and_no_digit(predictor, sure_digits, tmp_path):
    forms = [_as_photo(sure_digits[1][0]), Image.fromarray(_as_photo(sure_digits[9][0])).convert("RGB"),
             np.full((50, 50, 3), 1.0)]
    answers = predictor.predict(forms)
    assert answers[2].status == "no_digit"
    contact_sheet(forms, answers, tmp_path / "sheet.png")
    assert Image.open(tmp_path / "sheet.png").size[1] == 112 * 3


def test_statuses_are_the_three_documented():
    assert STATUSES == ("ok", "unsure", "no_digit")


def test_the_reading_sheet_draws_each_box_where_the_digit_is(predictor, sure_digits, tmp_path):
    image = _number(sure_digits, "380")
    reading = predictor.read(image)
    assert reading.text == "380"
    reading_sheet(image, reading, tmp_path / "boxes.png")
    with Image.open(tmp_path / "boxes.png") as sheet:
        sheet = np.asarray(sheet.convert("RGB")).astype(int)
    # 570 x 260 is within SHEET_SIDE, so the image is drawn at its own scale, under the banner.
    banner = sheet.shape[0] - image.shape[0]
    assert sheet.shape[1] == image.shape[1] and banner > 0
    colours = {"ok": [0, 150, 60], "unsure": [230, 120, 0]}
    for digit, box in zip(reading.digits, reading.boxes, strict=True):
        colour, middle = np.array(colours[digit.status]), banner + (box.top + box.bottom) // 2
        assert (sheet[middle, box.left] == colour).all() and (sheet[middle, box.right - 1] == colour).all()
        assert (sheet[middle, (box.left + box.right) // 2] != colour).any()  # an outline, not a filled box
    assert (sheet[banner + 5, 5] == image[5, 5]).all()  # the image itself, grey, outside the boxes
    with pytest.raises(PredictError, match="cannot write the sheet"):
        reading_sheet(image, reading, tmp_path / "no" / "such" / "folder" / "boxes.png")
