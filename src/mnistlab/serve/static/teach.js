// The drawing page's "teach it my handwriting" mode, over app.js (its globals and hooks): it asks
// for each digit in turn, saves each drawing as a correction (POST /v1/corrections), and "Learn"
// starts a lesson (POST /v1/finetune), followed to its before/after (GET /v1/finetune), after
// which the server reads with the personal model. Offered only where GET /v1/model says the
// server teaches (a run of one's own, not --no-teach).
"use strict";

// Four drawings of each digit: the server holds one in four of each digit's back (mnistlab.teach
// HELD_OUT), so three are learnt from and ten, one a digit, score the lesson.
const PER_DIGIT = 4;
const POLL_MS = 500;
const lesson = { digit: 0, samples: new Array(10).fill(0), minSamples: 10, running: false, saving: false };

// Saving needs a drawing (a photo is not a drawing of the digit asked for) and no save on its way.
function updateSave() {
  $("teach-save").disabled = !hasSource() || photo !== null || lesson.saving;
}

function showCounts() {
  const list = $("teach-counts");
  list.replaceChildren();
  lesson.samples.forEach((count, digit) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${digit}: ${count}/${PER_DIGIT}`;
    button.setAttribute("aria-label", `${digit}: ${count} of ${PER_DIGIT} drawings saved; draw this digit next`);
    button.setAttribute("aria-pressed", String(digit === lesson.digit));
    button.dataset.full = String(count >= PER_DIGIT);
    button.addEventListener("click", () => askFor(digit));
    item.append(button);
    list.append(item);
  });
  const total = lesson.samples.reduce((a, b) => a + b, 0);
  $("teach-learn").disabled = lesson.running || total < lesson.minSamples || Math.max(...lesson.samples) < 2;
}

function askFor(digit) {
  lesson.digit = digit;
  $("teach-digit").textContent = String(digit);
  $("teach-save").textContent = `Save this ${digit}`;
  if (mode === "teach") $("title").textContent = `Teach it my handwriting: draw ${withArticle(digit)}`;
  showCounts();
}

// The next digit to ask for: the first after this one with fewest drawings saved.
function nextDigit() {
  const fewest = Math.min(...lesson.samples);
  for (let k = 1; k <= 10; k++) {
    const digit = (lesson.digit + k) % 10;
    if (lesson.samples[digit] === fewest) return digit;
  }
  return lesson.digit;
}

function teachStatus(text, state = "") {
  $("teach-status").textContent = text;
  $("teach-status").dataset.state = state;
}

$("teach-save").addEventListener("click", async () => {
  if (!hasSource() || photo || lesson.saving) return;
  lesson.saving = true;
  updateSave();
  const digit = lesson.digit;
  const form = new FormData();
  const [blob, name] = await source();
  form.append("file", blob, name);
  form.append("label", String(digit));
  try {
    const response = await fetch("/v1/corrections", { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || response.statusText);
    lesson.samples[digit] += 1;
    teachStatus(`Saved ${withArticle(digit)}.`);
    clear();
    askFor(nextDigit());
  } catch (error) {
    teachStatus(`Not saved: ${error.message}`, "error");
  } finally {
    lesson.saving = false;
    updateSave();
  }
});

$("teach-learn").addEventListener("click", async () => {
  $("teach-result").hidden = true;
  try {
    const response = await fetch("/v1/finetune", { method: "POST" });
    const body = await response.json().catch(() => ({}));
    if (response.status === 409) {
      refreshLesson(); // one is running already (another tab's): follow that one
      return;
    }
    if (!response.ok) throw new Error(body.error || response.statusText);
    followLesson(body);
  } catch (error) {
    teachStatus(`Could not start learning: ${error.message}`, "error");
  }
});

const percentOf = (p) => (p === null || p === undefined ? "–" : `${(p * 100).toFixed(1)} %`);

// What GET or POST /v1/finetune said: counts, then progress while running, the outcome after.
function followLesson(state) {
  if (state.samples) lesson.samples = state.samples;
  if (state.min_samples) lesson.minSamples = state.min_samples;
  lesson.running = state.state === "running";
  const bar = $("teach-progress");
  bar.hidden = !lesson.running;
  if (lesson.running) {
    bar.value = state.progress || 0;
    const eta = typeof state.eta_s === "number" ? `, about ${Math.ceil(state.eta_s)} s left` : "";
    teachStatus(`Learning your handwriting… ${Math.round((state.progress || 0) * 100)} %${eta}`, "running");
    setTimeout(refreshLesson, POLL_MS);
  } else if (state.state === "done" && state.result) {
    showResult(state.result);
    loadModel();
  } else if (state.state === "failed") {
    teachStatus(`Learning failed: ${state.error}. The model it had goes on reading.`, "error");
  }
  showCounts();
}

function showResult(r) {
  const [yours, mnist] = [$("teach-yours").cells, $("teach-mnist").cells];
  if (r.before.yours === null) {
    yours[0].textContent = `your held-back drawings: too few (${r.held_out}) to measure; save ${PER_DIGIT} of each digit`;
    yours[1].textContent = yours[2].textContent = "–";
  } else {
    yours[0].textContent = `your ${r.held_out} held-back drawings`;
    yours[1].textContent = percentOf(r.before.yours);
    yours[2].textContent = percentOf(r.after.yours);
  }
  mnist[1].textContent = percentOf(r.before.mnist);
  mnist[2].textContent = percentOf(r.after.mnist);
  $("teach-result").hidden = false;
  teachStatus(`Learnt from ${r.learnt_from} drawings in ${Math.round(r.seconds)} s; it now reads with what it learnt.`,
    "done");
}

function refreshLesson() {
  fetch("/v1/finetune")
    .then((response) => (response.ok ? response.json() : Promise.reject(new Error(response.statusText))))
    .then(followLesson)
    .catch((error) => teachStatus(`No word from the server: ${error.message}`, "error"));
}

hooks.changed.push(updateSave);
hooks.mode.push((name) => {
  $("teach").hidden = name !== "teach";
  if (name === "teach") {
    askFor(lesson.digit);
    refreshLesson();
  }
});
function offer(m) {
  $("teach-mode").hidden = !(m.teach && m.teach.available);
  if (m.teach && !m.teach.available) $("teach-mode").title = m.teach.reason || "";
}
hooks.model.push(offer);
if (served) offer(served); // GET /v1/model answered before this script ran

askFor(0);
