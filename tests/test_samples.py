"""The sample images: written where asked and nowhere else, labelled, and read right by the
shipped reader, as a user's first `mnistlab samples DIR && mnistlab predict DIR` would.

    .venv/bin/pytest tests/test_samples.py
"""

from pathlib import Path

import pytest

from mnistlab.cli import main
from mnistlab.data import DataError, decode_image
from mnistlab.data.folders import labelled_images
from mnistlab.data.samples import DIGIT_STROKES, SAMPLES, drawing, number, photo, ruled, write_samples
from mnistlab.predict import image_files, load_predictor

DIGITS = [sample for sample in SAMPLES if len(sample.label) == 1]
STYLES = {"photo": photo, "ruled": ruled, "drawing": drawing, "negative": lambda d: drawing(d, negative=True)}


@pytest.fixture(scope="module")
def reader():
    return load_predictor()  # the shipped ONNX reader: no run, no Keras


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples") / "new" / "samples"  # made, parents too
    return root, write_samples(root)


def test_every_sample_and_the_labels_are_written(folder):
    root, written = folder
    assert written == [root / s.file for s in SAMPLES] + [root / "labels.csv"]
    for sample in SAMPLES:
        assert sample.label in Path(sample.file).stem  # the label is in the name: photo-7.jpg
        grey = decode_image(root / sample.file)  # a real image file of its kind
        assert grey.shape[0] >= 200 and grey.shape[1] >= 200 and grey.max() - grey.min() > 0.3
    found = labelled_images(root)
    assert [(p.name, label) for p, label in found.images] == [(s.file, int(s.label)) for s in DIGITS]
    assert {s.file.split("-")[0] for s in SAMPLES} == {"photo", "ruled", "drawing", "numbers/number"}
    assert not list(root.rglob(".*"))  # no temporary file left behind


def test_the_shipped_reader_reads_every_sample_right(folder, reader):
    root, _ = folder
    files = image_files([root])  # what `mnistlab predict DIR` reads: the single digits
    assert sorted(p.name for p in files) == sorted(s.file for s in DIGITS)
    for p in reader.predict(files):
        assert p.status == "ok" and str(p.digit) == Path(p.path).stem.split("-")[1], p
    numbers = [s for s in SAMPLES if len(s.label) > 1]
    assert numbers
    for sample in numbers:
        reading = reader.read(root / sample.file)
        assert reading.text == sample.label and reading.status == "ok", reading


@pytest.mark.parametrize("style", list(STYLES))
def test_every_pen_digit_is_legible_in_every_style(style, reader):
    """All ten pen paths, not only the few the samples use: a later sample may pick any."""
    predictions = reader.predict([STYLES[style](d) for d in DIGIT_STROKES])
    assert [p.digit for p in predictions] == list(range(10))
    assert min(p.confidence for p in predictions) > 0.8


def test_a_long_number_is_read_digit_by_digit(reader):
    assert reader.read(number("0123456789")).text == "0123456789"


def test_samples_are_the_same_every_time():
    for sample in SAMPLES:
        assert sample.draw() == sample.draw(), sample.file


def test_writing_again_is_fine_and_other_files_are_left_alone(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    first = write_samples(tmp_path)
    before = {p: p.read_bytes() for p in first}
    assert write_samples(tmp_path) == first
    assert {p: p.read_bytes() for p in first} == before
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_refuses_a_file_and_another_labels_table(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DataError, match="a-file is a file, not a folder"):
        write_samples(tmp_path / "a-file")
    with pytest.raises(DataError, match="a-file is a file, not a folder"):
        write_samples(tmp_path / "a-file" / "below")
    assert (tmp_path / "a-file").read_text() == "x"

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "labels.csv").write_text("file,label\nscan.png,4\n")
    with pytest.raises(DataError, match="not the samples' own"):
        write_samples(theirs)
    assert [p.name for p in theirs.iterdir()] == ["labels.csv"]  # nothing written beside it
    assert (theirs / "labels.csv").read_text() == "file,label\nscan.png,4\n"


def test_command_writes_them_and_predict_reads_them_without_keras(tmp_path, capsys, cli_probe):
    root = tmp_path / "samples"
    assert main(["samples", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"mnistlab predict {root}" in out and "numbers/number-2024.png" in out
    assert all(str(root / s.file) in out for s in SAMPLES)

    answers, probe = cli_probe("predict", str(root), "--json")
    assert probe == {"exit": 0, "heavy": []}
    assert [(Path(a["path"]).name, a["digit"]) for a in answers] == sorted((s.file, int(s.label)) for s in DIGITS)
    reading, probe = cli_probe("read", str(root / "numbers" / "number-2024.png"), "--json")
    assert probe == {"exit": 0, "heavy": []} and reading["text"] == "2024"

    (tmp_path / "a-file").write_text("x")
    assert main(["samples", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "is a file" in err[0]
