#!/usr/bin/env node
// Tag every JPEG/PNG photo of a folder with the standalone model, in Node, without Python:
//
//   node tag-folder.mjs MODEL.onnx FOLDER [--format csv|jsonl]
//
// Photos are decoded with jpeg-js / pngjs (pure JavaScript), passed to the model as they are (any size,
// uint8 RGB); padding and resizing happen inside the model, labels come from the model file itself.
// Output matches `fashion-predict --format csv|jsonl`: CSV columns source, error, then per head the label,
// its confidence and top-3 label/probability columns; JSONL one {source, heads} object per line. A photo
// that cannot be read gets a row with its error, as in Python.
// Exit codes: 0 all photos tagged, 1 some photos could not be read, 2 bad arguments.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import ort from "onnxruntime-node";
import { classify, readModelInfo, rgbaToRgb } from "./fashion-model.js";

const EXTENSIONS = new Set([".jpg", ".jpeg", ".png"]);

function usage(message) {
  process.stderr.write(`Error: ${message}\nusage: node tag-folder.mjs MODEL.onnx FOLDER [--format csv|jsonl]\n`);
  process.exit(2);
}

// -> {rgb, width, height}; EXIF orientation is not applied (the dataset's photos carry none).
export function decodePhoto(file) {
  const bytes = fs.readFileSync(file);
  if (path.extname(file).toLowerCase() === ".png") {
    const png = PNG.sync.read(bytes);
    return { rgb: rgbaToRgb(png.data, png.width, png.height), width: png.width, height: png.height };
  }
  const image = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 512 });
  return { rgb: rgbaToRgb(image.data, image.width, image.height), width: image.width, height: image.height };
}

const TOP_K = 3;

// As Python's spreadsheet_safe + csv: a cell a spreadsheet would run as a formula gets a leading "'".
function csvCell(value) {
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// fashion.runtime.cli.csv_columns
function csvColumns(heads) {
  const columns = ["source", "error"];
  for (const h of heads) {
    columns.push(h, `${h}_confidence`);
    for (let rank = 1; rank <= TOP_K; rank++) columns.push(`${h}_top${rank}`, `${h}_top${rank}_probability`);
  }
  return columns;
}

function csvRow(source, error, heads, result) {
  const cells = [source, error];
  for (const h of heads) {
    if (!result) {
      cells.push(...Array(2 + 2 * TOP_K).fill(""));
      continue;
    }
    const head = result.heads[h];
    cells.push(head.label, head.confidence.toFixed(6));
    for (let rank = 0; rank < TOP_K; rank++) {
      const top = head.top[rank];
      cells.push(top ? top.label : "", top ? top.confidence.toFixed(6) : "");
    }
  }
  return cells.map(csvCell).join(",") + "\r\n";
}

async function main(argv) {
  const args = argv.filter((a) => !a.startsWith("--"));
  const formatFlag = argv.find((a) => a.startsWith("--format"));
  const format = formatFlag ? (formatFlag.split("=")[1] ?? argv[argv.indexOf(formatFlag) + 1]) : "csv";
  const positional = args.filter((a) => a !== format);
  if (positional.length !== 2) usage("expected MODEL.onnx and FOLDER");
  if (!["csv", "jsonl"].includes(format)) usage(`--format must be csv or jsonl, got ${format}`);
  const [modelPath, folder] = positional;
  if (!fs.existsSync(modelPath)) usage(`${modelPath}: no such model file`);
  if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) usage(`${folder}: not a folder`);

  const modelBytes = new Uint8Array(fs.readFileSync(modelPath));
  const info = readModelInfo(modelBytes);
  const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ["cpu"] });
  const files = fs.readdirSync(folder).filter((f) => EXTENSIONS.has(path.extname(f).toLowerCase())).sort();
  if (format === "csv") process.stdout.write(csvColumns(info.heads).map(csvCell).join(",") + "\r\n");
  let failed = 0;
  for (const name of files) {
    const source = path.join(folder, name);
    let result;
    let error = "";
    try {
      const photo = decodePhoto(source);
      result = await classify(ort, session, info, photo.rgb, photo.width, photo.height);
    } catch (caught) {
      failed += 1;
      error = `${source}: ${caught.message}`;
      process.stderr.write(`failed: ${error}\n`);
    }
    if (format === "jsonl") {
      process.stdout.write(JSON.stringify(result ? { source, ...result } : { source, error }) + "\n");
    } else {
      process.stdout.write(csvRow(source, error, info.heads, result));
    }
  }
  process.stderr.write(`tagged ${files.length - failed} of ${files.length} photos in ${folder}\n`);
  return failed ? 1 : 0;
}

// Run when started as a script (directly or through the npm bin link), not when imported.
if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (error) => {
    process.stderr.write(`Error: ${error.message}\n`);
    process.exit(1);
  });
}
