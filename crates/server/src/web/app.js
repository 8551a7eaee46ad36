// huatu web page: chat box → agent (or plain generation while the agent is not built),
// uploads with a drawn edit region, live progress over SSE, results, history, download.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { original: null, condition: null, region: null, jobId: null };

// Result images by id → a promise of their object URL. Images are immutable (ids are
// content hashes), so each is downloaded once; URLs no longer shown are revoked.
const imageUrls = new Map();

const statusText = { queued: "排队中", running: "生成中", succeeded: "完成", failed: "失败", cancelled: "已取消" };

function apiKey() {
  return $("api-key").value.trim();
}

function headers(extra) {
  const result = Object.assign({}, extra || {});
  const key = apiKey();
  if (key) result["Authorization"] = "Bearer " + key;
  return result;
}

function say(text, kind) {
  const item = document.createElement("li");
  item.className = "message " + (kind || "system");
  item.textContent = text;
  $("messages").appendChild(item);
  $("messages").scrollTop = $("messages").scrollHeight;
  return item;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error.message + "（" + body.error.code + "，HTTP " + response.status + "）";
  } catch (_) { /* not JSON */ }
  return "HTTP " + response.status;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options, { headers: headers((options || {}).headers) }));
  return response;
}

// ---- server status ----
async function refreshStatus() {
  try {
    const response = await fetch("/healthz");
    const health = await response.json();
    const label = $("server-status");
    label.textContent = health.model_loaded
      ? "已就绪 · 排队 " + health.queue.queued + " · 运行 " + health.queue.running
      : "未加载模型";
    label.className = "status " + (health.model_loaded ? "ok" : "bad");
    state.auth = health.auth;
    state.limits = health.limits;
  } catch (_) {
    $("server-status").textContent = "无法连接服务器";
    $("server-status").className = "status bad";
  }
}

// ---- uploads and the edit region ----
// Frees the object URL of an upload that is replaced or dropped.
function releaseUpload(loaded) {
  if (loaded && loaded.url) URL.revokeObjectURL(loaded.url);
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const image = new Image();
    image.onload = () => resolve({ file, image, url });
    image.onerror = () => { URL.revokeObjectURL(url); reject(new Error("无法读取图片")); };
    image.src = url;
  });
}

// The picture the server works on: sides multiples of 8 (SDXL's VAE), at most twice the
// model's native area and within the server's largest side. Larger photos are scaled
// down, then a few pixels are cropped from the edges; the region is drawn on the result.
async function workingImage(loaded) {
  const image = loaded.image;
  const [width, height] = [image.naturalWidth, image.naturalHeight];
  const limits = state.limits || { max_dimension: 2048, native_size: [1024, 1024] };
  const area = 2 * limits.native_size[0] * limits.native_size[1];
  const scale = Math.min(1, Math.sqrt(area / (width * height)), limits.max_dimension / width, limits.max_dimension / height);
  const [scaledWidth, scaledHeight] = [width * scale, height * scale];
  const [fitWidth, fitHeight] = [Math.floor(scaledWidth / 8) * 8, Math.floor(scaledHeight / 8) * 8];
  if ((fitWidth === width && fitHeight === height) || fitWidth < 8 || fitHeight < 8) return loaded;
  const canvas = document.createElement("canvas");
  canvas.width = fitWidth;
  canvas.height = fitHeight;
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(image, (fitWidth - scaledWidth) / 2, (fitHeight - scaledHeight) / 2, scaledWidth, scaledHeight);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  const fitted = await loadImage(new File([blob], "original.png", { type: "image/png" }));
  releaseUpload(loaded);
  fitted.note = "原图 " + width + "×" + height + " 已调整为 " + fitWidth + "×" + fitHeight + "（边长需为 8 的倍数" + (scale < 1 ? "，并按模型尺寸缩小" : "") + "）。";
  return fitted;
}

function canvasScale() {
  const canvas = $("region-canvas");
  if (!state.original) return 1;
  return canvas.width / state.original.image.naturalWidth;
}

function drawCanvas(dragBox) {
  const canvas = $("region-canvas");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.original) return;
  context.drawImage(state.original.image, 0, 0, canvas.width, canvas.height);
  const box = dragBox || (state.region && {
    x: (state.region.x - state.region.width / 2) * canvasScale(),
    y: (state.region.y - state.region.height / 2) * canvasScale(),
    w: state.region.width * canvasScale(),
    h: state.region.height * canvasScale(),
  });
  if (box) {
    context.fillStyle = "rgba(192, 57, 43, 0.25)";
    context.strokeStyle = "#c0392b";
    context.lineWidth = 2;
    context.fillRect(box.x, box.y, box.w, box.h);
    context.strokeRect(box.x, box.y, box.w, box.h);
  }
}

function showRegion() {
  const region = state.region;
  $("region-text").textContent = region
    ? "中心 (" + Math.round(region.x) + ", " + Math.round(region.y) + ")，宽 " + Math.round(region.width) + "，高 " + Math.round(region.height)
    : "未选择";
}

$("original-input").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  state.region = null;
  releaseUpload(state.original);
  state.original = null;
  if (!file) { drawCanvas(); showRegion(); return; }
  try {
    state.original = await workingImage(await loadImage(file));
    if (state.original.note) say(state.original.note);
    const canvas = $("region-canvas");
    const image = state.original.image;
    const scale = Math.min(320 / image.naturalWidth, 320 / image.naturalHeight, 1) || 1;
    canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
    canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
    drawCanvas();
    showRegion();
  } catch (error) {
    say(error.message, "error");
  }
});

$("condition-input").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  const preview = $("condition-preview");
  releaseUpload(state.condition);
  state.condition = null;
  preview.removeAttribute("src");
  if (!file) { preview.hidden = true; return; }
  try {
    state.condition = await loadImage(file);
    preview.src = state.condition.url;
    preview.hidden = false;
  } catch (error) {
    say(error.message, "error");
  }
});

(function regionDrawing() {
  const canvas = $("region-canvas");
  let start = null;
  const point = (event) => {
    const rect = canvas.getBoundingClientRect();
    return {
      x: Math.min(Math.max((event.clientX - rect.left) * canvas.width / rect.width, 0), canvas.width),
      y: Math.min(Math.max((event.clientY - rect.top) * canvas.height / rect.height, 0), canvas.height),
    };
  };
  canvas.addEventListener("pointerdown", (event) => {
    if (!state.original) { say("请先上传原图，再在图上画编辑区域。", "error"); return; }
    start = point(event);
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!start) return;
    const now = point(event);
    drawCanvas({ x: Math.min(start.x, now.x), y: Math.min(start.y, now.y), w: Math.abs(now.x - start.x), h: Math.abs(now.y - start.y) });
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!start) return;
    const end = point(event);
    const scale = canvasScale();
    const width = Math.abs(end.x - start.x) / scale;
    const height = Math.abs(end.y - start.y) / scale;
    if (width >= 2 && height >= 2) {
      state.region = { x: (start.x + end.x) / 2 / scale, y: (start.y + end.y) / 2 / scale, width, height };
    }
    start = null;
    drawCanvas();
    showRegion();
  });
})();

$("clear-region").addEventListener("click", () => { state.region = null; drawCanvas(); showRegion(); });

// The edit mask: white inside the region, black outside, at the original's size.
function maskBlob() {
  const image = state.original.image;
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.fillStyle = "#000";
  context.fillRect(0, 0, canvas.width, canvas.height);
  if (state.region) {
    const r = state.region;
    context.fillStyle = "#fff";
    context.fillRect(r.x - r.width / 2, r.y - r.height / 2, r.width, r.height);
  }
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

// ---- options ----
function generationOptions(prompt) {
  const body = { prompt, async: true, response_format: "url" };
  const size = $("opt-size").value.trim();
  if (size) body.size = size;
  const number = (id) => { const v = $(id).value.trim(); return v === "" ? undefined : Number(v); };
  if (number("opt-steps") !== undefined) body.steps = number("opt-steps");
  if (number("opt-guidance") !== undefined) body.guidance = number("opt-guidance");
  if (number("opt-seed") !== undefined) body.seed = number("opt-seed");
  if (number("opt-n") !== undefined) body.n = number("opt-n");
  if ($("opt-scheduler").value) body.scheduler = $("opt-scheduler").value;
  if ($("opt-negative").value.trim()) body.negative_prompt = $("opt-negative").value.trim();
  return body;
}

// ---- the plan ----
function showPlan(answer) {
  const plan = $("plan");
  if (!answer) { plan.hidden = true; plan.textContent = ""; return; }
  plan.hidden = false;
  const parts = [];
  if (answer.intent) parts.push("识别意图：" + answer.intent + (answer.confidence !== undefined ? "（置信度 " + Number(answer.confidence).toFixed(2) + "）" : ""));
  if (answer.slots && Object.keys(answer.slots).length) parts.push("槽位：" + Object.entries(answer.slots).map(([k, v]) => k + "=" + v).join("，"));
  if (answer.plan) {
    parts.push("场景：" + answer.plan.scene + " · 流程：" + answer.plan.pipeline);
    parts.push("计划：\n" + answer.plan.chain.map((step, i) => (i + 1) + ". " + step).join("\n"));
  }
  if (answer.notes && answer.notes.length) parts.push("说明：" + answer.notes.join("；"));
  if (answer.note) parts.push(answer.note);
  plan.textContent = parts.join("\n");
}

// ---- progress over SSE (fetch, so that the API key can be sent) ----
function setProgress(step, total, text) {
  const bar = $("progress");
  bar.max = Math.max(total, 1);
  bar.value = Math.min(step, bar.max);
  $("progress-text").textContent = text;
}

async function follow(jobId) {
  state.jobId = jobId;
  $("cancel").hidden = false;
  setProgress(0, 1, "排队中");
  const response = await api("/v1/jobs/" + jobId + "/events", { headers: { Accept: "text/event-stream" } });
  if (!response.ok) throw new Error(await errorText(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let boundary;
    while ((boundary = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) continue;
      const event = JSON.parse(data);
      last = { name, event };
      if (name === "queued") setProgress(0, 1, "排队中，前面还有 " + event.position + " 个任务");
      else if (name === "running") setProgress(0, 1, "开始生成（第 " + event.attempt + " 次尝试）");
      else if (name === "step") setProgress(event.step, event.total, "第 " + event.step + " / " + event.total + " 步");
      else if (name === "done") setProgress(1, 1, "完成");
      else if (name === "failed") setProgress(0, 1, "失败");
      else if (name === "cancelled") setProgress(0, 1, "已取消");
    }
  }
  $("cancel").hidden = true;
  state.jobId = null;
  return last;
}

// ---- results and history ----
function imageUrl(id) {
  if (!imageUrls.has(id)) {
    const url = (async () => {
      const response = await api("/v1/images/" + id);
      if (!response.ok) throw new Error(await errorText(response));
      return URL.createObjectURL(await response.blob());
    })();
    // A failed download is tried again next time.
    url.catch(() => imageUrls.delete(id));
    imageUrls.set(id, url);
  }
  return imageUrls.get(id);
}

// Revokes the object URLs of images neither in the result area nor in the history.
function releaseUnshownImages(shown) {
  for (const [id, url] of imageUrls) {
    if (shown.has(id)) continue;
    imageUrls.delete(id);
    url.then((objectUrl) => URL.revokeObjectURL(objectUrl)).catch(() => {});
  }
}

const shownIds = { result: [], history: [] };

function keepShown() {
  releaseUnshownImages(new Set(shownIds.result.concat(shownIds.history)));
}

async function showResult(imageIds) {
  const result = $("result");
  result.textContent = "";
  shownIds.result = imageIds.slice();
  keepShown();
  for (const id of imageIds) {
    const url = await imageUrl(id);
    const image = document.createElement("img");
    image.src = url;
    image.alt = "生成结果";
    const link = document.createElement("a");
    link.href = url;
    link.download = "huatu-" + id.slice(0, 12) + ".png";
    link.textContent = "下载图片";
    link.className = "download";
    result.appendChild(image);
    result.appendChild(document.createElement("br"));
    result.appendChild(link);
  }
}

async function refreshHistory() {
  const response = await api("/v1/jobs?limit=24");
  if (!response.ok) return;
  const list = (await response.json()).data;
  const history = $("history");
  history.textContent = "";
  shownIds.history = list.filter((job) => job.status === "succeeded" && job.images.length).map((job) => job.images[0].id);
  keepShown();
  for (const job of list) {
    const item = document.createElement("li");
    const prompt = (job.request && (job.request.instruction || job.request.prompt)) || job.kind;
    item.title = prompt;
    if (job.status === "succeeded" && job.images.length) {
      const image = document.createElement("img");
      image.alt = prompt;
      imageUrl(job.images[0].id).then((url) => { image.src = url; }).catch(() => {});
      item.appendChild(image);
      item.addEventListener("click", () => showResult(job.images.map((i) => i.id)));
    }
    const caption = document.createElement("div");
    caption.textContent = (statusText[job.status] || job.status) + " · " + prompt.slice(0, 16);
    item.appendChild(caption);
    history.appendChild(item);
  }
}

async function runJob(jobId) {
  const last = await follow(jobId);
  if (!last) throw new Error("进度流意外中断");
  if (last.name === "done") {
    await showResult(last.event.images);
    say("完成了！共 " + last.event.images.length + " 张，可点击“下载图片”保存。");
  } else if (last.name === "failed") {
    say("生成失败：" + last.event.reason, "error");
  } else if (last.name === "cancelled") {
    say("任务已取消。");
  }
  refreshHistory();
  refreshStatus();
}

async function generate(prompt) {
  const response = await api("/v1/images/generations", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(generationOptions(prompt)),
  });
  if (!response.ok) throw new Error(await errorText(response));
  const job = await response.json();
  say("已提交任务 " + job.id + "，正在生成……");
  await runJob(job.id);
}

async function askAgent(instruction) {
  const form = new FormData();
  form.append("instruction", instruction);
  if (state.original) form.append("original", state.original.file);
  if (state.condition) form.append("condition", state.condition.file);
  if (state.region) form.append("region", JSON.stringify(state.region));
  const size = $("opt-size").value.trim();
  if (size) form.append("size", size);
  if ($("opt-steps").value.trim()) form.append("steps", $("opt-steps").value.trim());
  if ($("opt-seed").value.trim()) form.append("seed", $("opt-seed").value.trim());
  const response = await api("/v1/agent", { method: "POST", body: form });
  if (response.status === 501 || response.status === 503) return { unavailable: await errorText(response) };
  if (!response.ok) throw new Error(await errorText(response));
  return { answer: await response.json() };
}

async function edit(instruction) {
  const form = new FormData();
  form.append("image", state.original.file);
  if (state.region) form.append("mask", await maskBlob(), "mask.png");
  form.append("prompt", instruction);
  form.append("async", "true");
  const number = (id) => $(id).value.trim();
  if (number("opt-steps")) form.append("steps", number("opt-steps"));
  if (number("opt-guidance")) form.append("guidance", number("opt-guidance"));
  if (number("opt-seed")) form.append("seed", number("opt-seed"));
  const response = await api("/v1/images/edits", { method: "POST", body: form });
  if (!response.ok) throw new Error(await errorText(response));
  const job = await response.json();
  say("已提交编辑任务 " + job.id + (state.region ? "（只重绘选中区域）" : "（整张图）") + "……");
  await runJob(job.id);
}

async function send(instruction) {
  say(instruction, "user");
  const agent = await askAgent(instruction);
  if (agent.answer) {
    const answer = agent.answer;
    showPlan(answer);
    if (answer.reply) say(answer.reply);
    if (answer.job) {
      say("已按计划提交任务 " + answer.job.id + "（" + (answer.plan ? answer.plan.pipeline : answer.job.kind) + "），正在生成……");
      await runJob(answer.job.id);
    }
    return;
  }
  showPlan({ note: "智能体不可用：" + agent.unavailable });
  if (state.original) {
    say("智能体不可用，直接调用图片编辑接口……");
    await edit(instruction);
  } else {
    say("智能体不可用，直接把指令作为提示词生成图片。");
    await generate(instruction);
  }
}

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const instruction = $("instruction").value.trim();
  if (!instruction) return;
  $("instruction").value = "";
  $("send").disabled = true;
  try {
    await send(instruction);
  } catch (error) {
    say("出错了：" + error.message, "error");
    setProgress(0, 1, "空闲");
  } finally {
    $("send").disabled = false;
  }
});

$("instruction").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
});

$("cancel").addEventListener("click", async () => {
  if (!state.jobId) return;
  const response = await api("/v1/jobs/" + state.jobId, { method: "DELETE" });
  if (!response.ok) say("取消失败：" + (await errorText(response)), "error");
});

$("api-key").value = localStorage.getItem("huatu-api-key") || "";
$("api-key").addEventListener("change", () => {
  localStorage.setItem("huatu-api-key", apiKey());
  refreshHistory();
});

refreshStatus();
refreshHistory();
setInterval(refreshStatus, 10000);
