"""Reports: the JSON's sections and shapes, the corruptions against oracles, a self-contained page
that Chromium renders, the comparison of two runs, and `mnistlab report` / `compare` end to end.

    .venv/bin/pytest tests/test_report.py -s     # prints where the page's screenshot went

The page test needs Debian's Chromium at /usr/bin/chromium, as tests/test_browser.py does.
"""

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mnistlab.calibrate import apply_temperature, expected_calibration_error
from mnistlab.evaluate import evaluate
from mnistlab.inference import predict_probs
from mnistlab.report import (
    CORRUPTIONS,
    ReportError,
    add_noise,
    blur,
    build_report,
    compare_runs,
    invert,
    labelled_images,
    read_batches,
    render_html,
    rotate,
    scale,
    shift,
    sweep_subset,
    thicken,
    write_report,
)
from mnistlab.report.sections import BATCH_CURVE_EPOCHS, batches_section
from mnistlab.runs import RunDir, RunError

TEST_IMAGES = 2000  # scored per report here: enough for every digit to show up in the matrix
SWEEP = 300  # test images per sweep setting: 44 settings stay a few seconds
IMAGE_CENTRE = 13.5  # (28 - 1) / 2: the point scale() and rotate() keep fixed
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # ignored by git
# An http(s) or protocol-relative URL in any src/href: the page must open offline.
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _options(mnist, **extra):
    return {"data": mnist, "sweep_images": SWEEP, "test_limit": TEST_IMAGES, "progress": False, **extra}


@pytest.fixture(scope="module")
def photos(mnist, tmp_path_factory):
    """A labelled folder as `mnistlab serve` stores corrections: test digits as PNGs in
    sub-folders 0..9, plus one file that is not an image."""
    root = tmp_path_factory.mktemp("photos")
    for k in range(30):
        label = int(mnist.y_test[-1 - k])
        (root / str(label)).mkdir(exist_ok=True)
        Image.fromarray(mnist.x_test[-1 - k]).save(root / str(label) / f"test{k}.png")
    (root / "3" / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def written(small_run, mnist, photos, tmp_path_factory):
    """small_run's report written outside the (shared, read-only) run folder: (page, numbers)."""
    page = write_report(small_run.run.path, tmp_path_factory.mktemp("report") / "page.html",
                        **_options(mnist, folders=[photos]))
    return page, json.loads(page.with_suffix(".json").read_text(encoding="utf-8"),
                            parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))


# --- corruptions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_keeps_shape_and_is_identity_at_zero(mnist, name):
    x = mnist.x_test[:64]
    c = CORRUPTIONS[name]
    assert 0 in c.strengths
    for s in c.strengths:
        out = c.apply(x, s, 0)
        assert out.shape == x.shape and out.dtype == np.uint8, (name, s)
    np.testing.assert_array_equal(c.apply(x, 0, 0), x)


def test_shift_moves_the_centre_of_mass_by_k(mnist):
    x = mnist.x_test[:40]
    x = x[~x[:, :, -3:].any(axis=(1, 2))][:20]  # digits a shift of up to 3 px moves whole
    assert len(x) == 20
    for k in (1, 2, 3):
        for before, after in zip(x, shift(x, k), strict=True):
            (r0, c0), (r1, c1) = ndimage.center_of_mass(before), ndimage.center_of_mass(after)
            assert (r1, c1) == pytest.approx((r0, c0 + k))


def test_rotation_matches_numpy_at_right_angles_and_is_anticlockwise(mnist):
    x = mnist.x_test[:10]
    np.testing.assert_array_equal(rotate(x, 0), x)
    np.testing.assert_array_equal(rotate(x, 90), np.rot90(x, 1, axes=(1, 2)))  # anticlockwise as seen
    np.testing.assert_array_equal(rotate(x, 180), x[:, ::-1, ::-1])


def test_scale_moves_points_away_from_the_centre_by_the_factor(mnist):
    x = mnist.x_test[:10]
    np.testing.assert_array_equal(scale(x, 1.0), x)
    # A round blob 4 px down and 3 px left of the centre lands at factor times that offset.
    rows, cols = np.mgrid[:28, :28]
    blob = 255 * np.exp(-((rows - IMAGE_CENTRE - 4) ** 2 + (cols - IMAGE_CENTRE + 3) ** 2) / 4)
    for factor in (0.5, 0.8, 1.5):
        out = scale(np.uint8(blob)[np.newaxis], factor)[0]
        offset = np.array(ndimage.center_of_mass(out)) - IMAGE_CENTRE
        np.testing.assert_allclose(offset, [4 * factor, -3 * factor], atol=0.1)
    for factor in (0.6, 1.3):
        # Ink area goes with the square of the factor (within the blur of resampling).
        ratio = (scale(x, factor) > 127).sum() / (x > 127).sum()
        assert ratio == pytest.approx(factor**2, rel=0.25), factor


def test_thickening_adds_ink_and_thinning_removes_it(mnist):
    x = mnist.x_test[:50]
    ink = x.astype(np.int64).sum()
    assert thicken(x, 1).astype(np.int64).sum() > 1.3 * ink
    assert thicken(x, -1).astype(np.int64).sum() < 0.7 * ink
    dot = np.zeros((1, 28, 28), np.uint8)
    dot[0, 10, 10] = 200
    grown = thicken(dot, 1)[0]
    assert sorted(zip(*np.nonzero(grown))) == [(9, 10), (10, 9), (10, 10), (10, 11), (11, 10)]  # the 3x3 cross
    assert (thicken(dot, -1) == 0).all()


def test_blur_noise_and_inversion_against_their_definitions(mnist):
    x = mnist.x_test[:50]
    # A normalised Gaussian moves ink, it does not make or destroy it (the digits sit in a margin).
    assert blur(x, 1.0).astype(np.int64).sum() == pytest.approx(x.astype(np.int64).sum(), rel=0.01)
    grey = np.full((200, 28, 28), 128, np.uint8)
    noisy = add_noise(grey, 0.1, seed=3).astype(np.float64) - 128
    assert abs(noisy.mean()) < 0.5 and noisy.std() == pytest.approx(25.5, rel=0.02)
    np.testing.assert_array_equal(add_noise(x, 0.2, seed=3), add_noise(x, 0.2, seed=3))  # seeded
    np.testing.assert_array_equal(invert(x, 1), 255 - x)
    assert np.ptp(invert(x, 0.5)) <= 1  # halfway is flat grey


def test_sweep_subset_is_seeded_sorted_and_unique():
    a = sweep_subset(10_000, 500, seed=1)
    assert len(a) == 500 and len(set(a.tolist())) == 500 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, sweep_subset(10_000, 500, seed=1))
    assert not np.array_equal(a, sweep_subset(10_000, 500, seed=2))
    np.testing.assert_array_equal(sweep_subset(100, 500), np.arange(100))


# --- the report's numbers -------------------------------------------------------------------------


def test_report_json_has_every_section_with_the_right_shapes(written, small_run, mnist):
    _, report = written
    assert set(report) >= {"headline", "takeaways", "history", "test", "mistakes", "calibration",
                           "robustness", "folders", "config", "timings"}
    h = report["headline"]
    assert h["params"] == small_run.metrics["params"] == small_run.model.count_params()
    assert h["model"] == "fast" and h["test_images"] == TEST_IMAGES
    assert h["data_matches_run"] is True
    assert h["temperature"] == small_run.metrics["calibration"]["temperature"] != 1.0

    test = report["test"]
    cm = np.array(test["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == TEST_IMAGES
    assert [r["class"] for r in test["per_class"]] == list(range(10))
    assert [r["support"] for r in test["per_class"]] == cm.sum(axis=1).tolist()
    assert h["test_errors"] == TEST_IMAGES - np.trace(cm) == report["mistakes"]["count"]
    direct = evaluate(small_run.model, mnist.x_test[:TEST_IMAGES], mnist.y_test[:TEST_IMAGES])
    assert test["accuracy"] == pytest.approx(direct["accuracy"], abs=1.5 / TEST_IMAGES)

    shown = report["mistakes"]["shown"]
    assert 0 < len(shown) <= 60
    confidence = [m["confidence"] for m in shown]
    assert confidence == sorted(confidence, reverse=True)
    for m in shown:
        assert m["label"] != m["predicted"] == m["top3"][0]["digit"]
        assert m["label"] == mnist.y_test[m["index"]]

    history = report["history"]
    assert history["epoch"] == [1] and len(history["loss"]) == 1

    # The page's ECE is the evaluate module's, on the probabilities with the run's temperature.
    cal = report["calibration"]
    probs = predict_probs(small_run.model, mnist.x_test[:TEST_IMAGES])
    calibrated = apply_temperature(probs, cal["temperature"])
    assert cal["ece"] == pytest.approx(expected_calibration_error(calibrated, mnist.y_test[:TEST_IMAGES]), abs=1e-3)
    assert sum(b["n"] for b in cal["reliability"]) == TEST_IMAGES
    assert len(cal["reliability"]) == cal["bins"] == 15


def test_sweep_at_strength_zero_is_the_plain_accuracy_and_inversion_hurts(written, small_run, mnist):
    rob = written[1]["robustness"]
    assert rob["images"] == SWEEP and list(rob["corruptions"]) == list(CORRUPTIONS)
    subset = sweep_subset(TEST_IMAGES, SWEEP, rob["seed"])
    plain = evaluate(small_run.model, mnist.x_test[subset], mnist.y_test[subset])["accuracy"]
    # One image may flip between batch sizes (float summation order); none should beyond that.
    assert rob["clean_accuracy"] == pytest.approx(plain, abs=1.5 / SWEEP)
    for name, c in rob["corruptions"].items():
        assert c["strengths"] == list(CORRUPTIONS[name].strengths)
        assert len(c["accuracy"]) == len(c["strengths"])
        assert c["accuracy"][c["strengths"].index(0)] == pytest.approx(plain, abs=1.5 / SWEEP), name
    invert_acc = dict(zip(rob["corruptions"]["invert"]["strengths"], rob["corruptions"]["invert"]["accuracy"]))
    assert invert_acc[1] < plain - 0.3
    assert rob["corruptions"]["rotate"]["accuracy"][-1] < plain - 0.3  # 90 degrees


def test_folders_are_scored_and_unreadable_images_listed(written, photos):
    (folder,) = written[1]["folders"]
    assert folder["n"] == 30 and 0.8 <= folder["accuracy"] <= 1.0
    assert [Path(s["path"]).name for s in folder["skipped"]] == ["broken.png"]
    assert any("real images" in t for t in written[1]["takeaways"])


def test_takeaways_are_sentences_from_the_numbers(written):
    report = written[1]
    text = " ".join(report["takeaways"])
    assert f"{report['headline']['test_errors']:,} wrong" in text
    assert "Most confused pair" in text and "Worst corruption" in text
    assert f"temperature {report['calibration']['temperature']:g}" in text


def test_a_one_epoch_run_has_a_curve_from_its_batches(written, small_run):
    batches = written[1]["batches"]
    with open(small_run.run.batches, encoding="utf-8") as f:
        rows = f.read().splitlines()[1:]
    assert batches == read_batches(small_run.run.batches) and len(batches["epoch"]) == len(rows) >= 3
    assert 0 < batches["epoch"][0] and batches["epoch"] == sorted(batches["epoch"]) and batches["epoch"][-1] < 1
    assert all(x > 0 for x in batches["loss"]) and all(0 <= a <= 1 for a in batches["accuracy"])
    text = written[0].read_text(encoding="utf-8")
    assert 'alt="loss and accuracy every few batches"' in text and "no curve to draw" not in text


def test_batches_are_placed_at_the_middle_of_the_batches_they_cover(tmp_path):
    (tmp_path / "batches.csv").write_text("epoch,batch,batches,loss,accuracy\n0,4,10,2.0,0.5\n0,10,10,1.0,0.75\n"
                                          "1,5,,0.8,0.8\n1,10,,nan,0.9\n", encoding="utf-8")
    got = read_batches(tmp_path / "batches.csv")
    assert got["epoch"] == [0.2, 0.7, 1.25, 1.75]  # the second epoch's size from its last row
    assert got["loss"] == [2.0, 1.0, 0.8, None] and got["accuracy"] == [0.5, 0.75, 0.8, 0.9]
    assert read_batches(tmp_path / "missing.csv") is None
    assert batches_section(RunDir(tmp_path)) == got

    # A longer run's curve is drawn per epoch, as before.
    rows = "".join(f"{e},10,10,1.0,0.9\n" for e in range(BATCH_CURVE_EPOCHS + 1))
    (tmp_path / "batches.csv").write_text("epoch,batch,batches,loss,accuracy\n" + rows, encoding="utf-8")
    assert read_batches(tmp_path / "batches.csv") is not None and batches_section(RunDir(tmp_path)) is None


def test_labelled_folder_layouts(tmp_path, mnist):
    digit = Image.fromarray(mnist.x_test[0])
    (tmp_path / "table").mkdir()
    digit.save(tmp_path / "table" / "a.png")
    (tmp_path / "table" / "labels.csv").write_text("file,label\na.png,7\n", encoding="utf-8")
    assert labelled_images(tmp_path / "table") == [(tmp_path / "table" / "a.png", 7)]
    (tmp_path / "4").mkdir()
    digit.save(tmp_path / "4" / "b.png")
    assert labelled_images(tmp_path / "4") == [(tmp_path / "4" / "b.png", 4)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="sub-folders 0..9"):
        labelled_images(tmp_path / "empty")


# --- the page ---------------------------------------------------------------------------------------


def test_page_is_self_contained_and_escaped(written):
    page, report = written
    text = page.read_text(encoding="utf-8")
    assert not EXTERNAL.search(text)
    assert "<script" not in text.lower()
    assert text.count('src="data:image/png;base64,') >= 4 + len(report["mistakes"]["shown"])
    report = copy.deepcopy(report)  # the fixture's dict is shared with the other tests
    report["headline"]["run"] = "<script>alert(1)</script>"
    report["takeaways"].append("a < b & c")
    hostile = render_html(report)
    assert "<script>" not in hostile and "&lt;script&gt;" in hostile and "a &lt; b &amp; c" in hostile


@pytest.fixture(scope="module")
def browser_page(chromium, tmp_path_factory):
    """A headless Chromium page wide enough for the report."""
    with chromium(tmp_path_factory.mktemp("chromium-profile"), 20_000, viewport={"width": 1200, "height": 900}) as page:
        yield page


def test_top3_shows_each_share_apart_from_its_digit(written):
    page, report = written
    shown = re.findall(r'<span class="top3">(.*?)</span><br>', page.read_text(encoding="utf-8"))
    assert len(shown) == len(report["mistakes"]["shown"]) > 0
    for html_top3, item in zip(shown, report["mistakes"]["shown"], strict=True):
        # "5 (4 %)", never "5 4%", which reads as 54 %.
        expected = [f"<span>{t['digit']} ({t['confidence'] * 100:.0f} %)</span>" for t in item["top3"]]
        assert html_top3 == " · ".join(expected)


def test_a_report_without_batches_draws_per_epoch_as_before(written):
    report = copy.deepcopy(written[1])
    report["batches"] = None  # a run trained before batches.csv: one epoch, nothing to draw
    assert "One epoch, so no curve to draw" in render_html(report)
    del report["batches"]  # a report.json written before the key
    assert "One epoch, so no curve to draw" in render_html(report)


def test_page_renders_in_chromium_with_its_images_and_headline(written, browser_page):
    page_file, report = written
    page = browser_page
    requests = []
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) >= 4 and min(widths) > 0
    assert f"{report['headline']['test_accuracy'] * 100:.2f} %" in page.inner_text("#test-accuracy")
    assert page.inner_text("#temperature").split()[2] == f"{report['headline']['temperature']:g}"
    assert page.locator(".takeaways li").count() == len(report["takeaways"])
    assert requests == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "report-page.png", full_page=True)
    print(f"\nscreenshot: {ARTIFACTS / 'report-page.png'}")


# --- errors and comparison ------------------------------------------------------------------------


def test_clear_errors_before_any_work(tmp_path, small_run, mnist):
    with pytest.raises(RunError, match="does not exist"):
        write_report(tmp_path / "nowhere", data=mnist, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no model.keras"):
        build_report(tmp_path / "empty", data=mnist, progress=False)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ReportError, match="cannot write the report"):
        write_report(small_run.run.path, tmp_path / "a-file" / "report.html", data=mnist, progress=False)
    with pytest.raises(ReportError, match="where the JSON goes"):
        write_report(small_run.run.path, tmp_path / "report.json", data=mnist, progress=False)
    with pytest.raises(ReportError, match="at least two"):
        compare_runs([small_run.run.path], tmp_path / "cmp.html", data=mnist, progress=False)


@pytest.fixture(scope="module")
def second_run(mnist, tmp_path_factory):
    """A different model with a validation split, so its history has two epochs of both curves."""
    from mnistlab.models import preset_config
    from mnistlab.train import train

    out = tmp_path_factory.mktemp("second") / "mlp-run"
    cfg = preset_config("mlp", epochs=2, train_limit=4000, validation_split=0.1, test_limit=500, out=str(out),
                        verbose=0)
    return train(cfg, data=mnist)


def test_compare_two_runs(small_run, second_run, mnist, tmp_path):
    # The default report goes into the run folder, so work on a copy of the shared one.
    copy = tmp_path / "small-copy"
    shutil.copytree(small_run.run.path, copy)
    page = compare_runs([copy, second_run.run.path], tmp_path / "out", **_options(mnist))
    assert page == tmp_path / "out" / "report.html"
    comparison = json.loads(page.with_suffix(".json").read_text(encoding="utf-8"))
    assert [r["headline"]["run"] for r in comparison["runs"]] == ["small-copy", "mlp-run"]
    assert comparison["runs"][1]["history"]["epoch"] == [1, 2]
    assert "val_accuracy" in comparison["runs"][1]["history"]
    assert any(t.startswith("Most accurate:") for t in comparison["takeaways"])
    # Both runs were swept over the same images with the same noise.
    assert comparison["runs"][0]["robustness"]["example_index"] == comparison["runs"][1]["robustness"]["example_index"]
    text = page.read_text(encoding="utf-8")
    assert not EXTERNAL.search(text)
    assert text.count('src="data:image/png;base64,') == 3  # curves, F1 bars, robustness
    assert "small-copy" in text and "mlp-run" in text

    # A single run's default destination is its own folder.
    assert write_report(copy, **_options(mnist, sweep_images=0)) == copy / "report.html"
    assert json.loads((copy / "report.json").read_text(encoding="utf-8"))["robustness"] is None


# --- the command line -------------------------------------------------------------------------------


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mnistlab.cli", *args], capture_output=True, text=True,
                          timeout=600)


def _assert_one_error_line(result, fragment):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


def test_import_loads_no_plotting_scipy_or_keras():
    code = ("import sys, mnistlab.report; "
            "print(sorted(m for m in ('keras', 'matplotlib', 'scipy', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_report_command_end_to_end(small_run, photos, tmp_path):
    run = str(small_run.run.path)
    done = _cli("report", run, "--out", str(tmp_path / "reports"), "--folders", str(photos),
                "--sweep-images", "200", "--limit", "500")
    assert done.returncode == 0, done.stderr
    page = tmp_path / "reports" / "report.html"
    assert done.stdout.strip() == str(page) and page.stat().st_size > 0
    report = json.loads(page.with_suffix(".json").read_text(encoding="utf-8"))
    assert report["headline"]["test_images"] == 500 and report["robustness"]["images"] == 200
    assert report["folders"][0]["n"] == 30

    quiet = _cli("report", run, "--out", str(tmp_path / "page.html"), "--sweep-images", "0", "--limit", "300",
                 "--json")
    assert quiet.returncode == 0, quiet.stderr
    summary = json.loads(quiet.stdout)  # one object and nothing else on stdout
    numbers = json.loads((tmp_path / "page.json").read_text(encoding="utf-8"))
    assert summary["html"] == str(tmp_path / "page.html") and summary["json"] == str(tmp_path / "page.json")
    assert summary["test_accuracy"] == numbers["headline"]["test_accuracy"] and summary["test_images"] == 300
    assert summary["mean_corrupted_accuracy"] is None and summary["folders"] == []


def test_compare_command_and_one_line_errors(small_run, tmp_path):
    copy = tmp_path / "small-copy"
    shutil.copytree(small_run.run.path, copy)
    done = _cli("compare", str(small_run.run.path), str(copy), "--out", str(tmp_path / "cmp.html"),
                "--sweep-images", "0", "--limit", "300", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["html"] == str(tmp_path / "cmp.html") and (tmp_path / "cmp.json").is_file()
    assert [r["run"] for r in summary["runs"]] == [str(small_run.run.path), str(copy)]

    _assert_one_error_line(_cli("report", str(tmp_path / "nowhere"), "--limit", "10"), "does not exist")
    _assert_one_error_line(_cli("compare", str(copy), "--out", str(tmp_path / "one.html")), "at least two run folders")
    assert not (tmp_path / "one.html").exists()
