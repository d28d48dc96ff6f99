// The drawing page: strokes on a canvas (or a photo) -> POST /v1/predict, or /v1/read in number
// mode (debounced) -> the answer, its top-3 and the 28x28 images the model saw, and in number mode
// each digit's box over the canvas; "Send correction" -> POST /v1/corrections. The teach mode is
// teach.js's. No libraries, no build step.
// It never shows a stale answer: any change clears the answer at once and marks it busy, and an
// answer to an older drawing is dropped. It says nothing until there is ink worth reading: a tap
// is never sent, and a "no_digit" answer shows no digit, confidence, top-3 or image.
"use strict";

const SIZE = 280; // canvas pixels; the CSS size may differ, pointer positions are scaled to it
// MNIST strokes are ~2.3 px wide in a 20 px digit box (11 %); a digit drawn here spans about
// 70 % of the canvas, so 0.7 * 0.115 of its side.
const STROKE = 0.08 * SIZE;
const DEBOUNCE_MS = 150;
// A tap or a speck is no digit: while the strokes span less than this (the longer side of their
// box, in canvas pixels) the page waits for more ink instead of asking the server. A digit drawn
// here spans about 70 % of the canvas; even a short "1" spans more than a tenth of it.
const MIN_EXTENT = 0.1 * SIZE;
// A photo past the server's limits (GET /v1/model; these are its defaults) is sent as a smaller
// JPEG instead of being refused: the server finds ink on at most 640 px (data/ink.py), so 2048 px
// lose nothing it uses. A photo within them is sent as taken. 64 KiB: the multipart wrapping.
const MAX_PHOTO_SIDE = 2048;
const limits = { bytes: 10 * 1024 * 1024 - 65536, pixels: 40_000_000 };

const MODES = {
  digit: {
    route: "/v1/predict",
    title: "Draw a digit",
    canvas: "Drawing area: draw one digit with a mouse, pen or finger",
    empty: "Draw a digit in the box, or take a photo of one.",
  },
  number: {
    route: "/v1/read",
    title: "Write a number",
    canvas: "Drawing area: write a number, its digits apart, with a mouse, pen or finger",
    empty: "Write a number in the box, its digits apart, or take a photo of one.",
  },
  teach: {
    route: "/v1/predict",
    title: "Teach it my handwriting",
    canvas: "Drawing area: draw the digit asked for below, with a mouse, pen or finger",
    empty: "Draw the digit asked for below, then save it.",
  },
};

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const answer = $("answer");
const picker = $("correct-label");
const submit = $("correct-submit");

const strokes = []; // each stroke: [[x, y], ...] in canvas pixels
let current = null; // the stroke being drawn
let photo = null; // {blob, name, bitmap, width, height}: sent instead of the strokes while shown
let mode = "digit";
let timer = 0;
let sequence = 0; // counts changes, so an answer to an older drawing is dropped
let inflight = null;
// What teach.js (the teach mode) follows: every change of the drawing, the mode, GET /v1/model.
const hooks = { changed: [], mode: [], model: [] };
let served = null; // GET /v1/model's answer, once it came (a hook added later reads it here)

// -- the canvas ---------------------------------------------------------------------------------

// Where the photo lies on the canvas: its pixels times scale, plus (x, y); the whole of it shown.
function photoFit() {
  const scale = Math.min(SIZE / photo.width, SIZE / photo.height);
  return { scale, x: (SIZE - photo.width * scale) / 2, y: (SIZE - photo.height * scale) / 2 };
}

function paint() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, SIZE, SIZE);
  if (photo && photo.bitmap) {
    const fit = photoFit();
    ctx.drawImage(photo.bitmap, fit.x, fit.y, photo.width * fit.scale, photo.height * fit.scale);
  }
  ctx.strokeStyle = "#000";
  ctx.lineWidth = STROKE;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const stroke of strokes) {
    ctx.beginPath();
    ctx.moveTo(stroke[0][0], stroke[0][1]);
    if (stroke.length === 1) ctx.lineTo(stroke[0][0] + 0.01, stroke[0][1]); // a dot
    for (const [x, y] of stroke.slice(1)) ctx.lineTo(x, y);
    ctx.stroke();
  }
}

function position(event) {
  // Inside the border: the canvas may be drawn at any CSS size (a phone's width).
  const box = canvas.getBoundingClientRect();
  return [
    ((event.clientX - box.left - canvas.clientLeft) * SIZE) / canvas.clientWidth,
    ((event.clientY - box.top - canvas.clientTop) * SIZE) / canvas.clientHeight,
  ];
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  photo = null; // drawing starts afresh over a photo
  current = [position(event)];
  strokes.push(current);
  changed();
});

canvas.addEventListener("pointermove", (event) => {
  if (!current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) current.push(position(e));
  changed();
});

for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
  canvas.addEventListener(type, () => {
    if (current) changed();
    current = null;
  });
}

function extent() {
  let [left, top, right, bottom] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const stroke of strokes) {
    for (const [x, y] of stroke) {
      left = Math.min(left, x);
      top = Math.min(top, y);
      right = Math.max(right, x);
      bottom = Math.max(bottom, y);
    }
  }
  return strokes.length ? Math.max(right - left, bottom - top) : 0;
}

function hasSource() {
  return Boolean(photo || strokes.length);
}

// The file to send: the photo as chosen (or shrunk), else the strokes as a PNG.
async function source() {
  if (photo) return [photo.blob, photo.name];
  const png = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  return [png, "drawing.png"];
}

// -- asking the server --------------------------------------------------------------------------

// Any answer on its way, or due, is for a drawing that no longer exists.
function invalidate() {
  sequence++;
  clearTimeout(timer);
  if (inflight) inflight.abort();
  inflight = null;
}

function changed() {
  paint();
  invalidate();
  updateCorrection();
  $("correct-status").textContent = "";
  if (!hasSource()) {
    show(null);
    return;
  }
  showBusy();
  timer = setTimeout(ask, DEBOUNCE_MS);
}

async function ask() {
  const seq = sequence;
  const reading = mode === "number";
  if (!photo && extent() < MIN_EXTENT) {
    show({ status: "no_digit" });
    return;
  }
  const controller = (inflight = new AbortController());
  const form = new FormData();
  const [blob, name] = await source();
  if (seq !== sequence) return;
  form.append("file", blob, name);
  try {
    const response = await fetch(MODES[mode].route, { method: "POST", body: form, signal: controller.signal });
    const body = await response.json().catch(() => ({}));
    if (seq !== sequence) return;
    if (!response.ok) throw new Error(body.error || response.statusText);
    show(reading ? fromReading(body) : fromPrediction(body.predictions[0]));
  } catch (error) {
    if (error.name !== "AbortError" && seq === sequence) showError(error.message);
  } finally {
    if (inflight === controller) inflight = null;
  }
}

// -- answers, in one shape: {status, text, confidence, top3, seen: [png], boxes: [edges]} -------

function fromPrediction(p) {
  return {
    status: p.status,
    text: p.digit === null || p.digit === undefined ? "" : String(p.digit),
    confidence: p.confidence,
    top3: p.top3 || [],
    seen: p.input_png ? [p.input_png] : [],
    boxes: [],
  };
}

function fromReading(r) {
  const digits = r.digits || [];
  return {
    status: r.status,
    text: r.text || "",
    confidence: r.confidence,
    top3: [],
    seen: digits.map((d) => d.input_png).filter(Boolean),
    boxes: digits.map((d) => ({ edges: edges(d.box), digit: d.digit })).filter((b) => b.edges),
  };
}

// A digit's box in the image sent. /v1/read gives [top, left, bottom, right] today; it may become
// named fields {left, top, right, bottom}, so both are read, and a box in neither form is skipped.
function edges(box) {
  if (!box) return null;
  const [top, left, bottom, right] = Array.isArray(box) ? box : [box.top, box.left, box.bottom, box.right];
  const all = [top, left, bottom, right].map(Number);
  return all.every(Number.isFinite) ? { top: all[0], left: all[1], bottom: all[2], right: all[3] } : null;
}

function statusText(status) {
  if (status === "ok") return "Sure.";
  if (status === "unsure") return "Unsure.";
  if (photo) return "No digit found in the photo.";
  return mode === "number" ? "Keep writing: no digit yet." : "Keep drawing: no digit yet.";
}

const percent = (p) => `${Math.round(p * 100)} %`;

function show(a) {
  // No digit means no answer at all: an app (and this page) never shows a no_digit's numbers.
  const found = Boolean(a && a.status !== "no_digit" && a.text);
  $("digit").textContent = found ? a.text : "";
  $("digit").setAttribute("aria-label", mode === "number" ? "Number read" : "Predicted digit");
  $("confidence").textContent = found && typeof a.confidence === "number" ? percent(a.confidence) : "";
  $("headline").hidden = !found;
  const status = $("status");
  status.dataset.status = a ? a.status : "empty";
  status.textContent = a ? statusText(a.status) : MODES[mode].empty;

  const list = $("top3");
  list.replaceChildren();
  for (const t of found ? a.top3 : []) {
    const item = document.createElement("li");
    const digit = document.createElement("span");
    const bar = document.createElement("span");
    const fill = document.createElement("span");
    const pct = document.createElement("span");
    digit.textContent = t.digit;
    bar.className = "bar";
    fill.style.width = `${(t.confidence * 100).toFixed(1)}%`;
    bar.append(fill);
    pct.className = "pct";
    pct.textContent = percent(t.confidence);
    item.setAttribute("aria-label", `${t.digit}: ${Math.round(t.confidence * 100)} percent`);
    item.append(digit, bar, pct);
    list.append(item);
  }
  list.hidden = !list.children.length;

  const images = $("seen-images");
  images.replaceChildren();
  const seen = found ? a.seen : [];
  seen.forEach((png, k) => {
    const img = document.createElement("img");
    img.src = `data:image/png;base64,${png}`;
    img.width = img.height = seen.length > 1 ? 84 : 112;
    img.alt = seen.length > 1
      ? `The 28 by 28 pixel image the model saw for digit ${k + 1} of ${seen.length}`
      : "The 28 by 28 pixel image the model saw";
    images.append(img);
  });
  $("seen").hidden = !seen.length;
  showBoxes(found ? a.boxes : []);
  answer.setAttribute("aria-busy", "false");
}

// Each digit's box over the canvas, in percent of it so it follows the canvas's CSS size.
function showBoxes(boxes) {
  const layer = $("boxes");
  layer.replaceChildren();
  if (photo && !photo.bitmap) return; // a photo the browser cannot show: nothing to draw them on
  const fit = photo ? photoFit() : { scale: 1, x: 0, y: 0 };
  for (const { edges: e, digit } of boxes) {
    const box = document.createElement("span");
    box.className = "box";
    box.style.left = `${((fit.x + e.left * fit.scale) / SIZE) * 100}%`;
    box.style.top = `${((fit.y + e.top * fit.scale) / SIZE) * 100}%`;
    box.style.width = `${(((e.right - e.left) * fit.scale) / SIZE) * 100}%`;
    box.style.height = `${(((e.bottom - e.top) * fit.scale) / SIZE) * 100}%`;
    const label = document.createElement("span");
    label.textContent = digit === null || digit === undefined ? "?" : String(digit);
    box.append(label);
    layer.append(box);
  }
}

function showBusy() {
  if (answer.getAttribute("aria-busy") === "true") return;
  show(null);
  $("status").dataset.status = "busy";
  $("status").textContent = "Reading…";
  answer.setAttribute("aria-busy", "true");
}

function showError(message) {
  show(null);
  $("status").dataset.status = "error";
  $("status").textContent = `Error: ${message}`;
}

// -- the tools ----------------------------------------------------------------------------------

function undo() {
  if (photo) photo = null;
  else strokes.pop();
  current = null;
  changed();
}

function clear() {
  strokes.length = 0;
  photo = null;
  current = null;
  changed();
}

async function usePhoto(file) {
  invalidate();
  showBusy();
  let bitmap = null;
  try {
    bitmap = await createImageBitmap(file); // upright, as its EXIF says (so does the server)
  } catch {
    // A format this browser cannot show (HEIC in Chrome): the server may still read it.
  }
  let blob = file;
  let [width, height] = bitmap ? [bitmap.width, bitmap.height] : [1, 1];
  if (bitmap && (file.size > limits.bytes || width * height > limits.pixels)) {
    const scale = Math.min(1, MAX_PHOTO_SIDE / Math.max(width, height));
    const small = document.createElement("canvas");
    [small.width, small.height] = [Math.round(width * scale), Math.round(height * scale)];
    small.getContext("2d").drawImage(bitmap, 0, 0, small.width, small.height);
    blob = await new Promise((resolve) => small.toBlob(resolve, "image/jpeg", 0.92));
    [width, height] = [small.width, small.height];
  }
  strokes.length = 0;
  current = null;
  photo = { blob, name: file.name || "photo.jpg", bitmap, width, height };
  changed();
}

function setMode(name) {
  mode = name;
  $("title").textContent = MODES[mode].title;
  canvas.setAttribute("aria-label", MODES[mode].canvas);
  for (const hook of hooks.mode) hook(mode);
  changed();
}

$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clear);
$("photo").addEventListener("change", (event) => {
  const file = event.target.files[0];
  event.target.value = ""; // the same photo chosen again is a change too
  if (file) usePhoto(file);
});
for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => radio.checked && setMode(radio.value));
}
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape") {
    clear();
  }
});

// -- corrections --------------------------------------------------------------------------------

// "a 7", "an 8", "an 11", "an 18", "an 80", "an 11000": the article goes by how the number is said,
// and "eight", "eleven" and "eighteen" begin with a vowel sound. A number is said from its leading
// group of up to three digits: 11000 is "eleven thousand", 110 "one hundred and ten".
function withArticle(number) {
  const text = String(number);
  const lead = text.startsWith("0") ? "0" : text.slice(0, ((text.length - 1) % 3) + 1);
  const vowel = lead.startsWith("8") || lead === "11" || lead === "18";
  return `${vowel ? "an" : "a"} ${text}`;
}

// Offered for a drawing or photo in digit mode: a correction is one digit's label.
function updateCorrection() {
  $("correct").hidden = mode !== "digit" || !hasSource();
  submit.disabled = !hasSource() || picker.value === "";
  for (const hook of hooks.changed) hook();
}

picker.addEventListener("change", updateCorrection);

submit.addEventListener("click", async () => {
  const label = picker.value;
  if (!hasSource() || label === "") return;
  const status = $("correct-status");
  submit.disabled = true;
  status.dataset.state = "sending";
  status.textContent = "Sending…";
  const form = new FormData();
  const [blob, name] = await source();
  form.append("file", blob, name);
  form.append("label", label);
  try {
    const response = await fetch("/v1/corrections", { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || response.statusText);
    status.dataset.state = "saved";
    status.textContent = `Thanks: saved as ${withArticle(body.label)}.`;
  } catch (error) {
    status.dataset.state = "error";
    status.textContent = `Not saved: ${error.message}`;
    submit.disabled = false;
  }
});

// -- the model --------------------------------------------------------------------------------

function loadModel() {
  return fetch("/v1/model")
    .then((response) => response.json())
    .then((m) => {
      $("model").textContent = `${m.run || "unnamed"} (${m.runtime})`;
      if (m.limits && m.limits.max_request_bytes) limits.bytes = m.limits.max_request_bytes - 65536;
      if (m.limits && m.limits.max_pixels) limits.pixels = m.limits.max_pixels;
      served = m;
      for (const hook of hooks.model) hook(m);
    })
    .catch(() => {
      $("model").textContent = "unknown";
    });
}

loadModel();

updateCorrection();
paint();
