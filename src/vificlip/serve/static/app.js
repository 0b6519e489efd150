// vificlip serve: the page. Plain JS, no build step; every number shown comes from the JSON API.
"use strict";

const $ = (id) => document.getElementById(id);
let frameTimer = null;
let selected = new Set();

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.hidden = true; }, 8000);
}

async function api(path, options) {
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `${path}: HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `${path}: HTTP ${response.status}`);
  return data;
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- tabs ----
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === tab.dataset.panel);
  });
}

// ---- start-up: health, label sets, videos under --root ----
async function init() {
  try {
    const health = await api("/api/health");
    const parts = [health.checkpoint, health.device, `${health.frames} frames`];
    if (health.index_videos !== null) parts.push(`${health.index_videos} indexed videos`);
    $("status").textContent = parts.join(" · ");
    $("tab-search").disabled = health.index_videos === null;
    $("frames").placeholder = String(health.frames);
    $("frames").max = String(health.limits.max_frames);
    const labels = await api("/api/labels");
    for (const name of labels.sets) $("label-set").appendChild(el("option", { value: name }, name));
    if (labels.sets.includes(labels.default)) {
      $("label-set").value = labels.default;
      $("classes").disabled = true;
    } else if (labels.default_classes.length) {
      $("classes").value = labels.default_classes.join("\n");
    }
    if (health.root) {
      const { videos } = await api("/api/videos");
      for (const v of videos) $("root-video").appendChild(el("option", { value: v }, v));
      $("root-picker").hidden = videos.length === 0;
    }
  } catch (err) {
    $("status").textContent = "server unreachable";
    showError(err.message);
  }
}

// ---- recognise ----
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) { $("video-file").files = e.dataTransfer.files; updateFileLabel(); }
});
$("video-file").addEventListener("change", updateFileLabel);
$("root-video").addEventListener("change", () => {
  if ($("root-video").value) { $("video-file").value = ""; updateFileLabel(); }
});
function updateFileLabel() {
  const file = $("video-file").files[0];
  $("file-label").textContent = file ? file.name : "Drop a video here";
  $("file-hint").textContent = file ? `${(file.size / 1024).toFixed(0)} KiB · click to change` : "or click to choose a file";
  drop.classList.toggle("chosen", Boolean(file));
  if (file) $("root-video").value = "";
}
$("label-set").addEventListener("change", () => { $("classes").disabled = $("label-set").value !== ""; });

$("predict-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  const file = $("video-file").files[0];
  if (file) form.append("video", file, file.name);
  else if ($("root-video").value) form.append("path", $("root-video").value);
  if ($("label-set").value) form.append("labels", $("label-set").value);
  else form.append("classes", $("classes").value);
  form.append("top_k", $("top-k").value || "5");
  if ($("frames").value) form.append("frames", $("frames").value);
  form.append("attention", $("attention").checked ? "true" : "false");
  const button = $("submit-predict");
  button.disabled = true;
  button.textContent = "Recognising…";
  try {
    showPrediction(await api("/api/predict", { method: "POST", body: form }));
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
    button.textContent = "Recognise";
  }
});

function showPrediction(result) {
  $("predict-empty").hidden = true;
  $("predict-output").hidden = false;
  $("video-name").textContent = result.video;
  const list = $("predictions");
  list.replaceChildren();
  for (const { class: name, probability } of result.top_k) {
    const item = el("li");
    item.append(el("span", { class: "class-name" }, name), el("span", { class: "prob" }, `${(100 * probability).toFixed(1)}%`));
    const bar = el("div", { class: "bar" });
    const fill = el("span");
    fill.style.width = `${Math.max(0.5, 100 * probability)}%`;
    bar.appendChild(fill);
    item.appendChild(bar);
    list.appendChild(item);
  }
  const timings = $("timings");
  timings.replaceChildren();
  const t = result.timings_ms;
  const shown = [["decode", t.decode], ["model", t.model], ["attention", t.attention], ["total", t.total]];
  for (const [name, ms] of shown) {
    if (name === "attention" && !result.attention) continue;
    const d = el("div");
    d.append(el("dt", {}, name), el("dd", {}, `${ms.toFixed(1)} ms`));
    timings.appendChild(d);
  }
  const batch = el("div");
  batch.append(el("dt", {}, "batch"), el("dd", {}, String(result.batch_size)));
  timings.appendChild(batch);
  animateFrames(result.frames, result.attention);
}

function animateFrames(frames, overlays) {
  clearInterval(frameTimer);
  $("viewer").hidden = !frames;
  if (!frames) return;
  const strip = $("filmstrip");
  strip.replaceChildren();
  const thumbs = overlays.map((src, i) => {
    const img = el("img", { src, alt: `frame ${i}` });
    img.addEventListener("click", () => { index = i; draw(); });
    strip.appendChild(img);
    return img;
  });
  let index = 0;
  const draw = () => {
    $("frame-img").src = frames[index];
    $("overlay-img").src = overlays[index];
    $("frame-no").textContent = `${index + 1} / ${frames.length}`;
    thumbs.forEach((img, i) => img.classList.toggle("current", i === index));
  };
  draw();
  frameTimer = setInterval(() => { index = (index + 1) % frames.length; draw(); }, 300);
}

// ---- search ----
$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("query").value.trim();
  if (!text) { showError("text: type what to search for"); return; }
  await runSearch({ text, k: Number($("k").value || 8) });
});

$("more-like").addEventListener("click", async () => {
  if (selected.size) await runSearch({ like: [...selected], k: Number($("k").value || 8) });
});

async function runSearch(body) {
  try {
    const data = await api("/api/search", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    showResults(data);
  } catch (err) {
    showError(err.message);
  }
}

function showResults(data) {
  selected = new Set();
  $("more-like").disabled = true;
  $("more-like").textContent = "More like these";
  const grid = $("results");
  grid.replaceChildren();
  $("search-hint").textContent = data.results.length
    ? `${data.results.length} videos for “${data.query}”. Click results to choose them, then “More like these”.`
    : `No videos for “${data.query}”.`;
  for (const hit of data.results) {
    const card = el("div", { class: "result", "data-id": String(hit.id) });
    const path = el("div", { class: "path" });
    const cut = hit.path.lastIndexOf("/") + 1;  // let a long path wrap after its folder, not inside a name
    path.append(hit.path.slice(0, cut), el("wbr"), hit.path.slice(cut));
    const labelled = hit.label && !hit.path.startsWith(hit.label + "/");
    card.append(el("img", { src: hit.preview, alt: hit.path, loading: "lazy" }), path,
      el("div", { class: "score" }, `score ${hit.score.toFixed(3)}${labelled ? " · " + hit.label : ""}`));
    card.addEventListener("click", () => {
      card.classList.toggle("selected");
      if (selected.has(hit.id)) selected.delete(hit.id); else selected.add(hit.id);
      $("more-like").disabled = selected.size === 0;
      $("more-like").textContent = selected.size ? `More like these (${selected.size})` : "More like these";
    });
    grid.appendChild(card);
  }
}

init();
