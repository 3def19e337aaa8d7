// The web page of opensearch-cir. It talks only to the service's API (/health, /browse, /sessions, /images).
//
// The page is one server-side session (/sessions) of turns. Each turn has a reference (an uploaded
// file, a document picked from the collection grid, a result marked "this one", or none: the session
// keeps the previous one), a modification text (the session accumulates them) and, once run, its
// results. Clicking a result ("this one") starts a new turn from it; "not this one" marks a result
// to exclude and push away from the next turn on. Editing an earlier turn and re-running drops the
// turns after it (the session's `keep`). Changing strategy, results, filters or rerank starts a new session.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { turns: [newTurn(null)], apiKey: localStorage.getItem("cir-api-key") || "", session: null,
                rejectNext: new Set(), browse: { page: 1, size: 24, total: 0 } };

function newTurn(reference) {
  return { reference, text: "", negative: "", results: null, rejected: [], combined: null };
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

function sessionSettings() {
  const settings = { k: $("k").value, strategy: $("strategy").value, rerank: $("rerank").value };
  const filters = parseFilters($("filters").value);  // throws on bad input
  if (Object.keys(filters).length) settings.filters = JSON.stringify(filters);
  return settings;
}

async function post(url, form) {
  const response = await fetch(url, { method: "POST", body: form, headers: headers() });
  if (!response.ok) {
    if (response.status === 401) $("settings").open = true;  // the key goes there
    throw new Error(await errorText(response));
  }
  return response.json();
}

// A session for the current settings: the open one, or a new one when the settings changed.
async function ensureSession(settings) {
  const key = JSON.stringify(settings);
  if (state.session && state.session.key === key) return false;
  const form = new FormData();
  for (const [name, value] of Object.entries(settings)) if (value) form.append(name, value);
  const body = await post("/sessions", form);
  state.session = { id: body.id, key, expires: body.expires_in_s };
  return true;
}

async function runCurrentTurn(keep = null) {
  if (current().results && keep === null) state.turns.push(newTurn(null));  // a new turn of the session
  const turn = current();
  turn.text = $("text").value.trim();
  turn.negative = $("negative").value.trim();
  if (!turn.reference && !turn.text && state.turns.length === 1) { showError("Give a reference image or a text."); return; }
  let settings;
  try { settings = sessionSettings(); } catch (error) { showError(error.message); return; }
  if (keep === null) turn.rejected = [...state.rejectNext];

  showError("");
  $("search").disabled = true;
  $("status").textContent = "Searching…";
  const started = performance.now();
  let body;
  try {
    const fresh = await ensureSession(settings);
    const form = new FormData();
    const reference = turn.reference;
    // "this one" only refers to results of this session; in a new session it is a plain reference id
    if (reference && reference.kind === "file") form.append("images", reference.file, reference.file.name);
    if (reference && (reference.kind === "doc" || (reference.kind === "liked" && fresh))) form.append("reference_id", reference.id);
    if (reference && reference.kind === "liked" && !fresh) form.append("liked", reference.id);
    if (!fresh) for (const id of turn.rejected) form.append("rejected", id);
    if (turn.text) form.append("text", turn.text);
    if (turn.negative) form.append("negative_text", turn.negative);
    if (keep !== null && !fresh) form.append("keep", String(keep));
    form.append("explain", "true");
    body = await post(`/sessions/${state.session.id}/turns`, form);
    if (fresh) state.turns = [turn];  // the new session starts with this turn
  } catch (error) {
    showError(error.message.startsWith("Failed to fetch") ? `The service did not answer: ${error.message}` : error.message);
    $("status").textContent = "";
    return;
  } finally {
    $("search").disabled = false;
  }
  state.rejectNext.clear();
  turn.results = body.results;
  turn.combined = body.query;
  const rewritten = body.query && body.query.rewritten_caption;
  $("status").textContent = `${body.results.length} results · turn ${body.number} · ${Math.round(performance.now() - started)} ms` +
    (rewritten ? ` · looking for “${rewritten}”` : "");
  $("collection").open = false;
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
    body.append(metadataChips(result.metadata || {}), feedbackButtons(card, result));
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

// "this one" / "not this one" under each result; a rejection applies from the next turn on.
function feedbackButtons(card, result) {
  const box = document.createElement("div");
  box.className = "feedback";
  const like = document.createElement("button");
  like.type = "button";
  like.className = "like";
  like.textContent = "this one";
  like.title = "Continue from this result";
  like.addEventListener("click", (event) => { event.stopPropagation(); refineFrom(result); });
  const reject = document.createElement("button");
  reject.type = "button";
  reject.className = "reject";
  reject.textContent = "not this one";
  reject.title = "Exclude it and search away from it in the next turns";
  reject.addEventListener("click", (event) => {
    event.stopPropagation();
    if (state.rejectNext.has(result.id)) state.rejectNext.delete(result.id); else state.rejectNext.add(result.id);
    card.classList.toggle("rejected", state.rejectNext.has(result.id));
  });
  box.append(like, reject);
  return box;
}

// Clicking a result ("this one"): it becomes the reference of a new turn; the user types the next modification.
function refineFrom(result) {
  if (current().results) state.turns.push(newTurn(null));  // else: the pending turn just changes its reference
  setReference({ kind: "liked", id: result.id, previewUrl: result.image_url, label: `result: ${result.caption || result.id}` });
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
    if (turn.combined) {
      const combined = document.createElement("div");
      combined.className = "combined muted";
      const excluded = (turn.combined.excluded || []).length;
      combined.textContent = `${turn.results.length} results` + (turn.combined.text ? ` for “${turn.combined.text}”` : "") +
        (excluded ? ` · ${excluded} excluded` : "");
      item.append(combined);
    }
    list.append(item);
  });
  if (!list.children.length) list.innerHTML = '<li class="muted">Each refinement appears here; edit a step and re-run from it.</li>';
  $("session-info").textContent = state.session ? `session ${state.session.id.slice(0, 8)} · ${list.querySelectorAll(".step").length} turns` : "";
}

function rerunFrom(index, text) {
  state.turns = state.turns.slice(0, index + 1);
  const turn = current();
  turn.results = null;
  $("text").value = text;
  $("negative").value = turn.negative;
  renderReference();
  runCurrentTurn(index);
}

// --- the collection: a paged, filterable grid of the index to pick a reference from ------------------
async function loadBrowse(page = state.browse.page) {
  const params = new URLSearchParams({ page: String(page), size: String(state.browse.size) });
  const words = $("browse-q").value.trim();
  if (words) params.set("q", words);
  try {  // the search's field=value filters narrow the grid too
    const filters = parseFilters($("filters").value);
    if (Object.keys(filters).length) params.set("filters", JSON.stringify(filters));
  } catch (_) { /* the search reports a malformed filter */ }
  let body;
  try {
    const response = await fetch(`/browse?${params}`, { headers: headers() });
    if (!response.ok) { $("browse-info").textContent = `· ${await errorText(response)}`; return; }
    body = await response.json();
  } catch (_) { $("browse-info").textContent = "· unavailable"; return; }
  state.browse.page = body.page;
  state.browse.total = body.total;
  const pages = Math.max(1, Math.ceil(body.total / body.size));
  $("browse-info").textContent = `· ${body.total} images · page ${body.page} of ${pages} · click one to start from it`;
  $("browse-prev").disabled = body.page <= 1;
  $("browse-next").disabled = body.page >= pages;
  const grid = $("browse-grid");
  grid.replaceChildren();
  for (const item of body.items) {
    const cell = document.createElement("div");
    cell.className = "item";
    cell.dataset.id = item.id;
    cell.title = item.caption || item.id;
    const img = document.createElement("img");
    img.alt = item.caption || item.id;
    img.loading = "lazy";
    setImage(img, item.image_url);
    const caption = document.createElement("div");
    caption.textContent = item.caption || item.id.slice(0, 12);
    cell.append(img, caption);
    cell.addEventListener("click", () => pickFromCollection(item));
    grid.append(cell);
  }
}

function pickFromCollection(item) {
  if (current().results) state.turns.push(newTurn(null));
  setReference({ kind: "doc", id: item.id, previewUrl: item.image_url, label: `collection: ${item.caption || item.id}` });
  $("text").focus();
  $("status").textContent = "Now type how the results should differ from this one.";
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
    if (state.session) fetch(`/sessions/${state.session.id}`, { method: "DELETE", headers: headers() }).catch(() => {});
    state.session = null;
    state.rejectNext.clear();
    $("collection").open = true;
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
    loadBrowse(1);
  });
  $("browse-form").addEventListener("submit", (event) => { event.preventDefault(); loadBrowse(1); });
  $("browse-q").addEventListener("change", () => loadBrowse(1));
  $("filters").addEventListener("change", () => loadBrowse(1));
  $("browse-prev").addEventListener("click", () => loadBrowse(state.browse.page - 1));
  $("browse-next").addEventListener("click", () => loadBrowse(state.browse.page + 1));
  loadHealth();
  loadBrowse(1);
}

wire();
