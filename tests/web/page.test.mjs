// The web page in real headless Chromium against a live server on 127.0.0.1 running the
// tiny models: generate from the chat box with live progress, result, download and
// history; then upload an original, draw the edit region and edit inside it.
//
//   apt-get install -y chromium && (cd tests/web && npm install) && \
//   cargo build --release -p huatu-server && node tests/web/page.test.mjs
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const out = path.join(here, "out");
mkdirSync(out, { recursive: true });

function fail(message) {
  console.error("FAIL: " + message);
  process.exit(1);
}

// A plain RGB PNG (for the upload).
function png(width, height, rgb) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buffer) => {
    let c = 0xffffffff;
    for (const byte of buffer) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([length, body, sum]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const rows = [];
  for (let y = 0; y < height; y++) rows.push(Buffer.from([0, ...Array(width).fill(rgb).flat()]));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

const binary = process.env.HUATU_SERVER || path.join(root, "target/release/huatu-server");
const data = mkdtempSync(path.join(tmpdir(), "huatu-web-"));
const fixtures = path.join(root, "tests/fixtures");
const server = spawn(binary, [
  "--model", path.join(fixtures, "sdxl_tiny"), "--intent-model", path.join(root, "models/intent"),
  "--instruct-model", path.join(fixtures, "sdxl_tiny_instruct_pix2pix"), "--controlnet", path.join(fixtures, "controlnet_tiny"),
  "--data", data, "--listen", "127.0.0.1:0",
], {
  stdio: ["ignore", "pipe", "inherit"],
});
const base = await new Promise((resolve, reject) => {
  let text = "";
  server.stdout.on("data", (chunk) => {
    text += chunk;
    const match = text.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    if (match) resolve(match[1]);
  });
  server.on("exit", (code) => reject(new Error("server exited " + code)));
  setTimeout(() => reject(new Error("server did not start")), 30000);
});
console.log("server at " + base);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(base + "/");
  if ((await page.title()) !== "画图 huatu") fail("title is " + (await page.title()));
  await page.waitForFunction(() => document.getElementById("server-status").textContent.includes("已就绪"));

  // Generate from the chat box: the agent recognises the intent and plans the job.
  await page.click("details summary");
  await page.fill("#opt-size", "64x64");
  await page.fill("#opt-steps", "40");
  await page.fill("#opt-seed", "7");
  await page.fill("#instruction", "请帮我生成一张元宵祝福图");
  const progressValues = [];
  await page.exposeFunction("recordProgress", (value) => progressValues.push(value));
  await page.evaluate(() => {
    const bar = document.getElementById("progress");
    new MutationObserver(() => window.recordProgress(bar.value + "/" + bar.max)).observe(bar, { attributes: true });
  });
  await page.press("#instruction", "Enter");
  await page.waitForSelector("#result img", { timeout: 60000 });
  await page.waitForFunction(() => document.getElementById("progress-text").textContent === "完成");
  const messages = await page.locator("#messages li").allTextContents();
  if (!messages.some((m) => m.includes("请帮我生成一张元宵祝福图"))) fail("the instruction is not in the chat");
  if (!messages.some((m) => m.includes("完成了"))) fail("no completion message: " + messages.join(" | "));
  const plan = await page.locator("#plan").textContent();
  if (!plan.includes("识别意图：generate.") || !plan.includes("计划：")) fail("the plan box shows no intent and plan: " + plan);
  const steps = progressValues.filter((v) => /^\d+\/40$/.test(v));
  if (steps.length < 2) fail("the progress bar did not move step by step: " + progressValues.join(", "));
  const size = await page.locator("#result img").evaluate((img) => [img.naturalWidth, img.naturalHeight]);
  if (size[0] !== 64 || size[1] !== 64) fail("result is " + size);
  const download = await Promise.all([page.waitForEvent("download"), page.click("#result a.download")]).then(([d]) => d);
  const saved = path.join(out, download.suggestedFilename());
  await download.saveAs(saved);
  if (!download.suggestedFilename().endsWith(".png")) fail("download name " + download.suggestedFilename());
  await page.waitForFunction(() => document.querySelectorAll("#history li img").length >= 1);
  await page.screenshot({ path: path.join(out, "generate.png"), fullPage: true });
  console.log("generate: ok (" + steps.length + " progress updates, downloaded " + download.suggestedFilename() + ")");

  // Edit: upload an original, draw the region on it, send an instruction.
  const original = path.join(out, "original.png");
  // 100×70 is no multiple of 8: the page crops it to 96×64 and says so.
  writeFileSync(original, png(100, 70, [40, 90, 200]));
  await page.setInputFiles("#original-input", original);
  await page.waitForFunction(() => document.getElementById("region-canvas").width === 96);
  const fitted = await page.locator("#messages").textContent();
  if (!fitted.includes("已调整为 96×64")) fail("no note about the fitted original: " + fitted);
  const box = await page.locator("#region-canvas").boundingBox();
  await page.mouse.move(box.x + box.width * 0.25, box.y + box.height * 0.25);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.6, { steps: 5 });
  await page.mouse.up();
  const region = await page.locator("#region-text").textContent();
  if (!region.includes("中心")) fail("no region drawn: " + region);
  await page.fill("#opt-steps", "4");
  await page.fill("#instruction", "把中间换成一朵红花");
  await page.click("#send");
  await page.waitForFunction(() => [...document.querySelectorAll("#messages li")].filter((li) => li.textContent.includes("完成了")).length >= 2, null, { timeout: 60000 });
  const editPlan = await page.locator("#plan").textContent();
  if (!editPlan.includes("识别意图：edit.")) fail("the edit was not recognised: " + editPlan);
  if (editPlan.includes("--instruct-model")) fail("the loaded InstructPix2Pix model was not used: " + editPlan);
  if (!editPlan.includes("96×64")) fail("the plan does not run at the original's size: " + editPlan);
  await page.waitForFunction(() => document.querySelectorAll("#history li img").length >= 2);
  await page.screenshot({ path: path.join(out, "edit.png"), fullPage: true });
  console.log("edit: ok (region " + region + "; " + editPlan.split("\n")[0] + ")");
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log("PASS");
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
  server.kill("SIGTERM");
}
process.exit(failed ? 1 : 0);
