"""The drawing page's "teach it my handwriting" mode in a real Chromium against a real server:
draw a style the model misreads, save it, learn, and see it read right, with the before/after.

    .venv/bin/pytest tests/test_teach_page.py -s

Chromium as in test_browser.py (conftest's `chromium` fixture).
"""

import shutil
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from test_browser import draw_strokes

from mnistlab.predict import load_predictor
from mnistlab.serve import create_app, running
from mnistlab.serve.corrections import CorrectionStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _writers import SIZE, WRITERS, samples  # noqa: E402

LESSON_MS = 300_000  # a lesson: under a minute here, far more on a loaded CI machine
WRITER = WRITERS["continental"]
PER_DIGIT = 4  # as the page asks


def _png(image, path):
    Image.fromarray(image).save(path)
    return path.read_bytes()


@pytest.fixture
def teach_site(onnx_run, tmp_path):
    """A server over a copy of conftest's onnx_run whose lessons are on, and the digit of the
    continental writer it misreads most, with every other digit's drawings already stored."""
    run = tmp_path / "run"
    shutil.copytree(onnx_run, run)
    predictor = load_predictor(run)
    misread = {d: np.mean([a.digit != d for a in predictor.predict([s.image for s in samples(WRITER, d, 10, 5)])])
               for d in range(10)}
    digit = max(misread, key=misread.get)
    assert misread[digit] >= 0.5, misread  # a style the model gets wrong, or the test proves nothing
    store = CorrectionStore(run / "corrections", 10_000, 10**9)
    for other in (d for d in range(10) if d != digit):
        for k, drawing in enumerate(samples(WRITER, other, PER_DIGIT, 1)):
            store.add(_png(drawing.image, tmp_path / f"{other}-{k}.png"), other)
    app = create_app(predictor, run / "corrections", run_name="run", teach_run=run)
    with running(app) as url:
        yield url, digit


def _draw(page, strokes):
    """A writer's strokes (canvas pixels, points a few pixels apart) drawn with the mouse."""
    draw_strokes(page, [[(x / SIZE, y / SIZE) for x, y in stroke] for stroke in strokes], steps=2)


def test_teach_mode_learns_a_misread_style(chromium, teach_site, tmp_path):
    from playwright.sync_api import expect

    url, digit = teach_site
    with chromium(tmp_path / "profile", 20_000, viewport={"width": 900, "height": 900}) as page:
        page.goto(url)
        expect(page.locator("#teach-mode")).to_be_visible()
        page.locator("input[value=teach]").check()
        expect(page.locator("#teach")).to_be_visible()
        counts = page.locator("#teach-counts button")
        expect(counts).to_have_count(10)
        expect(counts.nth((digit + 1) % 10)).to_have_text(f"{(digit + 1) % 10}: {PER_DIGIT}/{PER_DIGIT}")
        expect(counts.nth(digit)).to_have_text(f"{digit}: 0/{PER_DIGIT}")
        # The page asks for the digit with no drawings yet; before the lesson it misreads it.
        counts.nth(digit).click()
        expect(page.locator("#teach-digit")).to_have_text(str(digit))
        for k, drawing in enumerate(samples(WRITER, digit, PER_DIGIT, 1)):
            _draw(page, drawing.strokes)
            expect(page.locator("#answer")).to_have_attribute("aria-busy", "false")
            page.locator("#teach-save").click()
            expect(counts.nth(digit)).to_have_text(f"{digit}: {k + 1}/{PER_DIGIT}")
            expect(page.locator("#digit")).to_have_text("")  # saved and cleared for the next one
        learn = page.locator("#teach-learn")
        expect(learn).to_be_enabled()
        learn.click()
        expect(page.locator("#teach-progress")).to_be_visible()
        expect(page.locator("#teach-result")).to_be_visible(timeout=LESSON_MS)
        expect(page.locator("#teach-progress")).to_be_hidden()
        yours = page.locator("#teach-yours td")
        mnist = page.locator("#teach-mnist td")
        for cells in (yours, mnist):
            expect(cells).to_have_count(2)
            for k in range(2):
                assert cells.nth(k).inner_text().endswith("%")
        expect(page.locator("#model")).to_contain_text("run/personal/")
        page.screenshot(path=str(tmp_path / "teach.png"), full_page=True)
        # A new drawing of the style, never learnt from, is now read right.
        page.locator("input[value=digit]").check()
        read = 0
        for drawing in samples(WRITER, digit, 3, 9):
            page.locator("#clear").click()
            _draw(page, drawing.strokes)
            expect(page.locator("#answer")).to_have_attribute("aria-busy", "false")
            read += page.locator("#digit").inner_text() == str(digit)
        assert read >= 2, f"{read} of 3 new drawings of {digit} read right after the lesson"

        # A lesson started elsewhere (another tab, a script): Learn follows it instead of failing.
        page.locator("input[value=teach]").check()
        assert httpx.post(url + "v1/finetune", timeout=60).status_code == 202
        page.locator("#teach-learn").click()
        expect(page.locator("#teach-progress")).to_be_visible()
        expect(page.locator("#teach-status")).to_contain_text("Learning")
        expect(page.locator("#teach-result")).to_be_visible(timeout=LESSON_MS)
        expect(page.locator("#teach-status")).to_have_attribute("data-state", "done")
