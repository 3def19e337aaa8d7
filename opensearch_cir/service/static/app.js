// The web page of opensearch-cir. It talks only to the service's API (/health, /search, /images).
//
// A session is a list of turns. Each turn has a reference (an uploaded file, an indexed document,
// or none), a modification text and, once run, its results. Clicking a result starts a new turn
// with that result as the reference; editing an earlier turn and re-running drops the turns after it.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { turns: [newTurn(null)], apiKey: localStorage.getItem("cir-api-key") || "" };

function newTurn(reference) {
  return { reference, text: "", negative: "", results: null };
}
function current() { return state.turns[state.turns.length - 1]; }

function headers() { return state.apiKey ? { "X-API-Key": state.apiKey } : {}; }

// Images behind an API key cannot be loaded with a plain <img src>: fetch them with the header.
async function setImage(img, url) {
  if (!url) { img.removeAttribute("src"); return; }
  if (!state.apiKey || url.startsWith("blob:")) { img.src = url; return; }
  try {
    const response = await fetch(url, { headers: headers() });
    if (response.ok) img.src = URL.createObjectURL(await response.blob());
  } catch (_) { /* leave the image empty */ }
}

async function errorText(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

// --- reference ---------------------------------------------------------------------------------
function setReference(reference) {
  current().reference = reference;
  renderReference();
}

function renderReference() {
  const reference = current().reference;
  const preview = $("reference-preview");
  preview.hidden = !reference;
  $("drop-hint").hidden = !!reference;
  $("clear-reference").hidden = !reference;
  $("reference-caption").textContent = reference ? reference.label : "";
  if (reference) setImage(preview, reference.previewUrl);
}

function pickFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { showError(`${file.name} is not an image`); return; }
  showError("");
  setReference({ kind: "file", file, previewUrl: URL.createObjectURL(file), label: `uploaded: ${file.name}` });
}

// --- search ------------------------------------------------------------------------------------
function parseFilters(text) {
  const filters = {};
  for (const part of text.split(",")) {
    if (!part.trim()) continue;
    const [field, ...rest] = part.split("=");
    if (!rest.length || !field.trim()) throw new Error(`filter "${part.trim()}" is not field=value`);
    filters[field.trim()] = rest.join("=").trim();
  }
  return filters;
}

async function runCurrentTurn() {
  const turn = current();
  turn.text = $("text").value.trim();
  turn.negative = $("negative").value.trim();
  if (!turn.reference && !turn.text) { showError("Give a reference image or a text."); return; }
  const form = new FormData();
  if (turn.reference && turn.reference.kind === "file") form.append("images", turn.reference.file, turn.reference.file.name);
  if (turn.reference && turn.reference.kind === "doc") form.append("reference_id", turn.reference.id);
  if (turn.text) form.append("text", turn.text);
  if (turn.negative) form.append("negative_text", turn.negative);
  if ($("strategy").value) form.append("strategy", $("strategy").value);
  form.append("k", $("k").value);
  form.append("explain", "true");
  try {
    const filters = parseFilters($("filters").value);
    if (Object.keys(filters).length) form.append("filters", JSON.stringify(filters));
  } catch (error) { showError(error.message); return; }

  showError("");
  $("search").disabled = true;
  $("status").textContent = "Searching…";
  let response;
  try {
    response = await fetch("/search", { method: "POST", body: form, headers: headers() });
  } catch (error) {
    showError(`The service did not answer: ${error.message}`);
    $("status").textContent = "";
    return;
  } finally {
    $("search").disabled = false;
  }
  if (!response.ok) {
    if (response.status === 401) $("settings").open = true;  // the key goes there
    showError(await errorText(response));
    $("status").textContent = "";
    return;
  }
  const body = await response.json();
  turn.results = body.results;
  const rewritten = body.query && body.query.rewritten_caption;
  $("status").textContent = `${body.results.length} results · ${body.strategy} · ${body.took_ms} ms` +
    (rewritten ? ` · looking for “${rewritten}”` : "");
  renderResults(body.results);
  renderHistory();
}

function renderResults(results) {
  const grid = $("results");
  grid.replaceChildren();
  if (!results.length) { $("status").textContent = "No results. Loosen the filters or change the text."; return; }
  results.forEach((result, rank) => {
    const card = document.createElement("div");
    card.className = "card";
    card.title = "Use as the new reference and refine";
    card.dataset.id = result.id;
    const img = document.createElement("img");
    img.alt = result.caption || result.id;
    img.loading = "lazy";
    setImage(img, result.image_url);
    const body = document.createElement("div");
    body.className = "body";
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = `#${rank + 1} · ${result.score.toFixed(4)}`;
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = result.caption || "(no caption)";
    body.append(score, caption);
    if (result.scores) {
      const sub = document.createElement("div");
      sub.className = "subscores";
      sub.textContent = Object.entries(result.scores).map(([name, value]) => `${name} ${value === null ? "–" : value.toFixed(3)}`).join(" · ");
      body.append(sub);
    }
    body.append(metadataChips(result.metadata || {}));
    card.append(img, body);
    card.addEventListener("click", () => refineFrom(result));
    grid.append(card);
  });
}

// Metadata values as chips; clicking one adds it to the filters (not to the reference).
const MAX_CHIPS = 6;
function metadataChips(metadata) {
  const chips = document.createElement("div");
  chips.className = "chips";
  for (const [key, value] of Object.entries(metadata)) {
    if (/(^|_)id$/i.test(key)) continue;  // identifiers make useless filters
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item === "object" || String(item).length > 40 || chips.children.length >= MAX_CHIPS) continue;
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.textContent = `${key}=${item}`;
      chip.title = "Filter on this value";
      chip.addEventListener("click", (event) => {
        event.stopPropagation();
        const current = $("filters").value.trim();
        const filter = `metadata.${key}=${item}`;
        if (!current.split(",").map((part) => part.trim()).includes(filter)) {
          $("filters").value = current ? `${current}, ${filter}` : filter;
        }
      });
      chips.append(chip);
    }
  }
  return chips;
}

// Clicking a result: it becomes the reference of a new turn; the user types the next modification.
function refineFrom(result) {
  if (current().results) state.turns.push(newTurn(null));  // else: the pending turn just changes its reference
  setReference({ kind: "doc", id: result.id, previewUrl: result.image_url, label: `result: ${result.caption || result.id}` });
  $("text").value = "";
  $("negative").value = "";
  renderHistory();
  $("text").focus();
  $("status").textContent = "Now type how the next results should differ from this one.";
}

// --- history -----------------------------------------------------------------------------------
function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  state.turns.forEach((turn, index) => {
    if (!turn.results) return;  // only turns that ran
    const item = document.createElement("li");
    const step = document.createElement("div");
    step.className = "step";
    if (turn.reference) {
      const thumb = document.createElement("img");
      thumb.alt = turn.reference.label;
      setImage(thumb, turn.reference.previewUrl);
      step.append(thumb);
    }
    const input = document.createElement("input");
    input.value = turn.text;
    input.placeholder = "(no text)";
    input.setAttribute("aria-label", `modification of step ${index + 1}`);
    const rerun = document.createElement("button");
    rerun.type = "button";
    rerun.textContent = "re-run";
    rerun.title = "Re-run this step with the edited text (later steps are dropped)";
    rerun.addEventListener("click", () => rerunFrom(index, input.value));
    step.append(input, rerun);
    item.append(step);
    list.append(item);
  });
  if (!list.children.length) list.innerHTML = '<li class="muted">Each refinement appears here; edit a step and re-run from it.</li>';
}

function rerunFrom(index, text) {
  state.turns = state.turns.slice(0, index + 1);
  const turn = current();
  $("text").value = text;
  $("negative").value = turn.negative;
  renderReference();
  runCurrentTurn();
}

// --- service info ------------------------------------------------------------------------------
async function loadHealth() {
  try {
    const response = await fetch("/health");
    const health = await response.json();
    $("health").textContent = `${health.status} · ${health.documents ?? 0} images · model ${health.model_id ?? "?"} · ${health.engine}`;
    const select = $("strategy");
    for (const name of health.strategies || []) {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      select.append(option);
    }
  } catch (_) {
    $("health").textContent = "service unreachable";
  }
}

// --- wiring ------------------------------------------------------------------------------------
function wire() {
  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") $("file").click(); });
  $("file").addEventListener("change", (event) => pickFile(event.target.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    pickFile(event.dataTransfer.files[0]);
  });
  $("clear-reference").addEventListener("click", () => { setReference(null); $("file").value = ""; });
  $("start-over").addEventListener("click", () => {
    state.turns = [newTurn(null)];
    $("file").value = $("text").value = $("negative").value = "";
    $("results").replaceChildren();
    $("status").textContent = "";
    showError("");
    renderReference();
    renderHistory();
  });
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); runCurrentTurn(); });
  $("api-key").value = state.apiKey;
  $("api-key").addEventListener("change", (event) => {
    state.apiKey = event.target.value.trim();
    localStorage.setItem("cir-api-key", state.apiKey);
  });
  loadHealth();
}

wire();
