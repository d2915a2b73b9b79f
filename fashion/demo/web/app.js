// The page: load the standalone model with onnxruntime-web (WASM, files served from this site, never a CDN),
// decode the chosen photo with the browser's own decoder, run it, show six labels, confidences and latency.
import { classify, readModelInfo, rgbaToRgb } from "./fashion-model.js";

const ort = globalThis.ort;
const statusBox = document.querySelector("#status");
const input = document.querySelector("#photo");
const tbody = document.querySelector("#results tbody");

function setStatus(text, isError = false) {
  statusBox.textContent = text;
  statusBox.classList.toggle("error", isError);
}

// Browser image decoder -> RGB uint8 of the photo at its own size (EXIF orientation applied, alpha on white).
async function decode(file) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, bitmap.width, bitmap.height);
  context.drawImage(bitmap, 0, 0);
  const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
  const result = { rgb: rgbaToRgb(data, bitmap.width, bitmap.height), width: bitmap.width, height: bitmap.height };
  bitmap.close();
  return result;
}

function show(result, info) {
  tbody.replaceChildren();
  for (const head of info.heads) {
    const { label, confidence, top } = result.heads[head];
    const row = document.createElement("tr");
    row.id = `head-${head}`;
    row.dataset.label = label;
    row.dataset.confidence = String(confidence);
    const others = top.slice(1).map((t) => `${t.label} ${(100 * t.confidence).toFixed(1)}%`).join(" · ");
    row.innerHTML = `<th></th><td><span class="label"></span> <span class="confidence"></span>
      <div class="bar"></div><div class="alt"></div></td>`;
    row.querySelector("th").textContent = head;
    row.querySelector(".label").textContent = label;
    row.querySelector(".confidence").textContent = `${(100 * confidence).toFixed(1)}%`;
    row.querySelector(".bar").style.width = `${Math.round(100 * confidence)}%`;
    row.querySelector(".alt").textContent = others;
    tbody.append(row);
  }
}

async function main() {
  ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;
  ort.env.wasm.numThreads = 1; // no cross-origin isolation needed; one photo at a time
  const response = await fetch("model.onnx");
  if (!response.ok) throw new Error(`model.onnx: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const info = readModelInfo(bytes);
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  document.querySelector("#model-info").textContent =
    `${info.name}: ${(bytes.length / 1e6).toFixed(1)} MB, heads ${info.heads.join(", ")}; ` +
    `onnxruntime-web ${ort.env.versions?.web ?? ""} (WASM)`;
  setStatus("Ready: choose a photo.");
  document.body.dataset.ready = "true";

  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    document.body.dataset.busy = "true";
    try {
      const preview = document.querySelector("#preview");
      const image = document.createElement("img");
      image.src = URL.createObjectURL(file);
      image.alt = file.name;
      preview.replaceChildren(image);
      const photo = await decode(file);
      const result = await classify(ort, session, info, photo.rgb, photo.width, photo.height);
      show(result, info);
      window.lastResult = { file: file.name, ...result };
      setStatus(`${file.name} (${photo.width}x${photo.height}): inference took ${result.latencyMs.toFixed(1)} ms ` +
                "in this browser (WASM).");
    } catch (error) {
      window.lastResult = { file: file.name, error: String(error) };
      setStatus(`Could not classify ${file.name}: ${error.message ?? error}`, true);
    } finally {
      document.body.dataset.busy = "false";
      document.body.dataset.done = String(Number(document.body.dataset.done ?? 0) + 1);
    }
  });
}

main().catch((error) => {
  setStatus(`Could not load the model: ${error.message ?? error}`, true);
  document.body.dataset.failed = "true";
});
