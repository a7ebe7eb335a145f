// The playground: a form built from the endpoint's input schema, submitted through the queue
// API, followed on the status stream, with the result, its errors and the same request as code.
"use strict";

const $ = (id) => document.getElementById(id);
const FACE_FIELDS = ["face_image_url", "face_images_data_url"];
const ADVANCED = ["base_1_5_model_repo", "base_sdxl_model_repo"];
const LONG_TEXT = ["prompt", "negative_prompt"];
const TOP = ["prompt"];
const KEY_STORE = "faceid-playground-key";

const page = {
  config: null, // /playground/config.json
  key: sessionStorage.getItem(KEY_STORE),
  face: null, // {field, value, name, mime} of the chosen face
  running: null, // {id, total, step, cancelled}
};

// ---- the API ---------------------------------------------------------------------------

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (page.key) h.Authorization = `Key ${page.key}`;
  return h;
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, ok: response.ok, data };
}

const queuePath = () => `/queue/${page.config.app}`;
const requestPath = (id) => `${queuePath()}/requests/${encodeURIComponent(id)}`;

// ---- the form --------------------------------------------------------------------------

function rangeText(p) {
  const parts = [];
  // A text's default is in its box already.
  if (p.default !== undefined && p.type !== "string") parts.push(`default ${p.default}`);
  if (p.minimum !== undefined && p.maximum !== undefined) parts.push(`${p.minimum}–${p.maximum}`);
  else if (p.minimum !== undefined) parts.push(`at least ${p.minimum}`);
  return parts.join(", ");
}

function element(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === true) e.setAttribute(k, "");
    else if (v !== false && v !== undefined && v !== null) e.setAttribute(k, String(v));
  }
  if (text !== undefined) e.textContent = text;
  return e;
}

function modelTypeSelect(name, p) {
  const select = element("select", { id: `f-${name}`, name });
  const unavailable = [];
  for (const option of p.enum) {
    const info = page.config.model_types.find((m) => m.name === option) || { available: true };
    const o = element("option", { value: option, disabled: !info.available }, option);
    if (!info.available) {
      o.textContent = `${option} (not on this server)`;
      unavailable.push(`${option}: ${info.reason}`);
    }
    select.append(o);
  }
  const first = [...select.options].find((o) => !o.disabled);
  const preferred = [...select.options].find((o) => o.value === p.default && !o.disabled);
  select.value = (preferred || first || select.options[0]).value;
  return { input: select, note: unavailable };
}

function fieldRow(name, p, required) {
  const wrap = element("div", { class: "field", "data-field": name });
  const label = element("label", { for: `f-${name}` }, name);
  if (required) label.append(" *");
  const range = rangeText(p);
  if (range) label.append(" ", element("span", { class: "range" }, `(${range})`));
  wrap.append(label);
  const describedBy = `help-${name} err-${name}`;
  let input;
  let notes = [];
  if (p.enum) {
    ({ input, note: notes } = modelTypeSelect(name, p));
  } else if (p.type === "integer" || p.type === "number") {
    input = element("input", {
      type: "number",
      id: `f-${name}`,
      name,
      min: p.minimum,
      max: p.maximum,
      step: p.type === "number" ? "any" : name === "width" || name === "height" ? 8 : 1,
      inputmode: p.type === "number" ? "decimal" : "numeric",
      value: p.default,
    });
  } else if (LONG_TEXT.includes(name)) {
    input = element("textarea", { id: `f-${name}`, name, rows: name === "prompt" ? 3 : 2 });
    input.value = p.default || "";
  } else {
    input = element("input", { type: "text", id: `f-${name}`, name, value: p.default, autocomplete: "off" });
  }
  input.setAttribute("aria-describedby", describedBy);
  if (required) input.setAttribute("aria-required", "true");
  if (name === "seed") {
    const row = element("div", { class: "row" });
    const random = element("input", { type: "checkbox", id: "seed-random", checked: true });
    const randomLabel = element("label", { for: "seed-random" }, "random");
    input.disabled = true;
    random.addEventListener("change", () => {
      input.disabled = random.checked;
      if (!random.checked) input.focus();
      renderSnippet();
    });
    row.append(input, random, randomLabel);
    wrap.append(row);
  } else {
    wrap.append(input);
  }
  const help = element("p", { class: "help", id: `help-${name}` }, p.description || "");
  for (const line of notes) help.append(element("br"), `Unavailable here — ${line}`);
  wrap.append(help, element("p", { class: "error", id: `err-${name}`, role: "alert" }));
  input.addEventListener("input", renderSnippet);
  input.addEventListener("change", renderSnippet);
  return wrap;
}

function buildForm() {
  const schema = page.config.input;
  const required = new Set(schema.required || []);
  const main = $("fields");
  const advanced = $("fields-advanced");
  for (const name of page.config.fields) {
    if (FACE_FIELDS.includes(name)) continue;
    const row = fieldRow(name, schema.properties[name], required.has(name));
    (TOP.includes(name) ? $("fields-top") : ADVANCED.includes(name) ? advanced : main).append(row);
  }
  const size = element("div", { class: "pair" });
  const width = main.querySelector('[data-field="width"]');
  const height = main.querySelector('[data-field="height"]');
  if (width && height) {
    width.before(size);
    size.append(width, height);
  }
}

/// The input as the API takes it: the prompt, the face (when one is chosen), and every field
/// that differs from its default (numbers as numbers; text that is not a number is sent as it
/// is, for the server to name).
function collect() {
  const schema = page.config.input.properties;
  const input = {};
  for (const name of page.config.fields) {
    if (FACE_FIELDS.includes(name)) continue;
    const field = $(`f-${name}`);
    if (!field || field.disabled) continue;
    const p = schema[name];
    let value = field.value;
    if (p.type === "integer" || p.type === "number") {
      if (value.trim() === "") continue;
      const n = Number(value);
      value = Number.isFinite(n) ? n : value;
    }
    if (name !== "prompt" && p.default !== undefined && value === p.default) continue;
    input[name] = value;
  }
  if (page.face) input[page.face.field] = page.face.value;
  return input;
}

// ---- the face ----------------------------------------------------------------------------

function faceSource() {
  return document.querySelector('input[name="face-source"]:checked').value;
}

function showSource() {
  const source = faceSource();
  for (const box of document.querySelectorAll("[data-source]")) box.hidden = box.dataset.source !== source;
  chooseFace();
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function chooseFace() {
  clearError("face");
  const source = faceSource();
  page.face = null;
  $("face-preview").hidden = true;
  if (source === "url") {
    const url = $("face-url").value.trim();
    if (url) page.face = { field: "face_image_url", value: url, name: url, mime: null };
  } else {
    const picker = source === "zip" ? $("face-zip") : $("face-file");
    const file = picker.files && picker.files[0];
    if (file) {
      // base64 grows the bytes by a third; the whole body must fit.
      const budget = Math.floor((page.config.max_body_bytes - 64 * 1024) * 0.75);
      if (file.size > budget) {
        showError("face", `${file.name} is ${file.size} bytes; this server takes files of up to about ${budget} bytes.`);
      } else {
        const value = await readAsDataUrl(file);
        const field = source === "zip" ? "face_images_data_url" : "face_image_url";
        page.face = { field, value, name: file.name, mime: file.type || (source === "zip" ? "application/zip" : "image/png") };
        if (source === "file") {
          $("face-preview").src = value;
          $("face-preview").hidden = false;
        }
      }
    }
  }
  renderSnippet();
}

function dropZone() {
  const zone = $("drop");
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) {
      $("face-file").files = e.dataTransfer.files;
      chooseFace();
    }
  });
}

// ---- errors --------------------------------------------------------------------------------

function errorTarget(field) {
  return FACE_FIELDS.includes(field) ? "face" : field;
}

function showError(field, message) {
  const slot = $(`err-${field}`);
  if (!slot) return false;
  slot.textContent = message;
  const control = field === "face" ? $("face") : $(`f-${field}`);
  if (control) control.setAttribute("aria-invalid", "true");
  if (ADVANCED.includes(field)) $("advanced").open = true;
  return true;
}

function clearError(field) {
  const slot = $(`err-${field}`);
  if (slot) slot.textContent = "";
  const control = field === "face" ? $("face") : $(`f-${field}`);
  if (control) control.removeAttribute("aria-invalid");
}

function clearErrors() {
  for (const slot of document.querySelectorAll("#form .error")) slot.textContent = "";
  for (const c of document.querySelectorAll("#form [aria-invalid]")) c.removeAttribute("aria-invalid");
  $("run-error").textContent = "";
}

/// Shows fal's 422 `detail` next to the fields it names; what names no field goes above the
/// result.
function showDetail(detail) {
  const items = Array.isArray(detail) ? detail : [{ loc: ["body"], msg: String(detail) }];
  let first = null;
  for (const item of items) {
    const loc = Array.isArray(item.loc) ? item.loc : [];
    const field = errorTarget(String(loc[loc.length - 1] || ""));
    let message = item.msg || "invalid";
    if (item.type === "no_face") {
      message += ". Try a lower face detector size (face_id_det_size, e.g. 320), or a photo where the face is larger.";
    }
    if (showError(field, message)) {
      first = first || field;
    } else {
      $("run-error").textContent += `${message} `;
    }
  }
  if (first) {
    const control = first === "face" ? document.querySelector('input[name="face-source"]:checked') : $(`f-${first}`);
    if (control) control.focus();
  }
}

// ---- running -------------------------------------------------------------------------------

function setBusy(busy) {
  $("submit").disabled = busy;
  $("cancel").disabled = !busy;
}

function status(text) {
  $("form-status").textContent = text;
}

function progress(step, total, text) {
  const bar = $("progress");
  if (total > 0) {
    bar.max = total;
    bar.value = step;
  } else {
    bar.removeAttribute("value");
  }
  $("progress-text").textContent = text;
}

function addLogs(logs) {
  const list = $("logs");
  for (const log of logs || []) {
    const item = element("li", { class: log.level || "INFO" }, log.message);
    list.append(item);
    const m = /^step (\d+)\/(\d+)$/.exec(log.message || "");
    if (m && page.running) {
      page.running.step = Number(m[1]);
      page.running.total = Number(m[2]);
    }
  }
  list.scrollTop = list.scrollHeight;
}

function onStatus(s) {
  const run = page.running;
  if (!run) return;
  if (s.status === "IN_QUEUE") {
    progress(0, 0, `In the queue, position ${s.queue_position ?? 0}`);
  } else if (s.status === "IN_PROGRESS" || s.status === "COMPLETED") {
    addLogs(s.logs);
    if (s.status === "IN_PROGRESS") {
      progress(run.step, run.total, run.total ? `Step ${run.step} of ${run.total}` : "Starting…");
    }
  }
  if (s.metrics && s.metrics.inference_time !== undefined) run.inference = s.metrics.inference_time;
}

/// Follows the status stream (server-sent events read from a fetch, so that the key can go in
/// a header) until COMPLETED; polls the status if the stream breaks.
async function follow(id) {
  try {
    const response = await fetch(`${requestPath(id)}/status/stream?logs=1`, { headers: headers(false) });
    if (response.ok && response.body) {
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = event
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).replace(/^ /, ""))
            .join("\n");
          if (!data) continue;
          const s = JSON.parse(data);
          onStatus(s);
          if (s.status === "COMPLETED") {
            reader.cancel().catch(() => {});
            return;
          }
        }
      }
    }
  } catch {
    // fall through to polling
  }
  let seen = 0;
  for (;;) {
    const r = await call("GET", `${requestPath(id)}/status?logs=1`);
    if (r.data && r.data.status) {
      const logs = r.data.logs || [];
      onStatus({ ...r.data, logs: logs.slice(seen) });
      seen = logs.length;
      if (r.data.status === "COMPLETED") return;
    } else if (r.status === 404 || r.status === 401) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function showResult(output, run) {
  $("idle").hidden = true;
  $("result").hidden = false;
  const grid = output.image;
  $("grid").src = grid.url;
  $("grid").width = grid.width;
  $("grid").height = grid.height;
  $("grid-download").href = grid.url;
  $("grid-download").download = grid.file_name;
  const list = $("samples");
  list.replaceChildren();
  (output.images || []).forEach((image, i) => {
    const item = element("li");
    const img = element("img", { src: image.url, alt: `Sample ${i + 1}`, width: image.width, height: image.height, loading: "lazy" });
    const link = element("a", { href: image.url, download: image.file_name }, `Download sample ${i + 1}`);
    item.append(img, link);
    list.append(item);
  });
  $("seed").textContent = String(output.seed);
  const seconds = (performance.now() - run.started) / 1000;
  let time = `${seconds.toFixed(1)} s`;
  if (run.inference !== undefined) time += ` (${Number(run.inference).toFixed(1)} s generating)`;
  $("elapsed").textContent = time;
  $("request-id").textContent = run.id;
}

async function submit(event) {
  event.preventDefault();
  if (page.running) return;
  clearErrors();
  const input = collect();
  if (!page.face) {
    showError("face", "Choose a face photo, give its URL, or a zip of photos.");
    $("face-file").focus();
    return;
  }
  setBusy(true);
  $("logs").replaceChildren();
  $("result").hidden = true;
  $("idle").hidden = true;
  $("progress-box").hidden = false;
  $("run").scrollTop = 0;
  progress(0, 0, "Sending…");
  status("Submitting…");
  // One column (phones): the progress is below the form.
  if (window.matchMedia("(max-width: 800px)").matches) $("run").scrollIntoView({ block: "start" });
  const started = performance.now();
  let r;
  try {
    r = await call("POST", queuePath(), input);
  } catch (e) {
    r = { status: 0, ok: false, data: { detail: `the server could not be reached: ${e}` } };
  }
  if (!r.ok) {
    setBusy(false);
    $("progress-box").hidden = true;
    if (r.status === 401) {
      status("This server needs a valid API key.");
      askKey(r.data && r.data.detail);
    } else if (r.status === 422) {
      status("The input has errors; see the fields marked.");
      showDetail(r.data && r.data.detail);
    } else {
      status(`Not accepted (${r.status}).`);
      $("run-error").textContent = (r.data && r.data.detail) || `HTTP ${r.status}`;
    }
    return;
  }
  const id = r.data.request_id;
  page.running = { id, started, step: 0, total: input.num_inference_steps || 0, inference: undefined };
  $("cancel").dataset.request = id;
  status(`Accepted as ${id}.`);
  progress(0, 0, `In the queue, position ${r.data.queue_position ?? 0}`);
  await follow(id);
  const result = await call("GET", requestPath(id));
  const run = page.running;
  page.running = null;
  setBusy(false);
  if (result.ok) {
    progress(run.total || 1, run.total || 1, "Done");
    $("progress-box").hidden = true;
    showResult(result.data, run);
    status(`Done: seed ${result.data.seed}.`);
  } else if (run.cancelled) {
    progress(run.step, run.total, run.total ? `Cancelled at step ${run.step} of ${run.total}` : "Cancelled");
    status("Cancelled.");
  } else if (result.status === 422) {
    $("progress-box").hidden = true;
    status("The input could not be used; see the fields marked.");
    showDetail(result.data && result.data.detail);
  } else {
    status(`Failed (${result.status}).`);
    $("run-error").textContent = (result.data && (typeof result.data.detail === "string" ? result.data.detail : JSON.stringify(result.data.detail))) || `HTTP ${result.status}`;
  }
}

async function cancel() {
  const run = page.running;
  if (!run) return;
  run.cancelled = true;
  $("cancel").disabled = true;
  status("Cancelling…");
  await call("PUT", `${requestPath(run.id)}/cancel`);
}

// ---- the key -------------------------------------------------------------------------------

function askKey(reason) {
  const dialog = $("key-dialog");
  $("key-error").textContent = reason || "";
  $("key-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("key-input").focus();
}

async function saveKey(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) {
    $("key-error").textContent = "Enter a key.";
    return;
  }
  const previous = page.key;
  page.key = key;
  const r = await call("GET", "/playground/key");
  if (!r.ok) {
    page.key = previous;
    $("key-error").textContent = (r.data && r.data.detail) || `The key was refused (${r.status}).`;
    return;
  }
  sessionStorage.setItem(KEY_STORE, key);
  $("key-dialog").close();
  status("Key accepted.");
  renderSnippet();
}

// ---- the same request as code --------------------------------------------------------------

const FACE_MARK = "\u0000face\u0000";

function snippetInput() {
  const input = collect();
  for (const f of FACE_FIELDS) if (input[f] !== undefined && page.face && !page.face.value.startsWith("http")) input[f] = FACE_MARK;
  if (!page.face) input.face_image_url = "https://example.com/face.jpg";
  return input;
}

function faceFile() {
  return page.face ? page.face.name.replace(/[^A-Za-z0-9._-]/g, "_") : "face.png";
}

function shellQuote(s) {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function curlSnippet(base, input) {
  const body = JSON.stringify(input, null, 2);
  const mime = page.face && page.face.mime ? page.face.mime : "image/png";
  const post = [`curl -sS -X POST ${shellQuote(`${base}/${page.config.app}`)} \\`, "  -H 'Content-Type: application/json' \\"];
  if (page.config.auth_required) post.push('  -H "Authorization: Key $FAL_KEY" \\');
  const mark = JSON.stringify(FACE_MARK);
  if (!body.includes(mark)) return [...post, `  -d ${shellQuote(body)}`].join("\n");
  // A file goes in through stdin: as an argument, its base64 would pass the shell's limit.
  const [before, after] = body.split(mark);
  return [
    `(printf '%s' ${shellQuote(`${before}"data:${mime};base64,`)}`,
    ` base64 -w0 ${shellQuote(faceFile())}`,
    ` printf '%s' ${shellQuote(`"${after}`)}) |`,
    ...post,
    "  --data-binary @-",
  ].join("\n");
}

function literal(value, indent) {
  return JSON.stringify(value, null, 4).replace(/\n/g, `\n${indent}`);
}

function pythonSnippet(base, input) {
  const host = base.replace(/^https?:\/\//, "");
  const args = Object.entries(input)
    .map(([k, v]) => `        ${JSON.stringify(k)}: ${v === FACE_MARK ? `fal_client.encode_file(${JSON.stringify(faceFile())})` : literal(v, "        ")},`)
    .join("\n");
  return [
    "import os",
    "",
    "# fal_client reads where to send requests when it is imported; it speaks https only, so",
    "# a self-signed server also needs SSL_CERT_FILE=<its certificate>.",
    `os.environ["FAL_RUN_HOST"] = ${JSON.stringify(host)}`,
    `os.environ["FAL_QUEUE_RUN_HOST"] = ${JSON.stringify(`${host}/queue`)}`,
    page.config.auth_required
      ? 'os.environ.setdefault("FAL_KEY", "<your key>")'
      : 'os.environ.setdefault("FAL_KEY", "unused")  # this server takes no key',
    "",
    "import fal_client",
    "",
    "result = fal_client.subscribe(",
    `    ${JSON.stringify(page.config.app)},`,
    "    arguments={",
    args,
    "    },",
    "    with_logs=True,",
    "    on_queue_update=print,",
    ")",
    'print(result["seed"], result["image"]["url"])',
  ].join("\n");
}

function jsSnippet(base, input) {
  const mime = page.face && page.face.mime ? page.face.mime : "image/png";
  const fields = Object.entries(input)
    .map(([k, v]) => `    ${k}: ${v === FACE_MARK ? `\`data:${mime};base64,\${readFileSync(${JSON.stringify(faceFile())}).toString("base64")}\`` : literal(v, "    ")},`)
    .join("\n");
  const usesFile = Object.values(input).includes(FACE_MARK);
  return [
    'import { createFalClient } from "@fal-ai/client";',
    ...(usesFile ? ['import { readFileSync } from "node:fs";'] : []),
    "",
    `const SERVER = ${JSON.stringify(base)};`,
    "const fal = createFalClient({",
    page.config.auth_required ? "  credentials: process.env.FAL_KEY," : '  credentials: "unused", // this server takes no key',
    "  // Sends fal's URLs to this server.",
    "  requestMiddleware: async (req) => ({",
    "    ...req,",
    "    url: req.url",
    "      .replace(/^https:\\/\\/queue\\.fal\\.run\\//, `${SERVER}/queue/`)",
    "      .replace(/^https:\\/\\/fal\\.run\\//, `${SERVER}/`),",
    "  }),",
    "});",
    "",
    `const result = await fal.subscribe(${JSON.stringify(page.config.app)}, {`,
    "  input: {",
    fields,
    "  },",
    "  logs: true,",
    "  onQueueUpdate: (update) => console.log(update.status),",
    "});",
    "console.log(result.data.seed, result.data.image.url);",
  ].join("\n");
}

function renderSnippet() {
  if (!page.config) return;
  const lang = document.querySelector('input[name="lang"]:checked').value;
  const base = page.config.public_url;
  const input = snippetInput();
  const make = { curl: curlSnippet, python: pythonSnippet, js: jsSnippet }[lang];
  $("snippet").textContent = make(base, input);
}

// ---- start -----------------------------------------------------------------------------

async function start() {
  let r;
  try {
    r = await call("GET", "/playground/config.json");
  } catch (e) {
    r = { ok: false, status: 0, data: null };
  }
  if (!r.ok) {
    status(`The server's configuration could not be read (${r.status}).`);
    return;
  }
  page.config = r.data;
  buildForm();
  for (const radio of document.querySelectorAll('input[name="face-source"]')) radio.addEventListener("change", showSource);
  for (const radio of document.querySelectorAll('input[name="lang"]')) radio.addEventListener("change", renderSnippet);
  $("face-file").addEventListener("change", chooseFace);
  $("face-zip").addEventListener("change", chooseFace);
  $("face-url").addEventListener("input", chooseFace);
  dropZone();
  $("form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  $("reuse-seed").addEventListener("click", () => {
    $("seed-random").checked = false;
    $("f-seed").disabled = false;
    $("f-seed").value = $("seed").textContent;
    $("f-seed").focus();
    renderSnippet();
  });
  $("key-form").addEventListener("submit", saveKey);
  $("key-change").addEventListener("click", () => askKey(""));
  $("copy").addEventListener("click", () => {
    navigator.clipboard.writeText($("snippet").textContent).then(
      () => status("Copied."),
      () => status("The clipboard is not available here; select the text instead."),
    );
  });
  renderSnippet();
  $("submit").disabled = false;
  status("Ready.");
  if (page.config.auth_required) {
    $("key-change").hidden = false;
    if (!page.key) askKey("");
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
