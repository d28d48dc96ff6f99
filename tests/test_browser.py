"""The drawing page in a real Chromium (Playwright) against a real server: draw, read, undo, correct.

    .venv/bin/pytest tests/test_browser.py -s     # prints where the screenshot went

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it).
Without it the tests are skipped, except under CI (the CI variable set), where they fail.
Playwright's own browser downloads are never used.
"""

import csv
import math
from pathlib import Path

import pytest

from mnistlab.predict import Predictor
from mnistlab.serve import create_app, running

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # ignored by git
TIMEOUT_MS = 20_000  # for an answer: Keras on a busy 2-core machine, one request at a time

# Digits drawn stroke by stroke, in fractions of the canvas (x right, y down), as a person draws
# them; each is read right by the `fast` model trained in conftest.small_run.
ONE = [[(0.46, 0.16), (0.52, 0.84)]]
SEVEN = [[(0.26, 0.2), (0.74, 0.2), (0.62, 0.42), (0.46, 0.84)]]
FOUR = [[(0.56, 0.14), (0.26, 0.6), (0.76, 0.6)], [(0.6, 0.34), (0.6, 0.88)]]
ZERO = [[(0.5 + 0.22 * math.sin(t * math.pi / 12), 0.5 - 0.34 * math.cos(t * math.pi / 12)) for t in range(25)]]
STRAY = [[(0.1, 0.9), (0.9, 0.1)]]


@pytest.fixture(scope="module")
def chromium_page(chromium, tmp_path_factory):
    """A fresh headless Chromium page with touch, for drawing."""
    with chromium(tmp_path_factory.mktemp("chromium-profile"), TIMEOUT_MS,
                  viewport={"width": 900, "height": 700}, has_touch=True) as page:
        yield page


@pytest.fixture(scope="module")
def site(small_run, tmp_path_factory):
    """(URL, corrections folder) of a real server with small_run's Keras model."""
    corrections = tmp_path_factory.mktemp("browser-corrections")
    app = create_app(Predictor.from_run(small_run.run.path), corrections, run_name=small_run.run.path.name)
    with running(app) as url:
        yield url, corrections


def _draw(page, strokes):
    """Each stroke as a person draws it: press, move through the points, release."""
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()


def _draw_with(page, pointer, strokes):
    """Strokes from a finger ("touch") or a pen, sent as the browser's own input events (CDP)."""
    box = page.locator("#canvas").bounding_box()
    cdp = page.context.new_cdp_session(page)
    try:
        for stroke in strokes:
            points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
            path = [points[0]]
            for (x0, y0), (x1, y1) in zip(points, points[1:]):
                path += [(x0 + (x1 - x0) * k / 8, y0 + (y1 - y0) * k / 8) for k in range(1, 9)]
            for k, (x, y) in enumerate(path):
                if pointer == "touch":
                    kind = "touchStart" if k == 0 else "touchMove"
                    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
                else:
                    kind = "mousePressed" if k == 0 else "mouseMoved"
                    cdp.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                          "buttons": 1, "clickCount": 1, "pointerType": "pen"})
            if pointer == "touch":
                cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
            else:
                cdp.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": path[-1][0], "y": path[-1][1],
                                                      "button": "left", "clickCount": 1, "pointerType": "pen"})
    finally:
        cdp.detach()


def _answer(page, expect):
    """The shown digit, once the answer matches the drawing (aria-busy false)."""
    expect(page.locator("#answer")).to_have_attribute("aria-busy", "false")
    return page.locator("#digit").inner_text()


def test_draw_read_undo_clear_and_correct(chromium_page, site):
    from playwright.sync_api import expect

    page = chromium_page
    url, corrections = site
    problems = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(url)
    expect(page.locator("#model")).to_contain_text("keras")
    expect(page.locator("#digit")).to_have_text("–")
    expect(page.locator("#preview")).to_be_hidden()
    assert page.locator("#canvas").evaluate("c => getComputedStyle(c).touchAction") == "none"

    for strokes, digit in ((SEVEN, "7"), (ONE, "1"), (FOUR, "4"), (ZERO, "0")):
        page.click("#clear")
        _draw(page, strokes)
        assert _answer(page, expect) == digit, f"drew a {digit}, the page shows {page.inner_text('#answer')!r}"
        expect(page.locator("#preview")).to_be_visible()
        assert page.locator("#preview").get_attribute("src").startswith("data:image/png;base64,")
        assert page.locator("#preview").evaluate("i => i.naturalWidth") == 28
        expect(page.locator("#top3 li")).to_have_count(3)
        assert page.locator("#status").get_attribute("data-status") in ("ok", "unsure")
        assert page.inner_text("#confidence").endswith("%")

    _draw(page, STRAY)  # the 0 crossed out ...
    _answer(page, expect)
    page.click("#undo")  # ... and the stroke taken back
    assert _answer(page, expect) == "0"

    expect(page.locator("#correct-submit")).to_be_disabled()  # no digit picked yet
    page.select_option("#correct-label", "6")
    page.click("#correct-submit")
    expect(page.locator("#correct-status")).to_have_attribute("data-state", "saved")
    stored = list((corrections / "6").glob("*.png"))
    assert len(stored) == 1
    with open(corrections / "labels.csv", newline="") as f:
        assert list(csv.reader(f))[1:] == [[f"6/{stored[0].name}", "6"]]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "serve-page.png")
    print(f"\nscreenshot: {ARTIFACTS / 'serve-page.png'}")

    page.click("#clear")
    expect(page.locator("#digit")).to_have_text("–")
    expect(page.locator("#preview")).to_be_hidden()
    expect(page.locator("#status")).to_have_attribute("data-status", "empty")
    expect(page.locator("#correct-submit")).to_be_disabled()
    assert problems == []


def test_page_is_labelled_for_assistive_technology(chromium_page, site):
    page = chromium_page
    page.goto(site[0])
    for selector in ("#canvas", "#digit", "#top3", "#preview"):
        label = page.locator(selector).evaluate("e => e.getAttribute('aria-label') || e.getAttribute('alt') || ''")
        assert label, f"{selector} has no accessible name"
    assert page.locator("label[for=correct-label]").count() == 1
    for button in ("#clear", "#undo", "#correct-submit"):
        assert page.locator(button).inner_text().strip()


def test_touch_and_pen_draw_too(chromium_page, site):
    """Pointer Events: a finger and a pen draw like the mouse, and the page does not scroll away."""
    from playwright.sync_api import expect

    page = chromium_page
    page.goto(site[0])
    for pointer, strokes, digit in (("touch", SEVEN, "7"), ("pen", FOUR, "4")):
        page.click("#clear")
        _draw_with(page, pointer, strokes)
        answer = _answer(page, expect)
        assert answer == digit, f"drew a {digit} by {pointer}, the page shows {page.inner_text('#answer')!r}"
    assert page.evaluate("window.scrollY") == 0


def _no_answer_is_shown(page, expect):
    expect(page.locator("#answer")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#digit")).to_have_text("–")
    expect(page.locator("#confidence")).to_have_text("")
    expect(page.locator("#top3 li")).to_have_count(0)
    expect(page.locator("#preview")).to_be_hidden()
    expect(page.locator("#status")).to_have_attribute("data-status", "no_digit")


def test_a_tap_or_a_no_digit_answer_shows_nothing(chromium_page, site):
    """Nothing until there is ink worth reading: a tap is not even sent, and when the server finds
    no digit the page shows no digit, confidence, top-3 or preview (never "0, 60 %")."""
    from playwright.sync_api import expect

    page = chromium_page
    page.goto(site[0])
    sent = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/v1/predict") else None)
    _draw(page, [[(0.5, 0.5)]])  # a single tap
    page.wait_for_timeout(400)  # past the debounce: a request would have gone by now
    _no_answer_is_shown(page, expect)
    assert sent == []

    no_digit = {"predictions": [{"path": "drawing.png", "digit": None, "confidence": None, "top3": [],
                                 "status": "no_digit", "input_png": ""}]}
    page.route("**/v1/predict", lambda route: route.fulfill(json=no_digit))
    try:
        page.click("#clear")
        _draw(page, SEVEN)
        expect(page.locator("#status")).to_have_attribute("data-status", "no_digit")
        _no_answer_is_shown(page, expect)
        assert len(sent) == 1
    finally:
        page.unroute("**/v1/predict")
    page.click("#undo")  # the 7 taken back and drawn again: a real answer comes back
    _draw(page, SEVEN)
    assert _answer(page, expect) == "7"
