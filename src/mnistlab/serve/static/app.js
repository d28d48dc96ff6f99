// The drawing page: strokes on a canvas -> POST /v1/predict (debounced) -> digit, top-3 and the
// 28x28 the model saw; "Send correction" -> POST /v1/corrections. No libraries, no build step.
// It says nothing until there is ink worth reading: a tap is never sent, and a "no_digit" answer
// shows no digit, confidence, top-3 or preview.
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
const STATUS_TEXT = { ok: "Sure.", unsure: "Unsure.", no_digit: "Keep drawing: no digit yet." };

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const answer = $("answer");
const picker = $("correct-label");
const submit = $("correct-submit");

const strokes = []; // each stroke: [[x, y], ...] in canvas pixels
let current = null; // the stroke being drawn
let timer = 0;
let sequence = 0; // numbers requests, so a late answer to an older drawing is dropped
let inflight = null;

function paint() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, SIZE, SIZE);
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
  const box = canvas.getBoundingClientRect();
  return [((event.clientX - box.left) * SIZE) / box.width, ((event.clientY - box.top) * SIZE) / box.height];
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
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

function changed() {
  paint();
  clearTimeout(timer);
  answer.setAttribute("aria-busy", "true");
  timer = setTimeout(predict, DEBOUNCE_MS);
  submit.disabled = !strokes.length || picker.value === "";
  $("correct-status").textContent = "";
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

function drawing() {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function predict() {
  const seq = ++sequence;
  if (inflight) inflight.abort();
  inflight = null;
  if (!strokes.length) {
    show(null);
    return;
  }
  if (extent() < MIN_EXTENT) {
    show({ status: "no_digit" });
    return;
  }
  const controller = (inflight = new AbortController());
  const form = new FormData();
  form.append("file", await drawing(), "drawing.png");
  try {
    const response = await fetch("/v1/predict", { method: "POST", body: form, signal: controller.signal });
    const body = await response.json();
    if (seq !== sequence) return;
    if (!response.ok) throw new Error(body.error || response.statusText);
    show(body.predictions[0]);
  } catch (error) {
    if (error.name !== "AbortError" && seq === sequence) showError(error.message);
  }
}

function show(p) {
  // No digit means no answer at all: an app (and this page) never shows a no_digit's numbers.
  const found = Boolean(p && p.status !== "no_digit" && p.digit !== null);
  $("digit").textContent = found ? String(p.digit) : "–";
  $("confidence").textContent = found ? `${Math.round(p.confidence * 100)} %` : "";
  const status = $("status");
  status.dataset.status = p ? p.status : "empty";
  status.textContent = p ? STATUS_TEXT[p.status] : "Draw a digit in the box.";
  const list = $("top3");
  list.replaceChildren();
  for (const t of found ? p.top3 : []) {
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
    pct.textContent = `${Math.round(t.confidence * 100)} %`;
    item.setAttribute("aria-label", `${t.digit}: ${Math.round(t.confidence * 100)} percent`);
    item.append(digit, bar, pct);
    list.append(item);
  }
  const preview = $("preview");
  preview.hidden = !found;
  if (found) preview.src = `data:image/png;base64,${p.input_png}`;
  answer.setAttribute("aria-busy", "false");
}

function showError(message) {
  $("digit").textContent = "–";
  $("confidence").textContent = "";
  $("status").dataset.status = "error";
  $("status").textContent = `Error: ${message}`;
  answer.setAttribute("aria-busy", "false");
}

function undo() {
  strokes.pop();
  current = null;
  changed();
}

function clear() {
  strokes.length = 0;
  current = null;
  changed();
}

$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clear);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape") {
    clear();
  }
});

picker.addEventListener("change", () => {
  submit.disabled = !strokes.length || picker.value === "";
});

submit.addEventListener("click", async () => {
  const label = picker.value;
  if (!strokes.length || label === "") return;
  const status = $("correct-status");
  submit.disabled = true;
  status.dataset.state = "sending";
  status.textContent = "Sending…";
  const form = new FormData();
  form.append("file", await drawing(), "drawing.png");
  form.append("label", label);
  try {
    const response = await fetch("/v1/corrections", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    status.dataset.state = "saved";
    status.textContent = `Thanks: saved as a ${body.label}.`;
  } catch (error) {
    status.dataset.state = "error";
    status.textContent = `Not saved: ${error.message}`;
    submit.disabled = false;
  }
});

fetch("/v1/model")
  .then((response) => response.json())
  .then((m) => {
    $("model").textContent = `${m.run || "unnamed"} (${m.runtime})`;
  })
  .catch(() => {
    $("model").textContent = "unknown";
  });

paint();
