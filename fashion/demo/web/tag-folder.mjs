#!/usr/bin/env node
// Tag every JPEG/PNG photo of a folder with the standalone model, in Node, without Python:
//
//   node tag-folder.mjs MODEL.onnx FOLDER [--format csv|jsonl]
//
// Photos are decoded with jpeg-js / pngjs (pure JavaScript), passed to the model as they are (any size,
// uint8 RGB); padding and resizing happen inside the model, labels come from the model file itself.
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

function csvCell(text) {
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
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
  if (format === "csv") {
    const header = ["file", ...info.heads.flatMap((h) => [h, `${h}_confidence`]), "latency_ms"];
    process.stdout.write(header.join(",") + "\n");
  }
  let failed = 0;
  for (const name of files) {
    let result;
    try {
      const photo = decodePhoto(path.join(folder, name));
      result = await classify(ort, session, info, photo.rgb, photo.width, photo.height);
    } catch (error) {
      failed += 1;
      process.stderr.write(`${name}: ${error.message}\n`);
      continue;
    }
    if (format === "jsonl") {
      process.stdout.write(JSON.stringify({ file: name, ...result }) + "\n");
    } else {
      const cells = info.heads.flatMap((h) => [csvCell(result.heads[h].label), result.heads[h].confidence.toFixed(4)]);
      process.stdout.write([csvCell(name), ...cells, result.latencyMs.toFixed(2)].join(",") + "\n");
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
