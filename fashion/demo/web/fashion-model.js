// Shared by the browser page (app.js) and the Node tagger (tag-folder.mjs): read the labels the standalone
// model carries, turn decoded RGBA pixels into its `pixels` input, and decode its outputs into labels.
// No dependencies: the model file alone says which heads exist and what their classes are called.

export const METADATA_KEY = "fashion_edge";

function readVarint(bytes, state) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (state.pos >= bytes.length) throw new Error("truncated ONNX file (varint)");
    const byte = bytes[state.pos++];
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return value;
    scale *= 128;
  }
}

function skipField(bytes, state, wireType) {
  if (wireType === 0) readVarint(bytes, state);
  else if (wireType === 1) state.pos += 8;
  else if (wireType === 2) {
    const length = readVarint(bytes, state); // read before adding: it moves state.pos
    state.pos += length;
  }
  else if (wireType === 5) state.pos += 4;
  else throw new Error(`unexpected protobuf wire type ${wireType}`);
}

// ModelProto.metadata_props (field 14) entries: StringStringEntryProto {key = 1, value = 2}.
export function readMetadataProps(bytes) {
  const decoder = new TextDecoder();
  const props = {};
  const state = { pos: 0 };
  while (state.pos < bytes.length) {
    const tag = readVarint(bytes, state);
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field !== 14 || wireType !== 2) {
      skipField(bytes, state, wireType);
      continue;
    }
    const length = readVarint(bytes, state);
    const end = state.pos + length;
    let key = "";
    let value = "";
    while (state.pos < end) {
      const innerTag = readVarint(bytes, state);
      if (innerTag % 8 !== 2) {
        skipField(bytes, state, innerTag % 8);
        continue;
      }
      const length = readVarint(bytes, state);
      const text = decoder.decode(bytes.subarray(state.pos, state.pos + length));
      state.pos += length;
      if (Math.floor(innerTag / 8) === 1) key = text;
      else value = text;
    }
    props[key] = value;
  }
  return props;
}

// The model's own description: {heads, labels, outputs, input, ...}.
export function readModelInfo(bytes) {
  const props = readMetadataProps(bytes);
  if (!(METADATA_KEY in props)) throw new Error(`not a fashion-edge standalone model (no '${METADATA_KEY}' metadata)`);
  return JSON.parse(props[METADATA_KEY]);
}

// RGBA (canvas ImageData, PNG decoders) -> RGB uint8, transparent pixels composited on white as the runtime does.
export function rgbaToRgb(rgba, width, height) {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < width * height * 4; i += 4, j += 3) {
    const alpha = rgba[i + 3];
    if (alpha === 255) {
      rgb[j] = rgba[i];
      rgb[j + 1] = rgba[i + 1];
      rgb[j + 2] = rgba[i + 2];
    } else {
      for (let c = 0; c < 3; c++) rgb[j + c] = Math.round((rgba[i + c] * alpha + 255 * (255 - alpha)) / 255);
    }
  }
  return rgb;
}

// outputs: {name: {data: Float32Array}} from an onnxruntime session run on one photo.
export function decodeOutputs(outputs, info, topK = 3) {
  const heads = {};
  for (const head of info.heads) {
    const probabilities = Array.from(outputs[info.outputs[head]].data);
    const order = probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, topK);
    heads[head] = {
      label: info.labels[head][order[0][1]],
      confidence: order[0][0],
      top: order.map(([p, i]) => ({ label: info.labels[head][i], confidence: p })),
    };
  }
  return heads;
}

// Run the standalone model on one decoded photo (RGB uint8, height x width x 3).
export async function classify(ort, session, info, rgb, width, height) {
  const input = new ort.Tensor("uint8", rgb, [1, height, width, 3]);
  const names = info.heads.map((head) => info.outputs[head]);
  const start = performance.now();
  const outputs = await session.run({ [info.input.name]: input }, names);
  const latencyMs = performance.now() - start;
  return { heads: decodeOutputs(outputs, info), latencyMs, width, height };
}
