// digitlab's drawing page, exported: the model runs in the browser on
// onnxruntime-web (the wasm build in ./ort/), with the same framing as Python
// (./frame.js). Everything comes from this folder; nothing is sent anywhere.
import * as ort from "./ort/ort.wasm.bundle.min.mjs";
import { prepareCanvas } from "./frame.js";

const PREDICT_DELAY_MS = 120;
ort.env.wasm.numThreads = 1; // a plain static server gives no cross-origin isolation
// Only the .wasm file's address: the bundle carries its own JavaScript glue.
ort.env.wasm.wasmPaths = { wasm: new URL("./ort/ort-wasm-simd-threaded.wasm", import.meta.url).href };

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const context = pad.getContext("2d", { willReadFrequently: true });
const digitOut = $("digit");
const statusOut = $("status");
const bars = $("bars");
const seen = $("seen");
let description = null;
let session = null;
let detector = null; // the "not a digit" model, when the export has one
let classNames = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
let drawing = false, inked = false, last = null, timer = null, sequence = 0;

function el(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}
const percent = (p) => (100 * p).toFixed(1) + "%";

function resetCanvas() {
  context.fillStyle = "#fff";
  context.fillRect(0, 0, pad.width, pad.height);
  context.strokeStyle = "#000";
  context.fillStyle = "#000";
  context.lineCap = "round";
  context.lineJoin = "round";
  context.lineWidth = Math.round(pad.width / 14);
}

function renderBars(probabilities) {
  bars.replaceChildren();
  const best = probabilities.length ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  classNames.forEach((name, d) => {
    const p = probabilities.length ? probabilities[d] : 0;
    const row = el("div", { class: "bar-row", role: "listitem", "data-digit": String(d), "data-probability": String(p) });
    row.setAttribute("aria-label", `${name}: ${percent(p)}`);
    const track = el("span", { class: "bar-track", "aria-hidden": "true" });
    const fill = el("span", { class: d === best ? "bar-fill best" : "bar-fill" });
    fill.style.width = (100 * p).toFixed(2) + "%";
    track.append(fill);
    row.append(el("span", { class: "bar-label", "aria-hidden": "true" }, name), track,
      el("span", { class: "bar-value", "aria-hidden": "true" }, probabilities.length ? percent(p) : ""));
    bars.append(row);
  });
}

function showPixels(pixels) {
  const small = document.createElement("canvas");
  small.width = small.height = 28;
  const image = small.getContext("2d").createImageData(28, 28);
  pixels.forEach((v, i) => {
    const g = Math.round(Math.min(1, Math.max(0, v)) * 255);
    image.data.set([g, g, g, 255], 4 * i);
  });
  small.getContext("2d").putImageData(image, 0, 0);
  const img = el("img", { src: small.toDataURL("image/png"), width: "112", height: "112", alt: "28 by 28 input given to the model" });
  seen.replaceChildren(img);
  seen.dataset.pixels = JSON.stringify(Array.from(pixels));
}

function showEmpty(message = "Draw a digit to start.") {
  digitOut.textContent = "–";
  digitOut.dataset.status = "empty";
  statusOut.textContent = message;
  seen.replaceChildren();
  delete seen.dataset.pixels;
  renderBars([]);
}

async function predictCanvas() {
  timer = null;
  if (!inked || !session) return;
  const mine = ++sequence;
  const prepared = prepareCanvas(context.getImageData(0, 0, pad.width, pad.height));
  if (!prepared.hasInk) {
    showEmpty("No digit found. Draw a bigger or darker one.");
    digitOut.dataset.status = "no digit";
    return;
  }
  const input = new ort.Tensor("float32", prepared.pixels, [1, 28, 28]);
  const outputs = await session.run({ [description.input.name]: input });
  if (mine !== sequence) return; // a newer drawing is on its way
  const probabilities = Array.from(outputs[description.output.name].data);
  const order = probabilities.map((p, d) => [p, d]).sort((a, b) => b[0] - a[0]).slice(0, 3);
  const [best, index] = order[0];
  const top = order.map(([p, d]) => `${classNames[d]} (${percent(p)})`).join(", ");
  const threshold = description.reading.threshold;
  let digitScore = null;
  if (detector) {
    const scored = await detector.run({ [description.detector.input.name]: input });
    if (mine !== sequence) return;
    digitScore = scored[description.detector.output.name].data[1];
  }
  digitOut.dataset.digitScore = digitScore === null ? "" : String(digitScore);
  digitOut.dataset.reason = "";
  if (digitScore !== null && digitScore < description.detector.threshold) {
    digitOut.textContent = "✗";
    digitOut.dataset.status = "no digit";
    digitOut.dataset.reason = "not a digit";
    statusOut.textContent = "Not a digit: this does not look like any of 0–9. Draw one digit.";
  } else if (best >= threshold) {
    digitOut.textContent = classNames[index];
    digitOut.dataset.status = "ok";
    statusOut.textContent = `Probability ${percent(best)}. Top 3: ${top}.`;
  } else {
    digitOut.textContent = "?";
    digitOut.dataset.status = "not sure";
    statusOut.textContent = `Not sure: best guess ${classNames[index]} at ${percent(best)}. Top 3: ${top}.`;
  }
  showPixels(prepared.pixels);
  renderBars(probabilities);
}

function schedule(delay = PREDICT_DELAY_MS) {
  if (timer) clearTimeout(timer);
  timer = setTimeout(predictCanvas, delay);
}

function position(event) {
  const box = pad.getBoundingClientRect();
  return { x: ((event.clientX - box.left) * pad.width) / box.width, y: ((event.clientY - box.top) * pad.height) / box.height };
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  try { pad.setPointerCapture(event.pointerId); } catch (error) { /* synthetic pointers */ }
  drawing = true;
  inked = true;
  last = position(event);
  context.beginPath();
  context.arc(last.x, last.y, context.lineWidth / 2, 0, 2 * Math.PI);
  context.fill();
  schedule();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const point = position(e);
    context.beginPath();
    context.moveTo(last.x, last.y);
    context.lineTo(point.x, point.y);
    context.stroke();
    last = point;
  }
  schedule();
});
const stop = () => { if (drawing) { drawing = false; schedule(0); } };
pad.addEventListener("pointerup", stop);
pad.addEventListener("pointercancel", stop);
$("clear").addEventListener("click", () => {
  sequence++;
  if (timer) clearTimeout(timer);
  inked = false;
  resetCanvas();
  showEmpty();
});

async function start() {
  resetCanvas();
  renderBars([]);
  try {
    description = await (await fetch("model.json")).json();
    classNames = description.class_names.map(String);
    session = await ort.InferenceSession.create(description.model_file, { executionProviders: ["wasm"] });
    if (description.detector) {
      detector = await ort.InferenceSession.create(description.detector.file, { executionProviders: ["wasm"] });
    }
  } catch (error) {
    $("error").textContent = `Could not load the model: ${error.message}`;
    $("error").hidden = false;
    statusOut.textContent = "";
    return;
  }
  showEmpty();
  const run = description.run || {};
  const m = run.metrics || {};
  const accuracy = m.accuracy !== undefined ? `, ${percent(m.accuracy)} accuracy on ${m.size.toLocaleString()} ${m.set} images` : "";
  $("model-line").textContent = `Model: ${run.model || "exported"} (${(run.params || 0).toLocaleString()} parameters${accuracy}), running in this browser.`;
  document.body.dataset.ready = "true";
  if (inked) schedule(0);
}

window.digitlab = { prepareCanvas, ready: start() };
