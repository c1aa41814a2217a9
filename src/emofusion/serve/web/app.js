// emofusion web page: log in / sign up, analyse a file or a webcam recording, API keys, usage.
// Plain ES module, no build step, no third-party code. Talks to the same-origin JSON API.

const POLL_MS = 500;
const SOURCES = [
  { key: "face", label: "Face", color: "#e4572e" },
  { key: "voice", label: "Voice", color: "#2e86de" },
  { key: "text", label: "Text", color: "#10ac84" },
  { key: "fused", label: "Fused", color: "#7b3fe4", width: 3 },
];
// the face strip (as plot.py's face_thumbnails): up to FACE_THUMBS windows with a face box
const FACE_THUMBS = 6;
const FACE_THUMB_SIDE = 240; // the longest side of a thumbnail canvas, in pixels
const FACE_BOX_COLOR = "#00e676";
const MEDIA_KEEP = 4; // the media of the last few analyses sent from this page, kept in memory
const SENTIMENT_COLORS = { negative: "#e4572e", neutral: "#8395a7", positive: "#10ac84" };

const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  csrf: null,
  view: null,
  analysisId: null, // the analysis shown in the result panel
  analysis: null, // its last fetched record
  pollTimer: null,
  pollToken: 0,
  source: "upload", // "upload" | "record"
  recording: null, // {stream, recorder, chunks, started, timer}
  recorded: null, // Blob of the last recording
  media: new Map(), // analysis id -> the Blob/File sent from this page in this session (for the face strip)
  faceToken: 0, // bumped to cancel a face strip being drawn
  directUploads: null, // false once the server said it stores uploads itself (no S3 direct uploads)
  chartLabel: null,
  listTimer: null,
  next: null, // the route asked for before logging in
};

// ------------------------------------------------------------------ DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function showError(el, message) {
  if (!el) return;
  el.textContent = message || "";
  el.hidden = !message;
}

let flashTimer = null;
function flash(message, kind = "error") {
  const el = $("flash");
  el.textContent = message;
  el.className = `flash flash-${kind}`;
  el.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => (el.hidden = true), 6000);
}

function fmtDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${(+s).toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

// how long a run took, from two timestamps: milliseconds under a second, then tenths, then minutes
function fmtDuration(s) {
  if (!Number.isFinite(s) || s < 0) return "";
  if (s < 0.001) return "under 1 ms";
  if (s < 0.9995) return `${Math.round(1000 * s)} ms`;
  if (s < 59.95) return `${s.toFixed(1)} s`;
  const whole = Math.round(s);
  const m = Math.floor(whole / 60);
  return `${m} min ${whole - 60 * m} s`;
}

const pct = (p) => `${(100 * p).toFixed(1)}%`;

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return null;
}

function csrfToken() {
  return state.csrf || cookie("emofusion_csrf");
}

function errorMessage(status, data) {
  const err = data && data.error;
  if (err && err.message) return err.message;
  if (data && typeof data.detail === "string") return data.detail;
  if (data && Array.isArray(data.detail)) return data.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  return `Request failed (HTTP ${status})`;
}

function parseJson(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

async function api(method, path, { json, form } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  if (method !== "GET" && method !== "HEAD") {
    const token = csrfToken();
    if (token) headers["X-CSRF-Token"] = token;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, "network", "Cannot reach the server. Check your connection.");
  }
  const data = parseJson(await res.text());
  if (!res.ok) {
    const err = new ApiError(res.status, data?.error?.code ?? null, errorMessage(res.status, data));
    if (res.status === 401 && state.user && !path.startsWith("/auth/")) sessionExpired();
    throw err;
  }
  return data;
}

// POST a form with upload progress (fetch has none); resolves with the finished request, whatever
// its status, and rejects with `unreachable` when nothing answers
function postForm(url, form, onProgress, { headers = {}, credentials = false, unreachable }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.withCredentials = credentials;
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "network", unreachable));
    xhr.onload = () => resolve(xhr);
    xhr.send(form);
  });
}

// a multipart upload to this service, with progress
async function upload(path, form, onProgress) {
  const headers = { Accept: "application/json" };
  const token = csrfToken();
  if (token) headers["X-CSRF-Token"] = token;
  const xhr = await postForm(path, form, onProgress,
    { headers, credentials: true, unreachable: "Upload failed: cannot reach the server." });
  const data = parseJson(xhr.responseText);
  if (xhr.status >= 200 && xhr.status < 300) return data;
  if (xhr.status === 401) sessionExpired();
  throw new ApiError(xhr.status, data?.error?.code ?? null, errorMessage(xhr.status, data));
}

// With S3 storage the media goes straight to the bucket: POST /v1/uploads signs a form for this
// file's size and type, the browser posts the file there, and the analysis is created from the
// upload's id. A server that stores uploads itself answers 409 direct_uploads_unavailable: then
// (and from then on) the file goes to /v1/analyses as before. Returns the upload id, or null.
async function directUpload(file, onProgress) {
  if (state.directUploads === false) return null;
  let signed;
  try {
    signed = await api("POST", "/v1/uploads", {
      json: { content_type: file.type || "application/octet-stream", size: file.size },
    });
  } catch (e) {
    if (e.code === "direct_uploads_unavailable") {
      state.directUploads = false;
      return null;
    }
    throw e;
  }
  state.directUploads = true;
  const form = new FormData();
  for (const [name, value] of Object.entries(signed.fields)) form.append(name, value);
  form.append("file", file);
  const xhr = await postForm(signed.url, form, onProgress, { unreachable: "Upload failed: cannot reach the storage." });
  if (xhr.status < 200 || xhr.status >= 300) {
    const said = /<Message>([^<]*)<\/Message>/.exec(xhr.responseText || "");
    throw new ApiError(xhr.status, "upload_refused", `The storage refused the upload${said ? `: ${said[1]}` : ""}.`);
  }
  return signed.upload_id;
}

// ------------------------------------------------------------------ routing

const VIEWS = ["login", "signup", "analyze", "keys", "usage"];

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  if (parts[0] === "analyses" && parts[1]) return { view: "analyze", id: decodeURIComponent(parts[1]) };
  if (VIEWS.includes(parts[0])) return { view: parts[0] };
  return { view: state.user ? "analyze" : "login" };
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const r = parseRoute();
  let view = r.view;
  if (!state.user && view !== "signup" && view !== "login") {
    state.next = location.hash; // back there after logging in
    history.replaceState(null, "", "#/login");
    view = "login";
  }
  if (state.user && (view === "login" || view === "signup")) {
    history.replaceState(null, "", "#/analyze");
    view = "analyze";
  }
  showView(view);
  if (view === "analyze") {
    refreshList();
    if (r.id) openAnalysis(r.id);
    else if (state.analysisId) openAnalysis(state.analysisId);
    else hideAnalysis();
  } else {
    stopPolling();
  }
  if (view !== "analyze" && state.recording) stopRecording(true);
  if (view === "keys") loadKeys();
  if (view === "usage") loadUsage();
}

function showView(view) {
  state.view = view;
  $("loading").hidden = true;
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.route === view);
  $("nav").hidden = !state.user;
  $("user-box").hidden = !state.user;
  $("user-email").textContent = state.user ? state.user.email : "";
  document.body.dataset.view = view;
  const focus = { login: "login-email", signup: "signup-email" }[view];
  if (focus) $(focus).focus();
}

// ------------------------------------------------------------------ auth

function setSession(data) {
  state.user = data.user;
  state.csrf = data.csrf_token || cookie("emofusion_csrf");
}

function clearSession() {
  state.user = null;
  state.csrf = null;
  state.analysisId = null;
  state.analysis = null;
  stopPolling();
  clearInterval(state.listTimer);
  $("analyses-list").replaceChildren();
  $("keys-list").replaceChildren();
  $("new-key").hidden = true;
  $("new-key-value").value = "";
  hideAnalysis();
}

function sessionExpired() {
  if (!state.user) return;
  const here = location.hash;
  clearSession();
  state.next = here;
  flash("Your session has ended. Please log in again.");
  go("#/login");
}

async function submitAuth(kind) {
  const email = $(`${kind}-email`).value.trim();
  const password = $(`${kind}-password`).value;
  const errEl = $(`${kind}-error`);
  showError(errEl, "");
  if (!email || !password) return showError(errEl, "Enter your email and password.");
  if (kind === "signup" && password.length < 8) return showError(errEl, "The password needs at least 8 characters.");
  const button = $(`${kind}-submit`);
  button.disabled = true;
  try {
    if (kind === "signup") {
      // sign-up answers the same whether or not the address had an account; logging in tells
      await api("POST", "/auth/signup", { json: { email, password } });
    }
    let data;
    try {
      data = await api("POST", "/auth/login", { json: { email, password } });
    } catch (e) {
      if (kind === "signup" && e.status === 401) {
        throw new Error("Could not log you in. If this address already has an account, log in with its password.");
      }
      throw e;
    }
    setSession(data);
    $(`${kind}-password`).value = "";
    const next = state.next;
    state.next = null;
    go(next && next !== "#/login" && next !== "#/signup" ? next : "#/analyze");
  } catch (e) {
    showError(errEl, e.message);
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await api("POST", "/auth/logout");
  } catch (e) {
    if (e.status !== 401) flash(e.message);
  }
  stopRecording(true);
  clearSession();
  state.next = null;
  $("login-password").value = "";
  go("#/login");
}

// ------------------------------------------------------------------ analyze: sources

function selectSource(source) {
  state.source = source;
  for (const tab of document.querySelectorAll(".tabs .tab")) {
    const on = tab.dataset.source === source;
    tab.classList.toggle("active", on);
    tab.setAttribute("aria-selected", on ? "true" : "false");
  }
  $("source-upload").hidden = source !== "upload";
  $("source-record").hidden = source !== "record";
  if (source !== "record" && state.recording) stopRecording(true);
}

function recorderMime() {
  const candidates = ["video/webm;codecs=vp8,opus", "video/webm;codecs=vp9,opus", "video/webm"];
  if (typeof MediaRecorder === "undefined") return null;
  for (const m of candidates) if (MediaRecorder.isTypeSupported(m)) return m;
  return "";
}

async function startRecording() {
  const status = $("record-status");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status.textContent = "This browser cannot record (no camera access; the page must be served over https or localhost).";
    return;
  }
  const mime = recorderMime();
  if (mime === null) {
    status.textContent = "This browser has no MediaRecorder.";
    return;
  }
  $("record-start").disabled = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (e) {
    $("record-start").disabled = false;
    status.textContent = `Cannot use the camera and microphone: ${e.message || e.name}`;
    return;
  }
  const preview = $("record-preview");
  preview.removeAttribute("src");
  preview.controls = false;
  preview.muted = true;
  preview.srcObject = stream;
  preview.play().catch(() => {});
  const recorder = new MediaRecorder(stream, mime ? { mimeType: mime } : undefined);
  const rec = { stream, recorder, chunks: [], started: performance.now(), timer: null, discard: false };
  recorder.ondataavailable = (e) => e.data && e.data.size && rec.chunks.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    clearInterval(rec.timer);
    $("record-indicator").hidden = true;
    $("record-start").disabled = false;
    $("record-stop").disabled = true;
    preview.srcObject = null;
    if (rec.discard) return;
    const blob = new Blob(rec.chunks, { type: (recorder.mimeType || "video/webm").split(";")[0] });
    state.recorded = blob;
    const secs = (performance.now() - rec.started) / 1000;
    preview.src = URL.createObjectURL(blob);
    preview.muted = false;
    preview.controls = true;
    $("record-start").textContent = "Record again";
    $("record-discard").hidden = false;
    status.textContent = `Recorded ${secs.toFixed(1)} s (${(blob.size / 1024).toFixed(0)} KB). Press Analyze to send it.`;
    status.dataset.ready = "true";
  };
  state.recording = rec;
  state.recorded = null;
  delete status.dataset.ready;
  recorder.start(250);
  rec.timer = setInterval(() => {
    $("record-time").textContent = `${((performance.now() - rec.started) / 1000).toFixed(1)} s`;
  }, 100);
  $("record-time").textContent = "0.0 s";
  $("record-indicator").hidden = false;
  $("record-stop").disabled = false;
  $("record-discard").hidden = true;
  status.textContent = "Recording… press Stop when done.";
}

function stopRecording(discard = false) {
  const rec = state.recording;
  state.recording = null;
  if (!rec) return;
  rec.discard = discard;
  if (rec.recorder.state !== "inactive") rec.recorder.stop();
  else rec.stream.getTracks().forEach((t) => t.stop());
}

function discardRecording(message = "Recording discarded.") {
  state.recorded = null;
  const preview = $("record-preview");
  if (preview.src && preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.removeAttribute("src");
  preview.controls = false;
  preview.load();
  $("record-discard").hidden = true;
  $("record-start").textContent = "Start recording";
  $("record-status").textContent = message;
  delete $("record-status").dataset.ready;
}

// After a submission the form starts empty: the text, transcript and files of one analysis are
// never sent again with the next upload or recording. What was changed while the upload ran
// stays, and so do the advanced window and hop.
function clearSubmitted(sent) {
  for (const id of ["media-file", "audio-file", "transcript-file"]) {
    if (sent[id] && $(id).files[0] === sent[id]) $(id).value = "";
  }
  if ($("text-input").value.trim() === sent.text) $("text-input").value = "";
  if (sent.recorded && state.recorded === sent.recorded) {
    discardRecording("Recording sent. Record again for another analysis.");
  }
}

// ------------------------------------------------------------------ analyze: submit

async function submitAnalysis() {
  const errEl = $("analyze-error");
  showError(errEl, "");
  const form = new FormData();
  const sent = {}; // what this submission takes from the form, cleared from it once accepted
  if (state.source === "record") {
    if (state.recording) return showError(errEl, "Stop the recording first.");
    if (!state.recorded) return showError(errEl, "Record a clip first.");
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    form.append("file", state.recorded, `recording-${stamp}.webm`);
    sent.recorded = state.recorded;
    sent.media = state.recorded;
  } else {
    const file = $("media-file").files[0];
    if (!file) return showError(errEl, "Choose a video or audio file.");
    form.append("file", file, file.name);
    sent["media-file"] = file;
    sent.media = file;
  }
  const audio = $("audio-file").files[0];
  if (audio) form.append("audio", audio, audio.name);
  const transcript = $("transcript-file").files[0];
  if (transcript) form.append("transcript", transcript, transcript.name);
  const text = $("text-input").value.trim();
  if (text) form.append("text", text);
  Object.assign(sent, { "audio-file": audio, "transcript-file": transcript, text });
  const options = {};
  const win = parseFloat($("opt-window").value);
  const hop = parseFloat($("opt-hop").value);
  if (Number.isFinite(win)) options.window = win;
  if (Number.isFinite(hop)) options.hop = hop;
  // checked (the default): the service's "auto" (speech is transcribed when no words are given);
  // unchecked: "off"
  if (!$("opt-transcribe").checked) options.transcribe = "off";
  // checked (the default): "auto" (calibrated when the recording has enough voiced windows); unchecked: "off"
  if (!$("opt-calibrate").checked) options.calibrate = "off";
  if (Object.keys(options).length) form.append("options", JSON.stringify(options));
  if ($("opt-consent").checked) form.append("training_consent", "true");

  const button = $("analyze-submit");
  button.disabled = true;
  stopPolling();
  showAnalysisShell({ id: null, status: "uploading", progress: 0, filename: form.get("file").name });
  try {
    const progress = (p) => setProgress(p, `Uploading… ${Math.round(100 * p)}%`);
    const media = form.get("file");
    const uploadId = await directUpload(media, progress);
    if (uploadId) {
      form.delete("file");
      form.append("upload_id", uploadId);
      form.append("filename", media.name);
    }
    const data = await upload("/v1/analyses", form, progress);
    clearSubmitted(sent);
    keepMedia(data.id, sent.media);
    state.analysisId = null; // force a fresh render
    go(`#/analyses/${encodeURIComponent(data.id)}`);
  } catch (e) {
    hideAnalysis();
    showError(errEl, e.message);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ analyze: one analysis

function stopPolling() {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
  state.pollToken++;
}

function hideAnalysis() {
  $("analysis").hidden = true;
  $("result").hidden = true;
}

function setProgress(p, text) {
  const bar = $("analysis-progress");
  bar.value = Math.round(100 * Math.max(0, Math.min(1, p || 0)));
  $("analysis-progress-text").textContent = text;
}

const STATUS_TEXT = {
  uploading: "Uploading",
  queued: "Queued",
  running: "Running",
  succeeded: "Done",
  failed: "Failed",
};

function showAnalysisShell(a) {
  const box = $("analysis");
  box.hidden = false;
  box.dataset.id = a.id || "";
  box.dataset.status = a.status;
  $("analysis-title").textContent = a.filename || "Analysis";
  const badge = $("analysis-status");
  badge.textContent = STATUS_TEXT[a.status] || a.status;
  badge.className = `badge badge-${a.status}`;
  badge.dataset.status = a.status;
  const meta = [];
  if (a.created_at) meta.push(`submitted ${fmtDate(a.created_at)}`);
  if (a.media_seconds) meta.push(`${fmtSeconds(a.media_seconds)} of media`);
  if (a.started_at && a.finished_at) {
    const took = fmtDuration((Date.parse(a.finished_at) - Date.parse(a.started_at)) / 1000);
    if (took) meta.push(`took ${took}`);
  }
  $("analysis-meta").textContent = meta.join(" · ");
  const busy = a.status === "queued" || a.status === "running" || a.status === "uploading";
  $("analysis-progress-box").hidden = !busy;
  if (a.status !== "uploading") {
    const label = a.status === "queued" ? "Waiting in the queue…" : `Analysing… ${Math.round(100 * (a.progress || 0))}%`;
    setProgress(a.progress, label);
  }
  if (a.status === "failed") {
    const msg = (a.error && a.error.message) || "The analysis failed.";
    showError($("analysis-error"), msg);
  } else {
    showError($("analysis-error"), "");
  }
  if (a.status !== "succeeded") $("result").hidden = true;
}

async function openAnalysis(id) {
  if (state.analysisId === id && state.pollTimer) return; // already polling it
  if (state.analysisId === id && state.analysis && ["succeeded", "failed"].includes(state.analysis.status)) {
    $("analysis").hidden = false;
    return;
  }
  stopPolling();
  state.analysisId = id;
  state.analysis = null;
  const token = state.pollToken;
  $("analysis").hidden = false;
  $("result").hidden = true;
  hideFaces(); // another analysis: a strip being drawn for the last one is dropped
  const tick = async () => {
    let a;
    try {
      a = await api("GET", `/v1/analyses/${encodeURIComponent(id)}`);
    } catch (e) {
      if (token !== state.pollToken) return;
      if (e.status === 0) {
        state.pollTimer = setTimeout(tick, 2000); // transient: keep trying
        return;
      }
      showAnalysisShell({ id, status: "failed", filename: "Analysis", error: { message: e.message } });
      state.pollTimer = null;
      return;
    }
    if (token !== state.pollToken) return;
    const before = state.analysis && state.analysis.status;
    state.analysis = a;
    showAnalysisShell(a);
    if (a.status === "succeeded") {
      state.pollTimer = null;
      renderResult(a);
    } else if (a.status === "failed") {
      state.pollTimer = null;
    } else {
      state.pollTimer = setTimeout(tick, POLL_MS);
    }
    if (before !== a.status) refreshList();
  };
  state.pollTimer = setTimeout(tick, 0);
}

// ------------------------------------------------------------------ result

function barRow(name, p, color, testid) {
  const v = Math.max(0, Math.min(1, +p || 0));
  return h(
    "div",
    { class: "bar-row", "data-testid": testid, "data-label": name, "data-value": v.toFixed(6) },
    h("span", { class: "bar-name", text: name }),
    h("div", { class: "bar" }, h("div", { class: "bar-fill", style: { width: `${100 * v}%`, background: color || "" } })),
    h("span", { class: "bar-value", text: pct(v) }),
  );
}

function renderResult(a) {
  const r = a.result;
  if (!r) {
    showError($("analysis-error"), "The analysis finished but returned no result.");
    return;
  }
  renderTraining(a);
  const s = r.summary || {};
  $("result").hidden = false;
  if (s.top) {
    $("summary-top").textContent = s.top;
    $("summary-score").textContent = pct(s.score);
  } else {
    $("summary-top").textContent = "nothing detected";
    $("summary-score").textContent = "no face, speech or text was found";
  }
  const labels = r.labels || Object.keys(s.probs || {});
  const bars = $("summary-bars");
  bars.replaceChildren();
  if (s.probs) {
    const top = s.top;
    for (const label of labels) {
      bars.append(barRow(label, s.probs[label], label === top ? "var(--accent)" : null, "summary-bar"));
    }
  }
  const sentBox = $("sentiment");
  const sentBars = $("sentiment-bars");
  sentBars.replaceChildren();
  if (s.sentiment) {
    sentBox.hidden = false;
    $("sentiment-source").textContent = s.sentiment_source ? `(from ${s.sentiment_source})` : "";
    for (const [k, v] of Object.entries(s.sentiment)) sentBars.append(barRow(k, v, SENTIMENT_COLORS[k], "sentiment-bar"));
  } else {
    sentBox.hidden = true;
  }
  const select = $("timeline-label");
  select.replaceChildren(...labels.map((l) => h("option", { value: l, text: l })));
  state.chartLabel = s.top || labels[0] || null;
  if (state.chartLabel) select.value = state.chartLabel;
  const windows = s.windows ? Object.entries(s.windows).map(([k, v]) => `${k} ${v}`).join(", ") : "";
  const meta = $("analysis-meta").textContent;
  const extra = [];
  if (r.media && r.media.duration !== undefined) extra.push(`duration ${fmtSeconds(r.media.duration)}`);
  if (r.model) extra.push(`model ${r.model.name} ${r.model.version}${r.model.trained ? "" : " (untrained)"}`);
  if (windows) extra.push(`windows: ${windows}`);
  $("analysis-meta").textContent = [meta, ...extra].filter(Boolean).join(" · ");
  renderWords(r);
  renderCalibration(r);
  renderPeople(r);
  drawTimeline();
  renderFaces(a);
  const png = `/v1/analyses/${encodeURIComponent(a.id)}/timeline.png`;
  const img = $("timeline-img");
  if (img.getAttribute("src") !== png) {
    delete img.dataset.loaded;
    img.src = png;
  }
  $("timeline-link").href = png;
  $("json-link").href = `/v1/analyses/${encodeURIComponent(a.id)}`;
}

// ------------------------------------------------------------------ words
// Where the words came from (media.transcript) and, per window with text, what was read there
// and the text reading's top emotion.

// The owner's label for the whole file, for an analysis submitted with training consent.
function renderTraining(a) {
  const box = $("training");
  box.hidden = !a.training_consent;
  if (!a.training_consent) return;
  const select = $("training-label");
  const current = (a.labels || []).find((l) => l.start === null || l.start === undefined);
  select.replaceChildren(h("option", { value: "" }, "choose…"), ...a.result.labels.map((l) => h("option", { value: l }, l)));
  select.value = current ? current.label : "";
  $("training-status").textContent = current ? `Saved: ${current.label}.` : "";
}

async function saveTrainingLabel() {
  const id = state.analysisId;
  const label = $("training-label").value;
  if (!id || !label) return;
  try {
    const data = await api("PUT", `/v1/analyses/${encodeURIComponent(id)}/labels`, { json: { labels: [{ label }] } });
    if (state.analysis && state.analysis.id === id) state.analysis.labels = data.labels;
    $("training-status").textContent = `Saved: ${label}.`;
  } catch (e) {
    $("training-status").textContent = e.message;
  }
}

async function withdrawTraining() {
  const id = state.analysisId;
  if (!id) return;
  try {
    await api("DELETE", `/v1/analyses/${encodeURIComponent(id)}/labels`);
    if (state.analysis && state.analysis.id === id) Object.assign(state.analysis, { training_consent: false, labels: null });
    $("training").hidden = true;
    flash("Consent withdrawn: the file and its labels were deleted.", "info");
  } catch (e) {
    $("training-status").textContent = e.message;
  }
}

function wordsSource(t) {
  if (!t) return "";
  if (t.source === "asr") return `(recognised by Whisper ${t.model})`;
  if (t.source === "given") return "(from the transcript or text given)";
  return t.reason ? `(none: ${t.reason})` : "(none)";
}

// Whether the voice was read relative to the recording's own speaker (media.voice_calibration).
function renderCalibration(r) {
  const c = r.media && r.media.voice_calibration;
  const line = $("voice-calibration");
  line.hidden = !c;
  if (!c) return;
  line.textContent = c.used
    ? `Voice calibrated to the speaker over ${c.voiced_windows} voiced windows: readings are relative to this voice's own range.`
    : `Voice not calibrated${c.reason ? ` (${c.reason})` : ""}.`;
}

// One row per person seen (result.people): the face's thumbnail, when they were seen and how much
// they spoke, and a strip of their windows coloured by the fused reading (outlined where they spoke).
// the same colours as the server's plot (emofusion.plot.COLORS)
const EMOTION_COLORS = {
  neutral: "#9e9e9e", happy: "#f4b400", sad: "#4285f4", angry: "#db4437",
  fearful: "#8e24aa", disgust: "#0f9d58", surprised: "#ff6d00",
};

function renderPeople(r) {
  const people = r.people || [];
  const box = $("people");
  const list = $("people-list");
  list.replaceChildren();
  box.hidden = people.length === 0;
  if (!people.length) return;
  const info = (r.media && r.media.people) || {};
  const who = info.speaker_attribution || {};
  const notes = [];
  if (info.detector) notes.push(`${info.detector}, up to ${info.max_faces} per frame`);
  notes.push(who.used ? "speakers told from mouth movement" : `no speakers told${who.reason ? ` (${who.reason})` : ""}`);
  if (info.left_out) notes.push(`${info.left_out} more not listed`);
  $("people-note").textContent = `(${notes.join("; ")})`;
  const duration = (r.media && r.media.duration) || 1;
  for (const p of people) {
    const summary = p.summary || {};
    const track = h("div", { class: "person-track", "aria-label": `timeline of ${p.id}` });
    const windows = p.windows || [];
    windows.forEach((w, k) => {
      const top = w.fused ? w.fused.top : null;
      // windows overlap (hop < window): each is drawn until the next one starts
      const end = k + 1 < windows.length ? Math.min(w.end, windows[k + 1].start) : w.end;
      track.append(h("span", {
        class: w.speaking ? "speaking" : "",
        title: `${fmtSeconds(w.start)}-${fmtSeconds(w.end)}: ${top || "-"}${w.speaking ? " (speaking)" : ""}`,
        style: { left: `${(100 * w.start) / duration}%`, width: `${(100 * (end - w.start)) / duration}%`,
                 background: (top && EMOTION_COLORS[top]) || "#999" },
      }));
    });
    list.append(h("li", { class: "person", "data-testid": "person" },
      p.thumbnail ? h("img", { src: p.thumbnail, alt: `face of ${p.id}` }) : h("span", { class: "muted", text: "no image" }),
      h("div", { class: "person-info" },
        h("strong", { text: p.id }),
        h("div", { class: "muted", text: `${fmtSeconds(p.first_seen)}-${fmtSeconds(p.last_seen)}, spoke in ${summary.speaking_windows || 0}/${summary.windows || 0} windows` }),
        h("div", { text: summary.top ? `${summary.top} ${pct(summary.score)}` : "-" })),
      track));
  }
}

function renderWords(r) {
  const t = r.media && r.media.transcript;
  const spoken = (r.segments || []).filter((s) => s.text && s.text.text);
  const box = $("words");
  box.hidden = !t && !spoken.length;
  $("words-source").textContent = wordsSource(t);
  $("words-list").replaceChildren(
    ...spoken.map((s) => {
      const probs = s.text.probs || {};
      let top = null;
      for (const [k, v] of Object.entries(probs)) if (top === null || v > probs[top]) top = k;
      return h("li", {},
        h("span", { class: "muted small", text: `${s.start.toFixed(1)}–${s.end.toFixed(1)} s ` }),
        h("span", { text: `“${s.text.text}”` }),
        top ? h("span", { class: "muted small", text: ` · text: ${top} ${pct(probs[top])}` }) : null);
    }),
  );
}

// ------------------------------------------------------------------ face strip
// The server deletes uploads once analysed, so the faces are drawn here from the file this page
// sent (kept in memory for this session): the frame at the middle of a few windows with a face,
// its box in green. Nothing is shown (and nothing logged) when the media is not here (opened
// after a reload, from another device), has no face, or this browser cannot decode it.

function keepMedia(id, blob) {
  if (!id || !blob) return;
  state.media.delete(id);
  state.media.set(id, blob);
  while (state.media.size > MEDIA_KEEP) state.media.delete(state.media.keys().next().value);
}

function faceWindows(result, count = FACE_THUMBS) {
  const withFace = (result.segments || []).filter(
    (s) => s.face && Array.isArray(s.face.box) && s.face.box.length === 4 && Number.isFinite(s.start),
  );
  if (!withFace.length || count <= 0) return [];
  const n = Math.min(count, withFace.length);
  const picks = new Set();
  for (let i = 0; i < n; i++) picks.add(n === 1 ? 0 : Math.round((i * (withFace.length - 1)) / (n - 1)));
  return [...picks].sort((x, y) => x - y).map((i) => {
    const s = withFace[i];
    const probs = s.face.probs || {};
    let top = null;
    for (const [k, v] of Object.entries(probs)) if (top === null || v > probs[top]) top = k;
    return { t: (s.start + (Number.isFinite(s.end) ? s.end : s.start)) / 2, box: s.face.box, top };
  });
}

// resolves true on `event`, false on an error or after `ms`
function mediaEvent(video, event, ms) {
  return new Promise((resolve) => {
    const finish = (ok) => {
      clearTimeout(timer);
      video.removeEventListener(event, onEvent);
      video.removeEventListener("error", onError);
      resolve(ok);
    };
    const onEvent = () => finish(true);
    const onError = () => finish(false);
    const timer = setTimeout(() => finish(false), ms);
    video.addEventListener(event, onEvent);
    video.addEventListener("error", onError);
  });
}

async function seekTo(video, t) {
  const seeked = mediaEvent(video, "seeked", 8000);
  video.currentTime = t;
  return seeked;
}

function hideFaces() {
  state.faceToken++;
  const strip = $("face-strip");
  strip.hidden = true;
  strip.replaceChildren();
  strip.dataset.state = "none";
}

// data-state: "drawing", then "drawn" (shown) or "none" (nothing to show)
async function renderFaces(a) {
  hideFaces();
  const token = state.faceToken;
  const strip = $("face-strip");
  strip.dataset.state = "drawing";
  const thumbs = await faceThumbs(a, token);
  if (token !== state.faceToken) return;
  if (thumbs.length) strip.replaceChildren(...thumbs);
  strip.hidden = !thumbs.length;
  strip.dataset.state = thumbs.length ? "drawn" : "none";
}

// the thumbnails (figures) of analysis `a`, or [] when there is nothing to show or `token` is stale
async function faceThumbs(a, token) {
  const r = a.result || {};
  const blob = state.media.get(a.id);
  const media = r.media || {};
  if (!blob || media.has_video === false || typeof URL.createObjectURL !== "function") return [];
  const windows = faceWindows(r);
  if (!windows.length) return [];
  const url = URL.createObjectURL(blob);
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.preload = "auto";
  const thumbs = [];
  try {
    const loaded = mediaEvent(video, "loadeddata", 15000);
    video.src = url;
    if (!(await loaded) || token !== state.faceToken) return [];
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    if (!vw || !vh) return []; // audio only, or not decodable here
    let duration = video.duration;
    if (!Number.isFinite(duration)) {
      // a MediaRecorder WebM has no duration until the end is read: seeking past it finds it
      if (!(await seekTo(video, 1e9)) || token !== state.faceToken) return [];
      duration = video.duration;
    }
    // the box is in displayed-frame pixels of media.width x media.height; the browser's frame is
    // displayed (upright) too, as videoWidth x videoHeight
    const scale = Math.min(1, FACE_THUMB_SIDE / Math.max(vw, vh));
    const cw = Math.max(1, Math.round(vw * scale));
    const ch = Math.max(1, Math.round(vh * scale));
    const sx = cw / (media.width || vw);
    const sy = ch / (media.height || vh);
    for (const w of windows) {
      let t = w.t;
      if (Number.isFinite(duration) && duration > 0) t = Math.max(0, Math.min(t, duration - 0.001));
      if (!(await seekTo(video, t)) || token !== state.faceToken) return [];
      const canvas = h("canvas", { class: "face-canvas", "data-testid": "face-canvas" });
      canvas.width = cw;
      canvas.height = ch;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(video, 0, 0, cw, ch);
      const [x, y, bw, bh] = w.box;
      ctx.strokeStyle = FACE_BOX_COLOR;
      ctx.lineWidth = 2;
      ctx.strokeRect(x * sx, y * sy, bw * sx, bh * sy);
      const caption = `${w.t.toFixed(1)} s${w.top ? `  ${w.top}` : ""}`;
      thumbs.push(
        h(
          "figure",
          { class: "face-thumb", "data-testid": "face-thumb", "data-time": w.t.toFixed(3), "data-label": w.top || "" },
          h("figcaption", { text: caption, title: caption }),
          canvas,
        ),
      );
    }
    return thumbs;
  } catch (e) {
    return []; // a picture is never worth an error on the page: no strip
  } finally {
    video.removeAttribute("src");
    video.load();
    URL.revokeObjectURL(url);
  }
}

// ------------------------------------------------------------------ timeline chart (canvas)

function drawTimeline() {
  const canvas = $("timeline-canvas");
  const a = state.analysis;
  if (!a || !a.result || $("result").hidden) return;
  const r = a.result;
  const label = state.chartLabel;
  const segs = r.segments || [];
  const dpr = window.devicePixelRatio || 1;
  const cssW = Math.max(300, canvas.clientWidth || canvas.parentElement.clientWidth || 600);
  const cssH = 260;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  canvas.style.height = `${cssH}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const styles = getComputedStyle(document.body);
  const fg = styles.getPropertyValue("--fg").trim() || "#222";
  const grid = styles.getPropertyValue("--grid").trim() || "#ddd";
  const pad = { l: 44, r: 14, t: 12, b: 34 };
  const W = cssW - pad.l - pad.r;
  const H = cssH - pad.t - pad.b;
  const tEnd = Math.max(
    (r.media && r.media.duration) || 0,
    segs.reduce((m, s) => Math.max(m, s.end), 0),
    0.001,
  );
  const x = (t) => pad.l + (W * t) / tEnd;
  const y = (p) => pad.t + H * (1 - p);

  // grid + axes
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = fg;
  ctx.strokeStyle = grid;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const p = i / 4;
    ctx.beginPath();
    ctx.moveTo(pad.l, y(p));
    ctx.lineTo(pad.l + W, y(p));
    ctx.stroke();
    ctx.fillText(p.toFixed(2), pad.l - 6, y(p));
  }
  const step = niceStep(tEnd / 8);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let t = 0; t <= tEnd + 1e-9; t += step) {
    ctx.beginPath();
    ctx.moveTo(x(t), pad.t);
    ctx.lineTo(x(t), pad.t + H);
    ctx.stroke();
    ctx.fillText(`${+t.toFixed(2)}`, x(t), pad.t + H + 5);
  }
  ctx.fillText("time (s)", pad.l + W / 2, pad.t + H + 19);

  const drawn = {};
  if (label && segs.length) {
    for (const src of SOURCES) {
      const pts = segs.map((s) => {
        const part = s[src.key];
        const p = part && part.probs ? part.probs[label] : undefined;
        return p === undefined || p === null ? null : { t: (s.start + s.end) / 2, s: s.start, e: s.end, p };
      });
      const n = pts.filter(Boolean).length;
      drawn[src.key] = n;
      if (!n) continue;
      ctx.strokeStyle = src.color;
      ctx.fillStyle = src.color;
      ctx.lineWidth = src.width || 2;
      ctx.lineJoin = "round";
      // a line through the window centres, broken where the modality is absent
      ctx.beginPath();
      let pen = false;
      for (const pt of pts) {
        if (!pt) {
          pen = false;
          continue;
        }
        if (pen) ctx.lineTo(x(pt.t), y(pt.p));
        else ctx.moveTo(x(pt.t), y(pt.p));
        pen = true;
      }
      ctx.stroke();
      // a lone window (clip shorter than two windows) is drawn across its extent
      for (let i = 0; i < pts.length; i++) {
        const pt = pts[i];
        if (!pt || pts[i - 1] || pts[i + 1]) continue;
        ctx.beginPath();
        ctx.moveTo(x(pt.s), y(pt.p));
        ctx.lineTo(x(pt.e), y(pt.p));
        ctx.stroke();
      }
      for (const pt of pts) {
        if (!pt) continue;
        ctx.beginPath();
        ctx.arc(x(pt.t), y(pt.p), src.key === "fused" ? 3 : 2.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  } else {
    ctx.fillStyle = fg;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText("no windows to show", pad.l + W / 2, pad.t + H / 2);
  }
  canvas.dataset.drawn = "true";
  canvas.dataset.label = label || "";
  canvas.dataset.points = JSON.stringify(drawn);
  renderLegend(drawn);
}

function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function renderLegend(drawn) {
  const legend = $("timeline-legend");
  legend.replaceChildren(
    ...SOURCES.map((src) =>
      h(
        "span",
        { class: `legend-item${drawn[src.key] ? "" : " absent"}`, "data-source": src.key, "data-testid": `legend-${src.key}` },
        h("span", { class: "swatch", style: { background: src.color } }),
        drawn[src.key] ? src.label : `${src.label} (absent)`,
      ),
    ),
  );
}

function chartTooltip(ev) {
  const tip = $("timeline-tip");
  const a = state.analysis;
  if (!a || !a.result) return;
  const canvas = $("timeline-canvas");
  const rect = canvas.getBoundingClientRect();
  const segs = a.result.segments || [];
  const tEnd = Math.max((a.result.media && a.result.media.duration) || 0, segs.reduce((m, s) => Math.max(m, s.end), 0), 0.001);
  const W = rect.width - 44 - 14;
  const t = ((ev.clientX - rect.left - 44) / W) * tEnd;
  if (!segs.length || t < 0 || t > tEnd) {
    tip.hidden = true;
    return;
  }
  let best = segs[0];
  for (const s of segs) if (Math.abs((s.start + s.end) / 2 - t) < Math.abs((best.start + best.end) / 2 - t)) best = s;
  const label = state.chartLabel;
  const lines = [`${best.start.toFixed(1)}–${best.end.toFixed(1)} s · ${label}`];
  for (const src of SOURCES) {
    const part = best[src.key];
    lines.push(`${src.label}: ${part && part.probs ? pct(part.probs[label]) : "—"}`);
  }
  if (best.text && best.text.text) lines.push(`“${best.text.text}”`);
  tip.replaceChildren(...lines.map((l) => h("div", { text: l })));
  tip.hidden = false;
  const left = Math.min(ev.clientX - rect.left + 12, rect.width - tip.offsetWidth - 4);
  tip.style.left = `${Math.max(0, left)}px`;
  tip.style.top = `${Math.max(0, ev.clientY - rect.top - tip.offsetHeight - 8)}px`;
}

// ------------------------------------------------------------------ recent analyses

let listBusy = false;
async function refreshList() {
  if (!state.user || listBusy) return;
  listBusy = true;
  try {
    const data = await api("GET", "/v1/analyses?limit=20&offset=0");
    renderList(data.items || [], data.total);
  } catch (e) {
    if (e.status !== 401) flash(e.message);
  } finally {
    listBusy = false;
  }
}

function renderList(items, total) {
  const ul = $("analyses-list");
  $("recent-empty").hidden = items.length > 0;
  ul.replaceChildren(
    ...items.map((a) => {
      const busy = a.status === "queued" || a.status === "running";
      const li = h(
        "li",
        {
          class: `analysis-item${a.id === state.analysisId ? " current" : ""}`,
          "data-testid": "analysis-item",
          "data-id": a.id,
          "data-status": a.status,
        },
        h(
          "a",
          { href: `#/analyses/${encodeURIComponent(a.id)}`, class: "analysis-link", "data-testid": "analysis-link" },
          h("span", { class: "analysis-name", title: a.filename || a.id, text: a.filename || a.id }),
          h("span", { class: "muted small", text: `${fmtDate(a.created_at)}${a.media_seconds ? ` · ${fmtSeconds(a.media_seconds)}` : ""}` }),
        ),
        h("span", {
          class: `badge badge-${a.status}`,
          "data-testid": "analysis-item-status",
          text: busy && a.status === "running" ? `${STATUS_TEXT.running} ${Math.round(100 * (a.progress || 0))}%` : STATUS_TEXT[a.status] || a.status,
        }),
        h("button", {
          type: "button",
          class: "btn btn-ghost small icon",
          title: "Delete this analysis",
          "aria-label": "Delete",
          "data-testid": "analysis-delete",
          onclick: (ev) => confirmClick(ev.currentTarget, "Delete?", () => deleteAnalysis(a.id)),
          text: "✕",
        }),
      );
      return li;
    }),
  );
  if (total !== undefined && total > items.length) ul.append(h("li", { class: "muted small", text: `and ${total - items.length} older` }));
  // keep the list fresh while something is in flight
  clearInterval(state.listTimer);
  if (items.some((a) => a.status === "queued" || a.status === "running")) {
    state.listTimer = setInterval(() => state.view === "analyze" && refreshList(), 2000);
  }
}

async function deleteAnalysis(id) {
  try {
    await api("DELETE", `/v1/analyses/${encodeURIComponent(id)}`);
    if (state.analysisId === id) {
      stopPolling();
      state.analysisId = null;
      state.analysis = null;
      hideAnalysis();
      if (location.hash.startsWith("#/analyses/")) history.replaceState(null, "", "#/analyze");
    }
    refreshList();
  } catch (e) {
    flash(e.message);
  }
}

// Two-step inline confirmation (no native dialogs): the first click arms the button.
function confirmClick(button, armedText, action) {
  if (button.dataset.armed === "true") {
    clearTimeout(+button.dataset.timer);
    button.disabled = true;
    action();
    return;
  }
  const original = button.textContent;
  button.dataset.armed = "true";
  button.textContent = armedText;
  button.classList.add("armed");
  button.dataset.timer = String(
    setTimeout(() => {
      button.dataset.armed = "false";
      button.textContent = original;
      button.classList.remove("armed");
    }, 4000),
  );
}

// ------------------------------------------------------------------ API keys

async function loadKeys() {
  showError($("key-error"), "");
  try {
    const data = await api("GET", "/v1/keys");
    renderKeys(data.items || []);
  } catch (e) {
    showError($("key-error"), e.message);
  }
}

function renderKeys(items) {
  $("keys-empty").hidden = items.length > 0;
  $("keys-table").hidden = items.length === 0;
  $("keys-list").replaceChildren(
    ...items.map((k) =>
      h(
        "tr",
        { "data-testid": "key-row", "data-id": k.id, "data-prefix": k.prefix, class: k.revoked_at ? "revoked" : "" },
        h("td", { "data-testid": "key-row-name", text: k.name }),
        h("td", {}, h("code", { "data-testid": "key-row-prefix", text: `${k.prefix}…` })),
        h("td", { text: fmtDate(k.created_at) }),
        h("td", { "data-testid": "key-row-last-used", text: k.last_used_at ? fmtDate(k.last_used_at) : "never" }),
        h(
          "td",
          {},
          h("span", {
            class: `badge ${k.revoked_at ? "badge-failed" : "badge-succeeded"}`,
            "data-testid": "key-row-status",
            text: k.revoked_at ? `revoked ${fmtDate(k.revoked_at)}` : "active",
          }),
        ),
        h(
          "td",
          { class: "right" },
          k.revoked_at
            ? null
            : h("button", {
                type: "button",
                class: "btn btn-ghost small danger",
                "data-testid": "key-revoke",
                text: "Revoke",
                onclick: (ev) => confirmClick(ev.currentTarget, "Confirm revoke", () => revokeKey(k.id)),
              }),
        ),
      ),
    ),
  );
}

async function createKey() {
  const name = $("key-name").value.trim();
  const errEl = $("key-error");
  showError(errEl, "");
  if (!name) return showError(errEl, "Give the key a name.");
  $("key-create").disabled = true;
  try {
    const k = await api("POST", "/v1/keys", { json: { name } });
    $("key-name").value = "";
    $("new-key-name").textContent = `“${k.name}”`;
    $("new-key-value").value = k.key;
    $("new-key-copied").hidden = true;
    $("new-key").hidden = false;
    $("new-key-value").select();
    await loadKeys();
  } catch (e) {
    showError(errEl, e.message);
  } finally {
    $("key-create").disabled = false;
  }
}

async function copyKey() {
  const input = $("new-key-value");
  let ok = false;
  try {
    await navigator.clipboard.writeText(input.value);
    ok = true;
  } catch {
    input.select();
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
  }
  const note = $("new-key-copied");
  note.textContent = ok ? "Copied to the clipboard." : "Select the key and copy it (Ctrl+C).";
  note.hidden = false;
}

async function revokeKey(id) {
  try {
    await api("DELETE", `/v1/keys/${encodeURIComponent(id)}`);
  } catch (e) {
    showError($("key-error"), e.message);
  }
  await loadKeys();
}

// ------------------------------------------------------------------ usage

function meter(name, value, limit, fmt, period) {
  const unlimited = limit === null || limit === undefined;
  $(`usage-${name}-value`).textContent = fmt(value);
  $(`usage-${name}-limit`).textContent = unlimited ? "unlimited" : fmt(limit);
  const bar = $(`usage-${name}-bar`);
  const frac = limit ? Math.min(1, value / limit) : unlimited ? 0 : 1;
  $(`usage-${name}-note`).textContent = unlimited
    ? `No limit ${period}.`
    : value >= limit
      ? `Limit reached ${period}.`
      : `${Math.round(100 * frac)}% used · ${fmt(Math.max(0, limit - value))} left ${period}.`;
  bar.style.width = `${100 * frac}%`;
  bar.classList.toggle("warn", frac >= 0.8 && frac < 1);
  bar.classList.toggle("full", frac >= 1);
  bar.dataset.fraction = frac.toFixed(4);
}

async function loadUsage() {
  showError($("usage-error"), "");
  try {
    const u = await api("GET", "/v1/usage");
    const minutes = (v) => (Math.round(+v * 100) / 100).toString();
    meter("requests", u.requests_today, u.requests_per_day, String, "today");
    meter("minutes", u.media_minutes_month, u.media_minutes_per_month, minutes, "this month");
    $("usage-day").textContent = u.day ? `(${u.day})` : "";
    $("usage-month").textContent = u.month ? `(${u.month})` : "";
    $("view-usage").dataset.loaded = "true";
  } catch (e) {
    showError($("usage-error"), e.message);
  }
}

// ------------------------------------------------------------------ start

function bind() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    submitAuth("login");
  });
  $("signup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    submitAuth("signup");
  });
  $("logout-button").addEventListener("click", logout);
  for (const tab of document.querySelectorAll(".tabs .tab")) tab.addEventListener("click", () => selectSource(tab.dataset.source));
  $("training-save").addEventListener("click", saveTrainingLabel);
  $("training-withdraw").addEventListener("click", withdrawTraining);
  $("record-start").addEventListener("click", startRecording);
  $("record-stop").addEventListener("click", () => stopRecording(false));
  $("record-discard").addEventListener("click", () => discardRecording());
  $("analyze-form").addEventListener("submit", (e) => {
    e.preventDefault();
    submitAnalysis();
  });
  $("recent-refresh").addEventListener("click", refreshList);
  $("timeline-label").addEventListener("change", (e) => {
    state.chartLabel = e.target.value;
    drawTimeline();
  });
  $("timeline-canvas").addEventListener("mousemove", chartTooltip);
  $("timeline-canvas").addEventListener("mouseleave", () => ($("timeline-tip").hidden = true));
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    createKey();
  });
  $("new-key-copy").addEventListener("click", copyKey);
  $("new-key-dismiss").addEventListener("click", () => {
    $("new-key").hidden = true;
    $("new-key-value").value = "";
  });
  $("usage-refresh").addEventListener("click", loadUsage);
  const img = $("timeline-img");
  img.addEventListener("load", () => (img.dataset.loaded = "true"));
  img.addEventListener("error", () => (img.dataset.loaded = "error"));
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(drawTimeline, 100);
  });
  window.addEventListener("hashchange", route);
}

async function boot() {
  bind();
  try {
    const data = await api("GET", "/auth/me");
    setSession(data);
  } catch {
    state.user = null;
  }
  route();
  document.body.dataset.ready = "true";
}

boot();
