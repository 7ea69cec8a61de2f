// gendistill web export: the student in the browser, through onnxruntime-web (WebAssembly, one thread).
// Made by `gendistill export RUN --format web`. Import it from any web app:
//   import { load } from "./gendistill.js";
//   const model = await load();  // or load("https://host/path/to/export/")
//   const [first] = await model.predict(["some text"]);  // {label, probabilities: {name: p}}
// The tokenizer below gives exactly the ids of gendistill's Python Predictor (the `tokenizers` library) for the
// pipelines the export accepts: BertNormalizer, BertPreTokenizer, WordPiece or WordLevel.
import * as ort from "./onnxruntime-web.js";

const HERE = new URL("./", import.meta.url);
const RECURRENT_GROUP = 16; // as the Python Predictor: recurrent graphs pay per time step, so short groups
const BATCH = 64;

const ASCII_PUNCT = /[!-/:-@[-`{-~]/u;
const PUNCT = /\p{P}/u;
const CONTROL = /\p{C}/u;
const WHITESPACE = /\p{White_Space}/u;
const NONSPACING_MARKS = /\p{Mn}/gu;

function isChinese(cp) {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b920 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/** tokenizer.json's BertNormalizer + BertPreTokenizer + WordPiece/WordLevel, without special tokens. */
export class Tokenizer {
  constructor(spec) {
    const normalizer = spec.normalizer || {};
    const model = spec.model || {};
    if (normalizer.type !== "BertNormalizer" || (spec.pre_tokenizer || {}).type !== "BertPreTokenizer") {
      throw new Error("gendistill.js: tokenizer.json is not BertNormalizer + BertPreTokenizer");
    }
    if (model.type !== "WordPiece" && model.type !== "WordLevel") {
      throw new Error(`gendistill.js: tokenizer model ${model.type} is not WordPiece or WordLevel`);
    }
    this.cleanText = normalizer.clean_text !== false;
    this.chinese = normalizer.handle_chinese_chars !== false;
    this.lowercase = normalizer.lowercase !== false;
    this.stripAccents = normalizer.strip_accents ?? this.lowercase;
    this.model = model;
    this.vocab = new Map(Object.entries(model.vocab));
    this.unkId = this.vocab.get(model.unk_token);
    this.prefix = model.continuing_subword_prefix ?? "##";
    this.maxChars = model.max_input_chars_per_word ?? 100;
    // added tokens (e.g. "[MASK]") match in the raw text, leftmost and longest first, as in `tokenizers`
    this.added = (spec.added_tokens || [])
      .map((token) => [token.content, token.id])
      .sort((a, b) => b[0].length - a[0].length);
  }

  normalize(text) {
    let out = "";
    for (const c of text) {
      const cp = c.codePointAt(0);
      if (this.cleanText) {
        if (cp === 0 || cp === 0xfffd || (c !== "\t" && c !== "\n" && c !== "\r" && CONTROL.test(c))) continue;
        if (c === "\t" || c === "\n" || c === "\r" || WHITESPACE.test(c)) {
          out += " ";
          continue;
        }
      }
      out += this.chinese && isChinese(cp) ? ` ${c} ` : c;
    }
    if (this.stripAccents) out = out.normalize("NFD").replace(NONSPACING_MARKS, "");
    if (this.lowercase) out = Array.from(out, (c) => c.toLowerCase()).join(""); // per character, as Rust
    return out;
  }

  preTokenize(text) {
    const words = [];
    let word = "";
    for (const c of text) {
      if (c === "\t" || c === "\n" || c === "\r" || WHITESPACE.test(c)) {
        if (word) words.push(word);
        word = "";
      } else if (ASCII_PUNCT.test(c) || PUNCT.test(c)) {
        if (word) words.push(word);
        words.push(c);
        word = "";
      } else {
        word += c;
      }
    }
    if (word) words.push(word);
    return words;
  }

  wordIds(word, out) {
    if (this.model.type === "WordLevel") {
      out.push(this.vocab.get(word) ?? this.unkId);
      return;
    }
    const chars = Array.from(word);
    if (chars.length > this.maxChars) {
      out.push(this.unkId);
      return;
    }
    const pieces = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length;
      let found;
      while (start < end) {
        const piece = (start > 0 ? this.prefix : "") + chars.slice(start, end).join("");
        found = this.vocab.get(piece);
        if (found !== undefined) break;
        end -= 1;
      }
      if (found === undefined) {
        out.push(this.unkId);
        return;
      }
      pieces.push(found);
      start = end;
    }
    out.push(...pieces);
  }

  segmentIds(segment, out) {
    for (const word of this.preTokenize(this.normalize(segment))) this.wordIds(word, out);
  }

  /** The ids of one text, no special tokens (the Python `tokenizer.encode(text, add_special_tokens=False).ids`). */
  encode(text) {
    const out = [];
    const present = this.added.filter(([content]) => text.includes(content));
    let start = 0;
    let i = 0;
    while (present.length && i < text.length) {
      const match = present.find(([content]) => text.startsWith(content, i));
      if (match) {
        if (i > start) this.segmentIds(text.slice(start, i), out);
        out.push(match[1]);
        i += match[0].length;
        start = i;
      } else {
        i += 1;
      }
    }
    if (start < text.length) this.segmentIds(text.slice(start), out);
    return out;
  }
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`gendistill.js: ${url}: HTTP ${response.status}`);
  return response.json();
}

function baseOf(baseUrl) {
  const where = globalThis.location ? globalThis.location.href : HERE.href;
  const url = new URL(String(baseUrl), where);
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}

/**
 * Load the export at `baseUrl` (default: the folder of this module). Options: `threads` (onnxruntime-web's wasm
 * threads; default 1, the Python Predictor's per-session count; more need a cross-origin-isolated page).
 * Returns {labels, metadata, tokenIds(texts), logits(texts), predictProba(texts), predict(texts)}.
 */
export async function load(baseUrl = HERE, options = {}) {
  const base = baseOf(baseUrl);
  // the .wasm beside this module, not beside the page that imports it (the wasm glue is bundled in the runtime)
  ort.env.wasm.wasmPaths = { wasm: new URL("ort-wasm-simd-threaded.wasm", HERE).href };
  ort.env.wasm.numThreads = options.threads ?? 1;
  const [metadata, labels, spec] = await Promise.all([
    fetchJson(new URL("metadata.json", base)),
    fetchJson(new URL("labels.json", base)),
    fetchJson(new URL("tokenizer.json", base)),
  ]);
  const tokenizer = new Tokenizer(spec);
  const session = await ort.InferenceSession.create(new URL("model.onnx", base).href, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all", // folds the int8 export's weight restore into constants once
  });
  const maxLength = metadata.max_length;
  const minLength = metadata.min_length;
  const emptyId = metadata.empty_id;
  const multiLabel = Boolean(metadata.multi_label);
  const thresholds = metadata.thresholds || null;
  const temperature = (metadata.calibration && metadata.calibration.temperature) || 1.0;
  const step = metadata.recurrent ? RECURRENT_GROUP : BATCH;

  function tokenIds(texts) {
    return texts.map((text) => {
      const ids = tokenizer.encode(text).slice(0, maxLength);
      return ids.length ? ids : [emptyId];
    });
  }

  async function logits(texts) {
    const sequences = tokenIds(texts);
    const order = sequences.map((_, i) => i).sort((a, b) => sequences[a].length - sequences[b].length);
    const out = new Array(texts.length);
    for (let first = 0; first < order.length; first += step) {
      const chunk = order.slice(first, first + step);
      const width = Math.max(minLength, ...chunk.map((i) => sequences[i].length));
      const ids = new BigInt64Array(chunk.length * width); // right-padded with [PAD] = 0
      const lengths = new BigInt64Array(chunk.length);
      chunk.forEach((index, row) => {
        sequences[index].forEach((id, column) => {
          ids[row * width + column] = BigInt(id);
        });
        lengths[row] = BigInt(sequences[index].length);
      });
      const result = await session.run({
        ids: new ort.Tensor("int64", ids, [chunk.length, width]),
        lengths: new ort.Tensor("int64", lengths, [chunk.length]),
      });
      const data = result.logits.data;
      chunk.forEach((index, row) => {
        out[index] = Array.from(data.subarray(row * labels.length, (row + 1) * labels.length));
      });
    }
    return out;
  }

  function requireWords(texts) {
    if (!Array.isArray(texts)) throw new TypeError("gendistill.js: expected an array of texts");
    texts.forEach((text, index) => {
      if (typeof text !== "string" || !text.trim()) {
        throw new RangeError(`gendistill.js: text ${index} is empty or not a string; it has nothing to classify`);
      }
    });
    return texts;
  }

  /** Probabilities per text in label order: softmax(logits / temperature), or per-label sigmoids (multi-label). */
  async function predictProba(texts) {
    const rows = await logits(requireWords(texts));
    if (multiLabel) return rows.map((row) => row.map((x) => 1 / (1 + Math.exp(-x))));
    return rows.map((row) => {
      const scaled = row.map((x) => x / temperature);
      const peak = Math.max(...scaled);
      const exp = scaled.map((x) => Math.exp(x - peak));
      const sum = exp.reduce((a, b) => a + b, 0);
      return exp.map((x) => x / sum);
    });
  }

  /** [{label, probabilities: {name: p}}] per text; multi-label: [{labels: [names at or above their thresholds],
   * probabilities}]. */
  async function predict(texts) {
    const rows = await predictProba(texts);
    return rows.map((row) => {
      const probabilities = Object.fromEntries(labels.map((name, i) => [name, row[i]]));
      if (multiLabel) return { labels: labels.filter((_, i) => row[i] >= thresholds[i]), probabilities };
      return { label: labels[row.indexOf(Math.max(...row))], probabilities };
    });
  }

  return { labels, metadata, tokenizer, tokenIds, logits, predictProba, predict };
}
