// digitlab's pages: the drawing page (live prediction) and the run report.
// Plain JavaScript, no libraries, nothing loaded from anywhere but this server.
"use strict";

const DEFAULT_MAX_BODY = 10 * 1024 * 1024;
const PREDICT_DELAY_MS = 120; // wait this long after the last stroke movement

function el(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function percent(p) {
  return (100 * p).toFixed(1) + "%";
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// --------------------------------------------------------------------------- drawing page

function setUpDrawing() {
  const pad = document.getElementById("pad");
  const context = pad.getContext("2d");
  const clearButton = document.getElementById("clear");
  const upload = document.getElementById("upload");
  const numberBox = document.getElementById("number");
  const explainBox = document.getElementById("explain");
  const whyOut = document.getElementById("why");
  const digitOut = document.getElementById("digit");
  const statusOut = document.getElementById("status");
  const hiddenOut = document.getElementById("hidden");
  const errorOut = document.getElementById("error");
  const seen = document.getElementById("seen");
  const bars = document.getElementById("bars");
  const photoFigure = document.getElementById("photo-figure");
  const photo = document.getElementById("photo");
  const photoName = document.getElementById("photo-name");
  let maxBody = DEFAULT_MAX_BODY;
  let drawing = false;
  let inked = false;
  let last = null;
  let timer = null;
  let sequence = 0; // answers to older requests are ignored
  let photoUrl = null;
  // The run's classes: the ten digits unless /api/model says otherwise.
  let classNames = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

  function resetCanvas() {
    context.fillStyle = "#fff";
    context.fillRect(0, 0, pad.width, pad.height);
    context.strokeStyle = "#000";
    context.fillStyle = "#000";
    context.lineCap = "round";
    context.lineJoin = "round";
    // About 1/14 of the side: after shrinking to 20 px the stroke is ~1.5-2 px, like MNIST.
    context.lineWidth = Math.round(pad.width / 14);
  }

  function showEmpty() {
    digitOut.textContent = "–";
    digitOut.dataset.status = "empty";
    statusOut.textContent = "Draw a digit to start.";
    seen.replaceChildren();
    whyOut.replaceChildren();
    whyOut.hidden = true;
    hiddenOut.replaceChildren();
    hiddenOut.hidden = true;
    renderBars([]);
    hideError();
  }

  function showError(message) {
    errorOut.textContent = message;
    errorOut.hidden = false;
  }

  function hideError() {
    errorOut.hidden = true;
    errorOut.textContent = "";
  }

  function renderBars(probabilities) {
    // probabilities: one per class, or one list per digit of a number.
    const groups = probabilities.length && Array.isArray(probabilities[0]) ? probabilities : [probabilities];
    bars.replaceChildren();
    groups.forEach((group, index) => {
      if (groups.length > 1) bars.append(el("p", { class: "group" }, `Digit ${index + 1}`));
      const best = group.length ? group.indexOf(Math.max(...group)) : -1;
      for (let d = 0; d < classNames.length; d++) {
        const p = group.length ? group[d] : 0;
        const row = el("div", { class: "bar-row", role: "listitem", "data-digit": String(d), "data-probability": String(p) });
        row.setAttribute("aria-label", `${classNames[d]}: ${percent(p)}`);
        const label = el("span", { class: "bar-label", "aria-hidden": "true" }, classNames[d]);
        const track = el("span", { class: "bar-track", "aria-hidden": "true" });
        const fill = el("span", { class: d === best ? "bar-fill best" : "bar-fill" });
        fill.style.width = (100 * p).toFixed(2) + "%";
        track.append(fill);
        const value = el("span", { class: "bar-value", "aria-hidden": "true" }, group.length ? percent(p) : "");
        row.append(label, track, value);
        bars.append(row);
      }
    });
  }

  function showResult(result) {
    hideError();
    digitOut.dataset.status = result.status;
    const named = (t) => (t.class_name !== undefined && t.class_name !== null ? t.class_name : t.digit);
    const top = result.top3.map((t) => `${named(t)} (${percent(t.probability)})`).join(", ");
    if (result.status === "ok") {
      digitOut.textContent = String(named(result));
      statusOut.textContent = `Probability ${percent(result.probability)}. Top 3: ${top}.`;
    } else if (result.status === "not sure") {
      digitOut.textContent = "?";
      statusOut.textContent = `Not sure: best guess ${named(result.top3[0])} at ${percent(result.probability)}. Top 3: ${top}.`;
    } else if (result.reason === "not a digit") {
      digitOut.textContent = "✗";
      statusOut.textContent = "Not a digit: this does not look like any of 0–9. Draw one digit.";
    } else {
      digitOut.textContent = "–";
      statusOut.textContent = "No digit found. Draw a bigger or darker one.";
    }
    seen.replaceChildren(
      ...result.images.map((url, i) =>
        el("img", { src: url, width: "112", height: "112", alt: `28 by 28 input ${i + 1} given to the model` })
      )
    );
    renderBars(result.probabilities);
    const layers = result.hidden || [];
    hiddenOut.hidden = !layers.length;
    hiddenOut.replaceChildren(
      ...layers.map((layer, i) => {
        const figure = el("figure", { class: "hidden-layer" });
        figure.append(
          el("img", { src: layer.image, alt: `Hidden layer ${i + 1}: ${layer.units} units, brighter is more active` }),
          el("figcaption", {}, `hidden layer ${i + 1}: ${layer.active} of ${layer.units} units active`)
        );
        return figure;
      })
    );
    const why = result.why || [];
    whyOut.hidden = !why.length;
    whyOut.replaceChildren(
      ...why.map((url, i) =>
        el("img", { src: url, width: "112", height: "112", class: "why", alt: `Why, input ${i + 1}: red pixels pushed the answer up, blue down` })
      )
    );
  }

  async function predict(body, headers = {}) {
    const mine = ++sequence;
    const options = [];
    if (!numberBox.checked) options.push("single=true");
    if (explainBox.checked) options.push("explain=true");
    const query = options.length ? "?" + options.join("&") : "";
    let response;
    try {
      response = await fetch("/api/predict" + query, { method: "POST", body, headers });
    } catch (error) {
      if (mine === sequence) {
        if (!timer) pad.dataset.pending = "false";
        showError(`The server did not answer (${error.message}).`);
      }
      return;
    }
    const result = await response.json().catch(() => ({ error: response.statusText }));
    if (mine !== sequence) return; // a newer drawing is on its way
    if (!timer) pad.dataset.pending = "false"; // the answer shown is the drawing's
    if (!response.ok) {
      showError(result.error || `Error ${response.status}`);
      return;
    }
    showResult(result);
  }

  function predictCanvas() {
    timer = null;
    if (!inked) {
      pad.dataset.pending = "false";
      return;
    }
    pad.toBlob((blob) => {
      if (!blob || !inked) {
        if (!timer) pad.dataset.pending = "false";
        return;
      }
      const form = new FormData();
      form.append("file", blob, "drawing.png");
      predict(form);
    }, "image/png");
  }

  function schedulePrediction(delay = PREDICT_DELAY_MS) {
    pad.dataset.pending = "true";
    if (timer) clearTimeout(timer);
    timer = setTimeout(predictCanvas, delay);
  }

  function position(event) {
    const box = pad.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * pad.width) / box.width,
      y: ((event.clientY - box.top) * pad.height) / box.height,
    };
  }

  function strokeTo(point) {
    context.beginPath();
    context.moveTo(last.x, last.y);
    context.lineTo(point.x, point.y);
    context.stroke();
    last = point;
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    try {
      pad.setPointerCapture(event.pointerId); // keep the stroke when it leaves the canvas
    } catch (error) {
      // Synthetic or already-released pointers cannot be captured; drawing still works.
    }
    if (photoUrl) hidePhoto();
    drawing = true;
    inked = true;
    last = position(event);
    context.beginPath(); // a dot for a tap
    context.arc(last.x, last.y, context.lineWidth / 2, 0, 2 * Math.PI);
    context.fill();
    schedulePrediction();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) strokeTo(position(e));
    schedulePrediction();
  });
  const stop = (event) => {
    if (!drawing) return;
    drawing = false;
    if (pad.hasPointerCapture && pad.hasPointerCapture(event.pointerId)) {
      pad.releasePointerCapture(event.pointerId);
    }
    schedulePrediction(0);
  };
  pad.addEventListener("pointerup", stop);
  pad.addEventListener("pointercancel", stop);

  function hidePhoto() {
    URL.revokeObjectURL(photoUrl);
    photoUrl = null;
    photo.removeAttribute("src");
    photoFigure.hidden = true;
  }

  clearButton.addEventListener("click", () => {
    sequence++; // drop answers still on their way
    if (timer) clearTimeout(timer);
    timer = null;
    pad.dataset.pending = "false";
    inked = false;
    resetCanvas();
    if (photoUrl) hidePhoto();
    upload.value = "";
    showEmpty();
  });

  explainBox.addEventListener("change", () => schedulePrediction(0));
  numberBox.addEventListener("change", () => {
    if (inked) schedulePrediction(0);
    else if (upload.files.length) sendPhoto(upload.files[0]);
  });

  function sendPhoto(file) {
    if (file.size > maxBody) {
      showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the server takes at most ${(maxBody / 1048576).toFixed(0)} MB.`);
      return;
    }
    inked = false;
    resetCanvas();
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = URL.createObjectURL(file);
    photo.src = photoUrl;
    photoName.textContent = file.name;
    photoFigure.hidden = false;
    const form = new FormData();
    form.append("file", file, file.name);
    predict(form);
  }

  upload.addEventListener("change", () => {
    if (upload.files.length) sendPhoto(upload.files[0]);
  });

  resetCanvas();
  showEmpty();
  getJson("/api/model")
    .then((model) => {
      maxBody = (model.limits && model.limits.max_body_bytes) || DEFAULT_MAX_BODY;
      if (Array.isArray(model.class_names) && model.class_names.length) {
        classNames = model.class_names.map(String);
        const digits = classNames.join(",") === "0,1,2,3,4,5,6,7,8,9";
        if (!digits) {
          document.getElementById("draw-title").textContent = `Draw one of: ${classNames.join(", ")}`;
          numberBox.checked = false;
          numberBox.disabled = true;
        }
        renderBars([]);
      }
      const accuracy = model.metrics && model.metrics.accuracy !== undefined
        ? `, ${percent(model.metrics.accuracy)} accuracy on ${model.metrics.size.toLocaleString()} ${model.metrics.set} images`
        : "";
      const params = model.params ? `${model.params.toLocaleString()} parameters` : model.backend;
      document.getElementById("model-line").textContent =
        `Model: ${model.model || "loaded"} (${params}${accuracy}).`;
    })
    .catch((error) => {
      document.getElementById("model-line").textContent = `Model information unavailable: ${error.message}`;
    });
}

// --------------------------------------------------------------------------- report page

function fillList(list, entries) {
  list.replaceChildren();
  for (const [key, value] of entries) {
    list.append(el("dt", {}, key), el("dd", {}, value));
  }
}

function setUpReport() {
  const errorOut = document.getElementById("error");
  getJson("/api/model")
    .then((model) => {
      document.getElementById("run-title").textContent = `Run report: ${model.run || "model"}`;
      const m = model.metrics || {};
      const entries = [];
      if (m.accuracy !== undefined) entries.push(["Accuracy", percent(m.accuracy)]);
      if (m.loss !== undefined) entries.push(["Loss", m.loss.toFixed(4)]);
      if (m.ece !== undefined) entries.push(["Calibration error (ECE)", m.ece.toFixed(4)]);
      if (m.macro_f1 !== undefined) entries.push(["Macro F1", m.macro_f1.toFixed(4)]);
      if (m.set) entries.push(["Evaluated on", `${m.size.toLocaleString()} ${m.set} images`]);
      if (model.params) entries.push(["Parameters", model.params.toLocaleString()]);
      if (model.train_seconds) entries.push(["Training time", `${model.train_seconds.toFixed(1)} s`]);
      if (model.created) entries.push(["Created", model.created]);
      fillList(document.getElementById("metrics"), entries);

      const figures = document.getElementById("figures");
      const captions = {
        confusion_matrix: "Confusion matrix: rows are true classes, columns predictions",
        training_curves: "Training curves: loss and accuracy per epoch",
        predictions: "Sample predictions with their probabilities",
        mistakes: "The most confident mistakes",
        reliability: "Reliability: how often answers of each confidence were right",
      };
      figures.replaceChildren();
      for (const [name, url] of Object.entries(model.report || {})) {
        const figure = el("figure");
        figure.append(el("img", { src: url, alt: captions[name] || name }));
        figure.append(el("figcaption", {}, captions[name] || name));
        figures.append(figure);
      }
      if (!figures.children.length) figures.append(el("p", {}, "This run has no report images (trained with --no-plots)."));

      const body = document.querySelector("#classes tbody");
      body.replaceChildren();
      for (const [name, c] of Object.entries(model.per_class || {})) {
        const row = el("tr");
        row.append(el("th", { scope: "row" }, name));
        for (const v of [c.precision, c.recall, c.f1]) row.append(el("td", {}, v.toFixed(3)));
        row.append(el("td", {}, c.support.toLocaleString()));
        body.append(row);
      }
      const config = Object.entries(model.config || {}).map(([k, v]) => [k, v === null ? "default" : Array.isArray(v) ? v.join(", ") : String(v)]);
      fillList(document.getElementById("config"), config);
      fillList(document.getElementById("versions"), Object.entries(model.versions || {}));
    })
    .catch((error) => {
      errorOut.textContent = `Could not load the run: ${error.message}`;
      errorOut.hidden = false;
    });
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "draw") setUpDrawing();
  if (document.body.dataset.page === "report") setUpReport();
});
