"""The drawing page in a real Chromium (Playwright) against a real server: draw, read, undo, correct,
send a photo, read a number, on a desktop and a phone's width.

    .venv/bin/pytest tests/test_browser.py -s     # prints where the screenshot went

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it).
Without it the tests are skipped, except under CI (the CI variable set), where they fail.
Playwright's own browser downloads are never used.
"""

import csv
import io
import math
import time
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


def draw_strokes(page, strokes, steps=8):
    """Each stroke as a person draws it: press, move through the points (in fractions of the
    canvas) in `steps` mouse moves between each two, release."""
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=steps)
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
    """The shown digit (or number), once the answer matches the drawing (aria-busy false)."""
    expect(page.locator("#answer")).to_have_attribute("aria-busy", "false")
    return page.locator("#digit").inner_text()


def _nothing_is_shown(page, expect, status):
    """No digit, confidence, top-3, image or box: only the status line (empty, no_digit, busy)."""
    expect(page.locator("#status")).to_have_attribute("data-status", status)
    expect(page.locator("#answer")).to_have_attribute("aria-busy", "true" if status == "busy" else "false")
    for part in ("#headline", "#top3", "#seen"):
        expect(page.locator(part)).to_be_hidden()
    expect(page.locator("#digit")).to_have_text("")
    expect(page.locator("#confidence")).to_have_text("")
    expect(page.locator("#top3 li")).to_have_count(0)
    expect(page.locator("#seen img")).to_have_count(0)
    expect(page.locator("#boxes .box")).to_have_count(0)


def _seen_is_shown(page, expect, count):
    """`count` 28x28 PNGs under "what the model saw", each with a text alternative."""
    images = page.locator("#seen img")
    expect(page.locator("#seen")).to_be_visible()
    expect(images).to_have_count(count)
    for k in range(count):
        assert images.nth(k).get_attribute("src").startswith("data:image/png;base64,")
        assert images.nth(k).get_attribute("alt")
        expect(images.nth(k)).to_have_js_property("naturalWidth", 28)


def test_draw_read_undo_clear_and_correct(chromium_page, site):
    from playwright.sync_api import expect

    page = chromium_page
    url, corrections = site
    problems = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(url)
    expect(page.locator("#model")).to_contain_text("keras")
    _nothing_is_shown(page, expect, "empty")
    assert page.locator("#canvas").evaluate("c => getComputedStyle(c).touchAction") == "none"

    for strokes, digit in ((SEVEN, "7"), (ONE, "1"), (FOUR, "4"), (ZERO, "0")):
        page.click("#clear")
        draw_strokes(page, strokes)
        assert _answer(page, expect) == digit, f"drew a {digit}, the page shows {page.inner_text('#answer')!r}"
        _seen_is_shown(page, expect, 1)
        expect(page.locator("#top3 li")).to_have_count(3)
        assert page.locator("#status").get_attribute("data-status") in ("ok", "unsure")
        assert page.inner_text("#confidence").endswith("%")

    draw_strokes(page, STRAY)  # the 0 crossed out ...
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
        assert [f"6/{stored[0].name}", "6"] in list(csv.reader(f))[1:]  # other tests send theirs too
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "serve-page.png")
    print(f"\nscreenshot: {ARTIFACTS / 'serve-page.png'}")

    page.click("#clear")
    _nothing_is_shown(page, expect, "empty")
    expect(page.locator("#correct")).to_be_hidden()  # nothing to correct
    assert problems == []


def test_page_is_labelled_for_assistive_technology(chromium_page, site):
    page = chromium_page
    page.goto(site[0])
    for selector in ("#canvas", "#digit", "#top3", "#answer"):
        label = page.locator(selector).evaluate("e => e.getAttribute('aria-label') || e.getAttribute('alt') || ''")
        assert label, f"{selector} has no accessible name"
    assert page.locator("#answer").get_attribute("aria-live") == "polite"
    assert page.locator("#seen figcaption").inner_text() == "what the model saw"
    assert page.locator("label[for=correct-label]").count() == 1
    assert page.locator("label[for=photo]").inner_text().strip()
    for button in ("#clear", "#undo", "#correct-submit"):
        assert page.locator(button).inner_text().strip()
    for mode in ("digit", "number"):
        assert page.locator(f"label:has(input[name=mode][value={mode}])").inner_text().strip()


def test_page_is_keyboard_operable(chromium_page, site):
    """Tab reaches every control (the photo button too), arrows switch the mode, and focus shows."""
    from playwright.sync_api import expect

    page = chromium_page
    page.goto(site[0])
    expect(page.locator("#correct")).to_be_hidden()  # offered once there is something to correct
    draw_strokes(page, SEVEN)
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.value"))
        if reached[-1] == "photo":  # hidden from sight, not from the keyboard: its label shows the focus
            assert page.locator("label[for=photo]").evaluate("l => getComputedStyle(l).outlineStyle") == "solid"
    for control in ("digit", "undo", "clear", "photo", "correct-label"):
        assert control in reached, f"Tab never reaches #{control}: {reached}"
    page.focus("input[name=mode][value=digit]")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#title")).to_have_text("Write a number")
    expect(page.locator("#correct")).to_be_hidden()  # a correction is one digit's label
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#title")).to_have_text("Draw a digit")


# Text over its background, WCAG 2 relative luminance; 4.5:1 is level AA for body text.
_CONTRAST = """e => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => v / 255)
    .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
    .reduce((sum, v, k) => sum + v * [0.2126, 0.7152, 0.0722][k], 0);
  let back = e;
  while (back && (rgb(getComputedStyle(back).backgroundColor)[3] === 0)) back = back.parentElement;
  const a = lum(rgb(getComputedStyle(e).color));
  const b = lum(rgb(getComputedStyle(back || document.documentElement).backgroundColor));
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def test_text_has_contrast(chromium_page, site):
    page = chromium_page
    page.goto(site[0])
    for selector in ("h1", "#status", "legend", "#undo", "label[for=photo]", "figcaption", "footer", "footer a"):
        ratio = page.locator(selector).first.evaluate(_CONTRAST)
        assert ratio >= 4.5, f"{selector}: contrast {ratio:.2f}:1"
    for status in ("ok", "unsure", "no_digit", "error", "busy"):
        page.locator("#status").evaluate(f"s => s.dataset.status = '{status}'")
        ratio = page.locator("#status").evaluate(_CONTRAST)
        assert ratio >= 4.5, f"#status[data-status={status}]: contrast {ratio:.2f}:1"


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
    _nothing_is_shown(page, expect, "no_digit")


def test_a_tap_or_a_no_digit_answer_shows_nothing(chromium_page, site):
    """Nothing until there is ink worth reading: a tap is not even sent, and when the server finds
    no digit the page shows no digit, confidence, top-3 or preview (never "0, 60 %")."""
    from playwright.sync_api import expect

    page = chromium_page
    page.goto(site[0])
    sent = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/v1/predict") else None)
    draw_strokes(page, [[(0.5, 0.5)]])  # a single tap
    page.wait_for_timeout(400)  # past the debounce: a request would have gone by now
    _no_answer_is_shown(page, expect)
    assert sent == []

    no_digit = {"predictions": [{"path": "drawing.png", "digit": None, "confidence": None, "top3": [],
                                 "status": "no_digit", "input_png": ""}]}
    page.route("**/v1/predict", lambda route: route.fulfill(json=no_digit))
    try:
        page.click("#clear")
        draw_strokes(page, SEVEN)
        expect(page.locator("#status")).to_have_attribute("data-status", "no_digit")
        _no_answer_is_shown(page, expect)
        assert len(sent) == 1
    finally:
        page.unroute("**/v1/predict")
    page.click("#undo")  # the 7 taken back and drawn again: a real answer comes back
    draw_strokes(page, SEVEN)
    assert _answer(page, expect) == "7"


def _placed(strokes, left, top, scale):
    """Strokes shrunk by `scale` within the canvas, their frame's top-left corner moved to (left, top)."""
    return [[(left + x * scale, top + y * scale) for x, y in stroke] for stroke in strokes]


def _until(page, condition, timeout_ms=TIMEOUT_MS):
    """Wait for a condition on the test's side (a held request), letting Playwright dispatch events."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(50)


_SHOWN_NOW = """() => ({
  busy: document.getElementById("answer").getAttribute("aria-busy"),
  status: document.getElementById("status").dataset.status,
  digit: document.getElementById("digit").textContent,
  headline: !document.getElementById("headline").hidden,
  top3: document.querySelectorAll("#top3 li").length,
  seen: document.querySelectorAll("#seen img").length,
})"""


def test_undo_never_shows_a_stale_answer(chromium_page, site):
    """After Undo the old answer goes at once and the page shows it is busy, however late the reply
    (here held back until the test lets it go)."""
    from playwright.sync_api import expect

    page = chromium_page
    page.goto(site[0])
    draw_strokes(page, ZERO + STRAY)
    _answer(page, expect)
    expect(page.locator("#headline")).to_be_visible()  # an answer that would go stale
    held = []
    page.route("**/v1/predict", lambda route: held.append(route))
    try:
        page.click("#undo")
        # One look right after the click, with no retrying that a reply could slip in behind.
        assert page.evaluate(_SHOWN_NOW) == {"busy": "true", "status": "busy", "digit": "", "headline": False,
                                             "top3": 0, "seen": 0}
        expect(page.locator("#status")).to_have_text("Reading…")
        _until(page, lambda: held)  # the undone drawing's request, held back
        _nothing_is_shown(page, expect, "busy")
        held[0].continue_()
    finally:
        page.unroute("**/v1/predict")
    assert _answer(page, expect) == "0"

    page.keyboard.press("Control+z")  # the 0 taken back too: nothing left, nothing shown at once
    assert page.evaluate(_SHOWN_NOW)["status"] == "empty"
    _nothing_is_shown(page, expect, "empty")


def test_canvas_fills_a_phone(chromium_page, site):
    """On a 390 x 844 phone the canvas spans the content's width, stays square, nothing sticks out
    sideways, and a finger draws on it."""
    from playwright.sync_api import expect

    page = chromium_page
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.goto(site[0])
        box = page.locator("#canvas").bounding_box()
        content = page.locator("main").evaluate(
            "m => { const s = getComputedStyle(m); return m.clientWidth - parseFloat(s.paddingLeft)"
            " - parseFloat(s.paddingRight); }")
        assert box["width"] >= 340 and abs(box["width"] - content) <= 1, (box, content)
        assert abs(box["height"] - box["width"]) <= 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        _draw_with(page, "touch", SEVEN)
        assert _answer(page, expect) == "7", f"the page shows {page.inner_text('#answer')!r}"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "serve-page-phone.png", full_page=True)
    finally:
        page.set_viewport_size({"width": 900, "height": 700})


def _photo_of(digit):
    """PNG bytes like a phone's photo of a digit on paper: dark ink on grey paper, larger than the
    canvas, off-centre, in colour."""
    from PIL import Image, ImageChops

    ink = Image.fromarray(255 - digit).resize((150, 150), Image.BICUBIC)
    paper = Image.new("L", (480, 360), 225)
    sheet = Image.new("L", paper.size, 255)
    sheet.paste(ink, (200, 120))
    buffer = io.BytesIO()
    Image.merge("RGB", [ImageChops.darker(paper, sheet)] * 3).save(buffer, format="PNG")
    return buffer.getvalue()


# Playwright sees no file in a multipart body (Chromium leaves blobs out), so the page's fetch
# keeps what it sent.
_KEEP_SENT_FILES = """() => {
  const send = window.fetch;
  window.sentFiles = [];
  window.fetch = (url, init) => {
    if (init && init.body instanceof FormData) window.sentFiles.push([url, init.body.get("file")]);
    return send(url, init);
  };
}"""
_SENT_FILES = """async () => Promise.all(window.sentFiles.map(
  async ([url, file]) => [url, file.name, Array.from(new Uint8Array(await file.arrayBuffer()))]))"""

# A canvas pixel where _photo_of's paper shows (480 x 360 fitted into 280 x 280: y from 35 to 245).
_PAPER = "c => Array.from(c.getContext('2d').getImageData(140, 60, 1, 1).data.slice(0, 3))"


def test_photo_button_sends_a_photo(chromium_page, site, mnist):
    """A camera picture goes as taken to /v1/predict; the page shows its answer and what the model
    saw, shows the photo on the canvas, and sends the photo as a correction."""
    from playwright.sync_api import expect

    page = chromium_page
    url, corrections = site
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url)
    photo = page.locator("#photo")
    assert photo.get_attribute("type") == "file" and photo.get_attribute("accept") == "image/*"
    assert photo.evaluate("p => p.hasAttribute('capture')")
    digit = int(mnist.y_test[0])
    png = _photo_of(mnist.x_test[0])
    page.evaluate(_KEEP_SENT_FILES)
    photo.set_input_files({"name": "camera.png", "mimeType": "image/png", "buffer": png})
    assert _answer(page, expect) == str(digit), f"the page shows {page.inner_text('#answer')!r}"
    sent = page.evaluate(_SENT_FILES)
    assert sent == [["/v1/predict", "camera.png", list(png)]]  # the photo as taken, not a redrawn copy
    _seen_is_shown(page, expect, 1)
    expect(page.locator("#top3 li")).to_have_count(3)
    assert page.locator("#canvas").evaluate(_PAPER) == [225] * 3  # the photo's paper, on the canvas

    page.select_option("#correct-label", "8")
    page.click("#correct-submit")
    expect(page.locator("#correct-status")).to_have_text("Thanks: saved as an 8.")
    assert len(list((corrections / "8").glob("*.png"))) == 1

    page.click("#undo")  # the photo taken back
    _nothing_is_shown(page, expect, "empty")
    assert page.locator("#canvas").evaluate(_PAPER) == [255] * 3
    assert problems == []


def test_number_mode_reads_a_number_and_boxes_its_digits(chromium_page, site):
    """Number mode asks /v1/read, shows the number and what the model saw of each digit, and draws
    each digit's box over the canvas; a tap is not sent; Undo takes the boxes away at once."""
    from playwright.sync_api import expect

    page = chromium_page
    page.goto(site[0])
    sent, problems = [], []
    page.on("request", lambda r: sent.append(r.url.rsplit("/", 1)[-1]) if r.method == "POST" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.check("input[name=mode][value=number]")
    expect(page.locator("#title")).to_have_text("Write a number")
    expect(page.locator("#correct")).to_be_hidden()

    draw_strokes(page, [[(0.5, 0.5)]])  # a single tap
    _nothing_is_shown(page, expect, "no_digit")
    assert sent == []

    page.click("#clear")
    draw_strokes(page, _placed(ONE, -0.05, 0.15, 0.7) + _placed(SEVEN, 0.35, 0.15, 0.7))
    assert _answer(page, expect) == "17", f"the page shows {page.inner_text('#answer')!r}"
    assert sent and set(sent) == {"read"}
    boxes = page.locator("#boxes .box")
    expect(boxes).to_have_count(2)
    expect(boxes.nth(0)).to_have_text("1")
    expect(boxes.nth(1)).to_have_text("7")
    canvas = page.locator("#canvas").bounding_box()
    for k, (low, high) in enumerate(((0.2, 0.4), (0.5, 0.9))):  # each box over its digit
        b = boxes.nth(k).bounding_box()
        centre = (b["x"] + b["width"] / 2 - canvas["x"]) / canvas["width"]
        assert low < centre < high, (k, centre)
        assert canvas["y"] <= b["y"] and b["y"] + b["height"] <= canvas["y"] + canvas["height"]
    assert boxes.nth(0).locator("span").evaluate(_CONTRAST) >= 4.5
    _seen_is_shown(page, expect, 2)
    expect(page.locator("#top3")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "serve-page-number.png")

    # The 7 taken back: the boxes go in the same task as the click, before any reply can come.
    taken_back = "() => { document.getElementById('undo').click(); return document.querySelectorAll('.box').length; }"
    assert page.evaluate(taken_back) == 0
    assert _answer(page, expect) == "1"
    expect(boxes).to_have_count(1)

    page.check("input[name=mode][value=digit]")  # back to one digit: /v1/predict, no boxes
    assert _answer(page, expect) == "1"
    expect(boxes).to_have_count(0)
    assert sent[-1] == "predict"
    expect(page.locator("#correct")).to_be_visible()
    assert problems == []
    # A box in either form /v1/read has used: [top, left, bottom, right], or named edges.
    both = page.evaluate("[edges([10, 20, 30, 40]), edges({left: 20, top: 10, right: 40, bottom: 30})]")
    assert both == [{"top": 10, "left": 20, "bottom": 30, "right": 40}] * 2


def test_corrections_are_thanked_with_the_right_article(chromium_page, site):
    """"an 8", "a 7": by the sound of the number said aloud (eight, eleven, eighteen)."""
    page = chromium_page
    page.goto(site[0])
    numbers = ["0", "1", "7", "8", "11", "18", "80", "81", "110", "800", "1800", "11000", "18000", "08"]
    said = page.evaluate(f"{numbers}.map(withArticle)")
    assert said == ["a 0", "a 1", "a 7", "an 8", "an 11", "an 18", "an 80", "an 81", "a 110", "an 800",
                    "a 1800", "an 11000", "an 18000", "a 08"]


def test_api_docs_render_with_the_network_off(chromium_page, site):
    """/docs is Swagger UI from the package itself (fastapi-offline): with every host but the
    server unreachable it lists the routes and their models, and it asks nothing of any other host."""
    from playwright.sync_api import expect

    page = chromium_page
    url = site[0]
    elsewhere = []

    def only_the_server(route):
        if route.request.url.startswith(url) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", only_the_server)
    try:
        page.goto(url + "docs")
        # Swagger UI's 1.5 MB script is parsed and the schema drawn: seconds on a busy 2-core machine
        expect(page.locator(".opblock-summary-path[data-path='/v1/predict']")).to_be_visible(timeout=TIMEOUT_MS)
        for path in ("/v1/read", "/v1/corrections", "/v1/model", "/healthz"):
            expect(page.locator(f".opblock-summary-path[data-path='{path}']")).to_be_visible()
        expect(page.locator("section.models")).to_contain_text("ReadDigit")
        expect(page.locator(".errors-wrapper")).to_have_count(0)  # Swagger UI found the schema sound
    finally:
        page.unroute("**/*", only_the_server)
    assert elsewhere == []
