// The landsentry page: wiring between the forms, the map (viewer.js) and the HTTP API (/v1).
// Plain ES modules, no build step, nothing loaded from outside this server.

import { decodeIndexPng, encodeIndexPng } from "./png.js";
import { CLICK_TOOLS, Viewer } from "./viewer.js";

const POLL_MS = 1000;
const IDLE_S = 60; // a pause longer than this between annotation actions counts as this long
const TOOL_KEYS = { h: "pan", b: "paint", p: "polygon", r: "region", s: "segment" };
const UNKNOWN_KEY = "u";
const MAX_LISTED_JOBS = 30; // newest interpret jobs offered under "Earlier results"
const $ = (id) => document.getElementById(id);

const state = {
  classes: [],        // [{id, name, title, color}]
  ignoreIndex: 255,
  kindColors: {},     // kind -> [r, g, b]
  job: null,          // the interpret job on screen
  hidden: new Set(),  // kinds switched off
  trainWatch: null,   // id of the train job being watched
  timing: { seconds: 0, last: null }, // annotation time on the job on screen
  segmentsFor: null,  // "JOB:SIZE" of the segments loaded (or loading)
};

const viewer = new Viewer($("viewport"));
window.landsentry = { state, viewer }; // for the browser test and the devtools console

// ---- API ----------------------------------------------------------------------------------------

/** Turn an error body from the API into one readable line. */
function describeDetail(detail, status) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI's validation errors: [{loc: ["body", "image"], msg: "Field required"}, ...]
    return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${d.msg}`).join("; ");
  }
  return `the server answered ${status}`;
}

/** fetch() against the API with the optional token; throws an Error carrying the API's detail. */
async function api(path, { method = "GET", body, json } = {}) {
  const headers = {};
  const token = $("token").value.trim();
  if (token && method !== "GET") headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(path, { method, body, headers });
  } catch (err) {
    throw new Error(`cannot reach the server (${err.message})`);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const message = data && data.detail !== undefined ? describeDetail(data.detail, res.status) : `${res.status} ${res.statusText}`;
    throw new Error(`${message} (HTTP ${res.status})`);
  }
  return data;
}

function showError(err) {
  $("error-text").textContent = err instanceof Error ? err.message : String(err);
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

/** Run an async UI action: errors go to the banner, the button is disabled meanwhile. */
async function guarded(button, action) {
  if (button) button.disabled = true;
  clearError();
  try {
    return await action();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

const active = (job) => job.status === "queued" || job.status === "running";

/** Poll a job until it ends; done and cancelled jobs are returned, failed ones throw with their reason. */
async function waitForJob(job, onProgress) {
  while (active(job)) {
    onProgress(job);
    await new Promise((r) => setTimeout(r, POLL_MS));
    job = await api(`/v1/jobs/${encodeURIComponent(job.id)}`);
  }
  onProgress(job);
  if (job.status !== "done" && job.status !== "cancelled") {
    throw new Error(`job ${job.id} ${job.status}: ${job.error || job.message || "no reason given"}`);
  }
  return job;
}

/** The status line under a form: state, progress and message, and a Cancel button while the job runs. */
function showProgress(prefix, job) {
  $(`${prefix}-status`).hidden = false;
  $(`${prefix}-progress`).value = job.progress ?? 0;
  const pct = Math.round((job.progress ?? 0) * 100);
  const cancel = $(`${prefix}-cancel`);
  cancel.hidden = !(job.id && active(job));
  cancel.dataset.job = job.id || "";
  $(`${prefix}-message`).textContent = job.status === "cancelled" ? "cancelled"
    : `${job.status} ${pct}%${job.message ? ` · ${job.message}` : ""}`;
}

/** The status line shows what went wrong (the banner says it too), never a stale "uploading 0%". */
function showFailure(prefix, err) {
  $(`${prefix}-status`).hidden = false;
  $(`${prefix}-cancel`).hidden = true;
  $(`${prefix}-message`).textContent = `failed · ${err instanceof Error ? err.message : String(err)}`;
}

async function cancelJob(prefix) {
  const button = $(`${prefix}-cancel`);
  await guarded(button, async () => {
    const job = await api(`/v1/jobs/${encodeURIComponent(button.dataset.job)}/cancel`, { method: "POST" });
    showProgress(prefix, job);
  });
}

// ---- formatting -------------------------------------------------------------------------------

const fmtNumber = (v, digits = 1) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));
const rgb = (c) => (c ? `rgb(${c.join(",")})` : "#999");
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ---- interpret ----------------------------------------------------------------------------------

async function interpret(ev) {
  ev.preventDefault();
  await guarded($("run-btn"), async () => {
    const form = new FormData();
    const after = $("file-after").files[0];
    if (!after) throw new Error("choose an image first");
    form.append("image", after);
    if ($("file-before").files[0]) form.append("before", $("file-before").files[0]);
    if ($("file-permits").files[0]) form.append("permits", $("file-permits").files[0]);
    await submitInterpretation(form);
  });
}

/** POST a filled form to /v1/interpret, follow the job, show the result. */
async function submitInterpretation(form) {
  if ($("wgs84").checked) form.append("wgs84", "true");
  showProgress("job", { status: "uploading", progress: 0 });
  try {
    let job = await api("/v1/interpret", { method: "POST", body: form });
    job = await waitForJob(job, (j) => showProgress("job", j));
    if (job.status === "done") await showResult(job);
  } catch (err) {
    showFailure("job", err);
    throw err;
  } finally {
    refreshJobs().catch(showError);
  }
}

/** One button per sample the server offers (GET /v1/examples): fetch its files, interpret them. */
async function loadExamples() {
  const { examples } = await api("/v1/examples");
  const box = $("examples");
  for (const ex of examples) {
    const button = el("button", { type: "button", "data-example": ex.id }, ex.title);
    button.addEventListener("click", () => guarded(button, async () => {
      const form = new FormData();
      for (const [field, url] of Object.entries(ex.files)) {
        const res = await fetch(url);
        if (!res.ok) throw new Error(`cannot fetch the example file ${url} (HTTP ${res.status})`);
        form.append(field, await res.blob(), url.split("/").pop());
      }
      await submitInterpretation(form);
    }));
    box.append(button);
  }
  box.hidden = examples.length === 0;
}

async function openJob(id) {
  if (!id) return;
  await guarded(null, async () => {
    let job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
    job = await waitForJob(job, (j) => showProgress("job", j));
    if (job.status === "done") await showResult(job);
  });
}

async function showResult(job) {
  const result = job.result;
  if (!result || !result.grid) throw new Error(`job ${job.id} has no interpretation result`);
  state.job = job;
  const { grid, files, flags } = result;
  const select = $("image-select");
  select.replaceChildren(el("option", { value: "after" }, files.before ? "after" : "image"));
  if (files.before) select.append(el("option", { value: "before" }, "before"));
  // no after.png for very large inputs: the flags are still drawn, on an empty grid
  await viewer.setImage(files.after || null, grid.width, grid.height);
  viewer.setFlags(flags || { features: [] }, grid.transform, state.kindColors);
  renderKinds();
  renderFlagList();
  applyFilters();
  setDownload("download-geojson", files.flags);
  setDownload("download-wgs84", files.flags_wgs84);
  setDownload("download-classes", files.classes_tif);
  setDownload("download-overlay", files.overlay);
  setDownload("download-csv", files.summary_csv);
  $("result-panel").hidden = false;
  $("annotate-panel").hidden = !files.classes_png;
  $("result-note").hidden = Boolean(files.after && files.classes_png);
  $("result-note").textContent = `${grid.width}×${grid.height} pixels: too large to preview or annotate in the page; the downloads have everything.`;
  showClasses(false);
  state.timing = { seconds: 0, last: null };
  state.segmentsFor = null;
  setTool("pan");
  if (files.classes_png) await loadClasses();
}

function setDownload(id, href) {
  const a = $(id);
  a.hidden = !href;
  if (href) a.href = href;
}

function flagFeatures() {
  return state.job?.result?.flags?.features || [];
}

function renderKinds() {
  const counts = new Map();
  for (const f of flagFeatures()) counts.set(f.properties.kind, (counts.get(f.properties.kind) || 0) + 1);
  const order = Object.keys(state.kindColors);
  const kinds = [...counts.keys()].sort((a, b) => order.indexOf(a) - order.indexOf(b));
  $("kinds").replaceChildren(...kinds.map((kind) => el("label", { class: "inline kind" },
    el("input", { type: "checkbox", dataset: { kind }, ...(state.hidden.has(kind) ? {} : { checked: "" }),
      onchange: (ev) => { ev.target.checked ? state.hidden.delete(kind) : state.hidden.add(kind); applyFilters(); } }),
    el("span", { class: "swatch", style: `background:${rgb(state.kindColors[kind])}` }),
    ` ${kind.replace(/_/g, " ")} (${counts.get(kind)})`)));
  const suspected = flagFeatures().filter((f) => f.properties.suspected_illegal).length;
  $("flag-count").textContent = `${flagFeatures().length} · ${suspected} suspected illegal`;
}

function renderFlagList() {
  const rows = flagFeatures().map((f) => {
    const p = f.properties;
    return el("tr", { dataset: { id: String(p.id), kind: p.kind, suspected: String(!!p.suspected_illegal) },
      class: p.suspected_illegal ? "suspected" : "", tabindex: "0",
      onclick: () => selectFlag(p.id, true), onkeydown: (ev) => { if (ev.key === "Enter") selectFlag(p.id, true); } },
    el("td", {}, String(p.id)),
    el("td", {}, el("span", { class: "swatch", style: `background:${rgb(state.kindColors[p.kind])}` }), ` ${p.kind.replace(/_/g, " ")}`),
    el("td", { class: "num" }, fmtNumber(p.area_m2)),
    el("td", { class: "num" }, fmtNumber(p.confidence, 2)),
    el("td", { class: "reason" }, p.suspected_illegal ? p.reason || "yes" : p.before_class ? `no (before: ${p.before_class.replace(/_/g, " ")})` : "no"));
  });
  $("flag-list").replaceChildren(...rows);
  if (!rows.length) $("flag-list").append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "no flags in this image")));
}

function applyFilters() {
  const onlySuspected = $("suspected-only").checked;
  const show = ({ kind, suspected }) => !state.hidden.has(kind) && (!onlySuspected || suspected);
  viewer.filterFlags(show);
  for (const row of $("flag-list").querySelectorAll("tr[data-id]")) {
    row.hidden = !show({ kind: row.dataset.kind, suspected: row.dataset.suspected === "true" });
  }
}

function selectFlag(id, zoom) {
  viewer.select(id);
  for (const row of $("flag-list").querySelectorAll("tr[data-id]")) {
    const on = row.dataset.id === String(id);
    row.classList.toggle("selected", on);
    if (on && !zoom) row.scrollIntoView({ block: "nearest" });
  }
  if (zoom) viewer.zoomToFlag(id);
}

// ---- annotate -----------------------------------------------------------------------------------

async function loadClasses() {
  const url = state.job.result.files.classes_png;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not load the class map (HTTP ${res.status})`);
  const { width, height, ids } = await decodeIndexPng(await res.arrayBuffer());
  if (width !== viewer.width || height !== viewer.height) {
    throw new Error(`the class map is ${width}x${height} but the image is ${viewer.width}x${viewer.height}`);
  }
  viewer.setClasses(ids);
  updateAnnotateMessage();
}

function renderClassPicker() {
  const entries = [...state.classes.map((c) => ({ id: c.id, label: c.title || c.name, color: c.color, key: String(c.id) })),
    { id: state.ignoreIndex, label: "unknown (ignore)", color: null, key: UNKNOWN_KEY.toUpperCase() }];
  $("class-picker").replaceChildren(...entries.map((c) => el("button", {
    type: "button", class: "class-btn", dataset: { classId: String(c.id) }, title: `key ${c.key}`,
    "aria-pressed": String(c.id === viewer.brush.classId),
    onclick: () => pickClass(c.id),
  }, el("span", { class: c.color ? "swatch" : "swatch erase", style: c.color ? `background:${rgb(c.color)}` : "" }), ` ${c.label} `,
  el("kbd", {}, c.key))));
}

function pickClass(id) {
  viewer.brush.classId = id;
  for (const b of $("class-picker").querySelectorAll("button")) b.setAttribute("aria-pressed", String(Number(b.dataset.classId) === id));
  // choosing a class means the user wants to annotate: from pan, take the brush; other tools stay
  if (viewer.tool === "pan") setTool("paint");
}

function setTool(tool) {
  $(`tool-${tool}`).checked = true;
  viewer.setTool(tool);
  if (tool !== "pan") showClasses(true);
  if (tool === "segment") guarded(null, loadSegments);
}

/** The image segments of the job on screen, at the chosen size (computed by the server on first use). */
async function loadSegments() {
  const size = $("segment-size").value;
  const key = `${state.job.id}:${size}`;
  if (state.segmentsFor === key) return;
  state.segmentsFor = key;
  viewer.setSegments(null);
  updateAnnotateMessage("computing image segments…");
  const res = await fetch(`/v1/jobs/${encodeURIComponent(state.job.id)}/segments?size=${size}`);
  if (!res.ok) {
    state.segmentsFor = null;
    throw new Error(`could not load the image segments (HTTP ${res.status})`);
  }
  const { width, height, ids } = await decodeIndexPng(await res.arrayBuffer());
  if (state.segmentsFor !== key) return; // another size or job was chosen meanwhile
  if (width !== viewer.width || height !== viewer.height) throw new Error(`the segments are ${width}x${height} but the image is ${viewer.width}x${viewer.height}`);
  viewer.setSegments(ids);
  updateAnnotateMessage("segments ready: click one to set its class");
}

function showClasses(on) {
  $("show-classes").checked = on;
  $("classes-canvas").hidden = !on;
}

/** Active annotation time: the gaps between actions, each counted up to IDLE_S. */
function tick() {
  const now = performance.now() / 1000;
  const t = state.timing;
  if (t.last !== null) t.seconds += Math.min(now - t.last, IDLE_S);
  t.last = now;
}

function activeSeconds() {
  const t = state.timing;
  return t.seconds + (t.last === null ? 0 : Math.min(performance.now() / 1000 - t.last, IDLE_S));
}

function fmtDuration(seconds) {
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

function fmtArea(pixels) {
  const m2 = state.job?.result?.summary?.pixel_area_m2;
  if (!m2) return "";
  const area = pixels * m2;
  return area >= 10_000 ? ` (${(area / 10_000).toFixed(2)} ha)` : ` (${area.toFixed(1)} m²)`;
}

function updateStats() {
  const painted = viewer.paintedPixels();
  $("annotate-stats").textContent = `annotated ${painted} px${fmtArea(painted)} · ${fmtDuration(activeSeconds())} spent`;
}

function updateAnnotateMessage(extra = "") {
  $("annotate-message").textContent = `${viewer.changedPixels()} pixel(s) changed${extra ? ` · ${extra}` : ""}`;
  updateStats();
}

function setPartial() {
  viewer.setPartial($("unpainted-ignore").checked);
  updateAnnotateMessage();
}

async function saveSample() {
  await guarded($("save-sample"), async () => {
    if (!viewer.ids) throw new Error("no class layer loaded: interpret an image first");
    if (viewer.partial && !viewer.paintedPixels()) throw new Error("nothing annotated yet: with 'ignore (partial)', only painted pixels are saved");
    const mask = await encodeIndexPng(viewer.maskForSave(state.ignoreIndex), viewer.width, viewer.height);
    const form = new FormData();
    form.append("job_id", state.job.id);
    form.append("mask", mask, "mask.png");
    const sample = await api("/v1/samples", { method: "POST", body: form });
    updateAnnotateMessage(`saved as sample ${sample.id}`);
    await refreshSamples();
  });
}

const typing = (target) => target.matches?.("textarea, select, input:not([type=radio]):not([type=checkbox]):not([type=range]):not([type=button])");

/** Keyboard shortcuts while a class layer is loaded: classes, tools, polygon keys, brush size, undo. */
function onKey(ev) {
  if (typing(ev.target) || !viewer.ids || $("annotate-panel").hidden) return;
  const key = ev.key.toLowerCase();
  if ((ev.ctrlKey || ev.metaKey) && key === "z") {
    if (viewer.undo()) ev.preventDefault();
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const classIds = state.classes.map((c) => c.id);
  let handled = true;
  if (/^[0-9]$/.test(key) && classIds.includes(Number(key))) pickClass(Number(key));
  else if (key === UNKNOWN_KEY) pickClass(state.ignoreIndex);
  else if (TOOL_KEYS[key]) setTool(TOOL_KEYS[key]);
  else if (key === "enter" && viewer.tool === "polygon") viewer.closePolygon();
  else if (key === "escape") viewer.cancelPolygon();
  else if (key === "backspace" && viewer.vertices.length) viewer.popVertex();
  else if (key === "[" || key === "]") {
    const input = $("brush-size");
    input.value = String(Number(input.value) + (key === "]" ? 2 : -2));
    input.dispatchEvent(new Event("input"));
  } else handled = false;
  if (handled) ev.preventDefault();
}

// ---- samples ------------------------------------------------------------------------------------

async function refreshSamples() {
  const { samples } = await api("/v1/samples");
  $("sample-count").textContent = `(${samples.length})`;
  $("samples-list").replaceChildren(...samples.map((s) => {
    const pixels = Object.entries(s.class_pixels || {}).filter(([, n]) => n > 0)
      .map(([name, n]) => `${name.replace(/_/g, " ")} ${n}`).join(", ");
    return el("li", { dataset: { id: s.id } },
      el("div", {}, el("b", {}, s.id), ` ${s.width}×${s.height} · ${s.source || ""}`),
      el("div", { class: "muted small" }, `${fmtTime(s.created)}${pixels ? ` · ${pixels}` : ""}`),
      el("button", { type: "button", class: "delete-sample", onclick: (ev) => deleteSample(s.id, ev.target) }, "Delete"));
  }));
  if (!samples.length) $("samples-list").append(el("li", { class: "muted" }, "no samples yet: annotate a result and save it"));
}

async function deleteSample(id, button) {
  await guarded(button, async () => {
    await api(`/v1/samples/${encodeURIComponent(id)}`, { method: "DELETE" });
    await refreshSamples();
  });
}

// ---- training and model versions ------------------------------------------------------------

async function startTraining() {
  await guarded($("train-btn"), async () => {
    const body = {};
    for (const [field, key] of [["epochs", "epochs"], ["steps", "steps_per_epoch"]]) {
      const value = parseInt($(field).value, 10);
      if (Number.isFinite(value)) body[key] = value; // empty: the server's default
    }
    if ($("activate-if-not-worse").checked) body.activate = "if_not_worse"; // unchecked: the server's default rule
    const job = await api("/v1/train", { method: "POST", json: body });
    watchTraining(job);
  });
}

async function watchTraining(job) {
  if (state.trainWatch === job.id) return;
  state.trainWatch = job.id;
  $("train-btn").disabled = true;
  try {
    const done = await waitForJob(job, (j) => showProgress("train", j));
    const model = done.result?.model;
    if (done.status === "done") {
      const activation = model?.metrics?.activation;
      $("train-message").textContent = `done · new version ${model ? model.name || model.id : ""}: `
        + (activation?.rule === "if_not_worse" ? activation.reason : "compare and activate it below");
    }
  } catch (err) {
    showFailure("train", err);
    showError(err);
  } finally {
    state.trainWatch = null;
    $("train-btn").disabled = false;
    refreshModels().catch(showError);
  }
}

const delta = (a, b) => (a === null || a === undefined || b === null || b === undefined ? null : a - b);
const fmtDelta = (d) => (d === null ? "" : ` (${d >= 0 ? "+" : ""}${d.toFixed(3)})`);

/** Per-class IoU of a model beside its parent's (same held-out data) and the active one's: a row per class. */
function iouTable(metrics, activeMetrics, isActive) {
  const iou = metrics?.iou || {};
  const names = Object.keys(iou);
  if (!names.length) return null;
  const columns = [["this", iou]];
  if (metrics.parent?.iou) columns.push(["parent, same data", metrics.parent.iou]);
  if (!isActive && activeMetrics?.iou) columns.push(["active", activeMetrics.iou]);
  const head = el("tr", {}, el("th", {}, "IoU"), ...columns.map(([label]) => el("th", { class: "num" }, label)));
  const rows = names.map((n) => el("tr", {}, el("td", {}, n.replace(/_/g, " ")),
    ...columns.map(([, values]) => el("td", { class: "num" }, fmtNumber(values?.[n], 2)))));
  return el("table", { class: "iou" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

/** The new version beside its parent on the parent's own validation data: what fine-tuning cost elsewhere. */
function forgettingLine(check) {
  if (!check?.parent && !check?.new) return null;
  const parent = check.parent?.miou, mine = check.new?.miou;
  return el("div", { class: "small" },
    `parent's validation data: parent ${fmtNumber(parent, 3)}, this ${fmtNumber(mine, 3)}${fmtDelta(delta(mine, parent))}`);
}

async function refreshModels() {
  const { models, active } = await api("/v1/models");
  const activeModel = models.find((m) => m.id === active);
  $("models-list").replaceChildren(...models.map((m) => {
    const isActive = m.id === active;
    const miou = m.metrics?.miou;
    const parentMiou = m.metrics?.parent?.miou;
    const scores = [`mIoU ${fmtNumber(miou, 3)}`];
    if (parentMiou !== undefined) scores.push(`parent on the same data ${fmtNumber(parentMiou, 3)}${fmtDelta(delta(miou, parentMiou))}`);
    if (!isActive && activeModel) scores.push(`active ${fmtNumber(activeModel.metrics?.miou, 3)}${fmtDelta(delta(miou, activeModel.metrics?.miou))}`);
    return el("div", { class: `model${isActive ? " active" : ""}`, dataset: { id: m.id } },
      el("div", { class: "model-head" },
        el("b", {}, m.name || m.id),
        isActive ? el("span", { class: "badge" }, "active")
          : el("button", { type: "button", class: "activate", onclick: (ev) => activate(m.id, ev.target) }, "Activate")),
      el("div", { class: "muted small" }, `${m.id} · ${fmtTime(m.created)}${m.parent ? ` · parent ${m.parent}` : ""}`),
      el("div", { class: "small" }, scores.join(" · ")),
      m.metrics?.evaluated_on ? el("div", { class: "muted small" }, m.metrics.evaluated_on) : null,
      forgettingLine(m.metrics?.checks?.parent_validation),
      m.metrics?.activation ? el("div", { class: "muted small" }, m.metrics.activation.reason) : null,
      iouTable(m.metrics, activeModel?.metrics, isActive));
  }));
  if (activeModel) $("model-info").textContent = `model: ${activeModel.name || activeModel.id}`;
}

async function activate(id, button) {
  await guarded(button, async () => {
    await api(`/v1/models/${encodeURIComponent(id)}/activate`, { method: "POST" });
    await refreshModels();
  });
}

// ---- jobs list ----------------------------------------------------------------------------------

async function refreshJobs() {
  const { jobs } = await api("/v1/jobs");
  const select = $("jobs-select");
  const current = state.job?.id || "";
  select.replaceChildren(el("option", { value: "" }, "—"), ...jobs.filter((j) => j.type === "interpret").slice(0, MAX_LISTED_JOBS).map((j) =>
    el("option", { value: j.id, ...(j.id === current ? { selected: "" } : {}) },
      `${fmtTime(j.created)} · ${j.kind || "interpret"} · ${j.status}`)));
  const training = jobs.find((j) => j.type === "train" && active(j));
  if (training) watchTraining(training);
}

// ---- start --------------------------------------------------------------------------------------

function bind() {
  $("interpret-form").addEventListener("submit", interpret);
  $("error-close").addEventListener("click", clearError);
  $("jobs-select").addEventListener("change", (ev) => openJob(ev.target.value));
  $("image-select").addEventListener("change", (ev) => guarded(null, () => viewer.swapImage(state.job.result.files[ev.target.value])));
  $("fit-btn").addEventListener("click", () => viewer.fit());
  $("suspected-only").addEventListener("change", applyFilters);
  $("show-classes").addEventListener("change", (ev) => showClasses(ev.target.checked));
  $("classes-opacity").addEventListener("input", (ev) => { $("classes-canvas").style.opacity = ev.target.value; });
  $("classes-canvas").style.opacity = $("classes-opacity").value;
  for (const radio of document.querySelectorAll("input[name=tool]")) radio.addEventListener("change", (ev) => setTool(ev.target.value));
  for (const radio of document.querySelectorAll("input[name=unpainted]")) radio.addEventListener("change", setPartial);
  $("segment-size").addEventListener("change", () => { if (viewer.tool === "segment") guarded(null, loadSegments); else state.segmentsFor = null; });
  $("brush-size").addEventListener("input", (ev) => {
    viewer.brush.radius = Number(ev.target.value) / 2;
    $("brush-size-value").textContent = ev.target.value;
  });
  viewer.brush.radius = Number($("brush-size").value) / 2;
  $("reset-edits").addEventListener("click", () => guarded($("reset-edits"), loadClasses));
  $("save-sample").addEventListener("click", saveSample);
  $("train-btn").addEventListener("click", startTraining);
  $("job-cancel").addEventListener("click", () => cancelJob("job"));
  $("train-cancel").addEventListener("click", () => cancelJob("train"));
  viewer.onSelect = (id) => selectFlag(id, false);
  viewer.onEdit = () => { tick(); updateAnnotateMessage(); };
  viewer.onAction = tick;
  $("undo-stroke").addEventListener("click", () => viewer.undo());
  document.addEventListener("keydown", onKey);
  setInterval(() => { if (viewer.ids && !$("annotate-panel").hidden) updateStats(); }, 1000);
}

async function start() {
  bind();
  await guarded(null, async () => {
    const info = await api("/v1/classes");
    state.classes = info.classes;
    state.ignoreIndex = info.ignore_index ?? 255;
    state.kindColors = info.kind_colors || {};
    viewer.setPalette(state.classes);
    viewer.brush.classId = state.classes.find((c) => c.name === "building")?.id ?? state.classes[0]?.id ?? 0;
    renderClassPicker();
    const health = await api("/v1/health");
    const m = health.model || {};
    $("model-info").textContent = `model: ${m.name || m.id || "?"} · ${health.device || ""}`;
  });
  await Promise.all([refreshSamples(), refreshModels(), refreshJobs(), loadExamples()].map((p) => p.catch(showError)));
  document.body.dataset.ready = "true"; // for the browser test: the page has talked to the API
}

start();
