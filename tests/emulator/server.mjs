// State and control plane of the emulated Cloudflare bindings (Workers AI,
// Vectorize V2, a Durable Object's container). `worker.mjs` exposes the
// bindings' JS API to the Actorline Worker and forwards every call here over
// loopback; the e2e harness (tests/prod) reads and steers this process
// directly through /control/*.
//
// Shapes, limits and error texts follow Cloudflare's documentation (cited in
// tests/emulator/README.md). Where the service's behaviour is undocumented
// the choice is written next to the code.
//
// Usage: node server.mjs --config '<json>'   (see `defaults` for the keys)
// Prints "emulator listening on http://127.0.0.1:<port>".

import http from "node:http";
import crypto from "node:crypto";
import { spawn } from "node:child_process";
import path from "node:path";

const defaults = {
	port: 0,
	// The native analyzer the emulated container forwards to.
	analyzerUrl: "",
	// Or its command (the binary and its arguments before `--data-dir`):
	// then every start() runs a new analyzer on a new, empty data dir, as a
	// Container starts from its image with a fresh disk (containers/faq.mdx:
	// "All disk is ephemeral"), and a stop ends it.
	analyzerCommand: null,
	analyzerDataRoot: "",
	// Milliseconds after start() before the container accepts connections.
	containerListenDelayMs: 3000,
	// Milliseconds before an upsert or delete becomes visible to queries.
	vectorizeVisibilityMs: 1000,
	dimensions: 768,
	metric: "cosine",
	// [{propertyName, type}] as the README's create-metadata-index lines give them.
	metadataIndexes: [],
	// Overrides, only for checking the harness itself against old code:
	// {deprecatedModels: [...]} and {limits: {topKWithData: 50}}.
	deprecatedModels: null,
	limits: {},
};

const argIdx = process.argv.indexOf("--config");
const config = { ...defaults, ...(argIdx > 0 ? JSON.parse(process.argv[argIdx + 1]) : {}) };

// ---------------------------------------------------------------- journal and faults

/** Every binding call, in order: {binding, method, model?, detail, error?, at}. */
const calls = [];
/**
 * Injected failures, consumed first to last: {binding, error, times, and
 * optionally method, model, kind ("text" | "embedding") and contains (a
 * string, or strings, the call's arguments must all contain, so concurrent
 * tests each hit only their own document)}.
 */
let faults = [];

function takeFault(binding, method, opts) {
	return takeInjected(binding, method, opts)?.error ?? null;
}

/**
 * The first matching injected entry, consumed: a failure (`error`) or a
 * behaviour (`mode`), taken only by a call that can show it: `modes` is
 * true, or the list of modes the call takes (a streamed answer's
 * STREAM_MODES, a JSON-mode call's JSON_MODES).
 */
function takeInjected(binding, method, { model, kind, args, modes = false } = {}) {
	const text = args === undefined ? "" : JSON.stringify(args);
	const i = faults.findIndex(
		(f) =>
			f.binding === binding &&
			(!f.mode || (Array.isArray(modes) ? modes.includes(f.mode) : modes)) &&
			(!f.method || f.method === method) &&
			(!f.model || f.model === model) &&
			(!f.kind || f.kind === kind) &&
			[f.contains ?? []].flat().every((c) => text.includes(c)) &&
			f.times > 0,
	);
	if (i < 0) return null;
	const entry = faults[i];
	entry.times -= 1;
	if (entry.times <= 0) faults.splice(i, 1);
	// The call it strikes was journaled just before (no await in between):
	// the entry says which injection struck, so a test counts only its own.
	calls[calls.length - 1].struck = { contains: entry.contains ?? null, error: entry.error ?? null, mode: entry.mode ?? null };
	return entry;
}

class BindingError extends Error {}

// ---------------------------------------------------------------- Workers AI

const EMBEDDING_MODELS = {
	"@cf/baai/bge-small-en-v1.5": 384,
	"@cf/baai/bge-base-en-v1.5": 768,
	"@cf/baai/bge-large-en-v1.5": 1024,
};
/** bge models: "Maximum Input Tokens 512" (model pages); `text` has 1..100 items. */
const EMBED_MAX_TOKENS = 512;
const EMBED_MAX_ITEMS = 100;

// Text-generation models with JSON mode that are live after the 2026-05-30
// catalog refresh, and the shape each one answers in. "workers" models put the
// object in `response`; the newer catalog models answer OpenAI-style.
const TEXT_MODELS = {
	// Refused while it is in DEPRECATED_MODELS (as the service does since 2026-05-30).
	"@cf/meta/llama-3.1-8b-instruct": "workers",
	"@cf/meta/llama-3.1-8b-instruct-fast": "workers",
	"@cf/meta/llama-3.3-70b-instruct-fp8-fast": "workers",
	"@cf/meta/llama-4-scout-17b-16e-instruct": "workers",
	"@cf/mistralai/mistral-small-3.1-24b-instruct": "workers",
	"@cf/qwen/qwen3-30b-a3b-fp8": "openai",
	"@cf/zai-org/glm-4.7-flash": "openai",
	"@cf/google/gemma-4-26b-a4b-it": "openai",
	"@cf/moonshotai/kimi-k2.6": "openai",
	"@cf/openai/gpt-oss-20b": "openai",
	"@cf/openai/gpt-oss-120b": "openai",
};

// Changelog 2026-05-08 "Planned model deprecations on Workers AI": removed on
// 2026-05-30. Kimi K2.5 is the one model aliased to a successor.
const DEPRECATED_MODELS = [
	"@hf/meta-llama/meta-llama-3-8b-instruct",
	"@cf/meta/llama-3-8b-instruct",
	"@cf/meta/llama-3-8b-instruct-awq",
	"@cf/meta/llama-3.1-8b-instruct",
	"@cf/meta/llama-3.1-8b-instruct-awq",
	"@cf/meta/llama-3.1-70b-instruct",
	"@cf/meta/llama-2-7b-chat-int8",
	"@cf/meta/llama-2-7b-chat-fp16",
	"@cf/mistral/mistral-7b-instruct-v0.1",
	"@hf/mistral/mistral-7b-instruct-v0.2",
	"@hf/google/gemma-7b-it",
	"@cf/google/gemma-3-12b-it",
	"@hf/nousresearch/hermes-2-pro-mistral-7b",
	"@cf/microsoft/phi-2",
	"@cf/defog/sqlcoder-7b-2",
	"@cf/unum/uform-gen2-qwen-500m",
	"@cf/facebook/bart-large-cnn",
];
const deprecated = (model) => (config.deprecatedModels ?? DEPRECATED_MODELS).includes(model);
const ALIASES = { "@cf/moonshotai/kimi-k2.5": "@cf/moonshotai/kimi-k2.6" };

// The errors table (workers-ai/platform/errors): the binding rejects with
// "<code>: <description>".
const noSuchModel = (model) => new BindingError(`5007: No such model ${model} or task`);
const invalidInput = (why) => new BindingError(`5006: Error: ${why}`);

/** A rough WordPiece count: one token per ASCII word piece of up to 8 chars and per other character. */
function approxTokens(text) {
	let n = 0;
	for (const m of text.matchAll(/[A-Za-z0-9]+|[^\sA-Za-z0-9]/gu)) {
		n += /^[A-Za-z0-9]+$/.test(m[0]) ? Math.ceil(m[0].length / 8) : 1;
	}
	return n + 2; // [CLS] and [SEP]
}

/** A deterministic unit vector per text (a hashed bag of words). */
function embedText(text, dims) {
	const v = new Float64Array(dims);
	for (const w of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) {
		const h = crypto.createHash("sha256").update(w).digest();
		for (let k = 0; k < 4; k++) {
			const idx = h.readUInt32LE(k * 4) % dims;
			v[idx] += h[16 + k] & 1 ? 1 : -1;
		}
	}
	let norm = Math.hypot(...v) || 1;
	if (norm === 1 && v.every((x) => x === 0)) {
		v[0] = 1;
		norm = 1;
	}
	return Array.from(v, (x) => Math.round((x / norm) * 1e6) / 1e6);
}

function runEmbedding(model, dims, inputs) {
	const text = inputs?.text;
	const texts = typeof text === "string" ? [text] : text;
	if (!Array.isArray(texts)) throw invalidInput("oneOf at '/' not met, required properties at '/' are 'text'");
	if (texts.length < 1 || texts.length > EMBED_MAX_ITEMS) {
		throw invalidInput(`Type mismatch of '/text', 'array' has ${texts.length} items, expected 1 to ${EMBED_MAX_ITEMS}`);
	}
	texts.forEach((t, i) => {
		if (typeof t !== "string" || t.length < 1) throw invalidInput(`'/text/${i}' must be a non-empty string`);
		// Undocumented how the service handles more: reject, so a test notices.
		const tokens = approxTokens(t);
		if (tokens > EMBED_MAX_TOKENS) {
			throw invalidInput(`'/text/${i}' is ${tokens} tokens, more than the model's ${EMBED_MAX_TOKENS}`);
		}
	});
	const pooling = inputs.pooling ?? "mean";
	if (!["mean", "cls"].includes(pooling)) throw invalidInput("'/pooling' must be one of mean, cls");
	return { shape: [texts.length, dims], data: texts.map((t) => embedText(`${pooling} ${t}`, dims)), pooling };
}

/** The text the Actorline prompt puts between <<< and >>>, else the last user message. */
function promptText(messages) {
	const user = [...messages].reverse().find((m) => m.role === "user")?.content ?? "";
	const s = typeof user === "string" ? user : JSON.stringify(user);
	const m = s.match(/<<<\n?([\s\S]*?)\n?>>>/);
	return (m ? m[1] : s).trim();
}

/** A schema-valid value built from the input text; every string is marked as the emulator's. */
function fromSchema(schema, text, words, i = 0) {
	if (Array.isArray(schema?.enum)) return schema.enum[0];
	switch (schema?.type) {
		case "object": {
			const out = {};
			for (const [k, s] of Object.entries(schema.properties ?? {})) out[k] = fromSchema(s, text, words, i);
			return out;
		}
		case "array": {
			const n = Math.max(schema.minItems ?? 0, Math.min(schema.maxItems ?? 3, 3, Math.max(words.length, 1)));
			return Array.from({ length: n }, (_, j) => fromSchema(schema.items ?? {}, text, words, j));
		}
		case "string": {
			const max = schema.maxLength ?? 200;
			const base = schema.minLength === undefined && words.length ? words[i % words.length] : `[emulator] ${text}`;
			return base.slice(0, Math.min(max, 200)).trim() || "[emulator]";
		}
		case "integer":
			return Math.max(schema.minimum ?? 0, Math.min(schema.maximum ?? 1, 1));
		case "number": {
			const lo = schema.minimum ?? 0;
			const hi = schema.maximum ?? lo + 1;
			return Math.round(((lo + hi) / 2) * 100) / 100;
		}
		case "boolean":
			return false;
		default:
			return null;
	}
}

/** A text model's `messages`, or its `prompt` as one user message. */
function textMessages(inputs) {
	if (!Array.isArray(inputs?.messages) && typeof inputs?.prompt !== "string") {
		throw invalidInput("oneOf at '/' not met, required properties at '/' are 'prompt' or 'messages'");
	}
	return inputs.messages ?? [{ role: "user", content: inputs.prompt }];
}

/** The `usage` a text model reports. */
function usageOf(messages, completionTokens) {
	const prompt = approxTokens(JSON.stringify(messages));
	return { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens };
}

/**
 * Ways a JSON-mode answer goes wrong that the service lets through (an
 * injected `mode`): "string-json", the object as a JSON string, which is
 * `response`'s documented type; "truncated", the JSON cut where `max_tokens`
 * ran out; "bad-field", one `field` of a schema-shaped object out of its
 * range or empty (every number 99, every string "").
 */
const JSON_MODES = ["string-json", "truncated", "bad-field"];

/** `v` with every number made 99 and every string emptied, keeping its shape. */
function corrupt(v) {
	if (Array.isArray(v)) return v.map(corrupt);
	if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, corrupt(x)]));
	if (typeof v === "number") return 99;
	if (typeof v === "string") return "";
	return v;
}

function runText(model, shape, inputs, injected) {
	const messages = textMessages(inputs);
	const text = promptText(messages);
	const words = [...new Set((text.match(/\p{L}{5,}/gu) ?? []).map((w) => w.toLowerCase()))].slice(0, 20);
	const format = inputs.response_format;
	let answer;
	let finish = "stop";
	if (format?.type === "json_schema") {
		if (!format.json_schema || typeof format.json_schema !== "object") throw invalidInput("'/response_format/json_schema' must be an object");
		answer = fromSchema(format.json_schema, text.split(/(?<=[.!?])\s/)[0] ?? text, words);
		if (injected.mode === "bad-field" && answer && typeof answer === "object" && injected.field in answer) {
			answer[injected.field] = corrupt(answer[injected.field]);
		} else if (injected.mode === "string-json") {
			answer = JSON.stringify(answer);
		} else if (injected.mode === "truncated") {
			const whole = JSON.stringify(answer, null, 2);
			answer = whole.slice(0, Math.floor(whole.length / 2));
			finish = "length";
		}
	} else {
		answer = `[emulator] ${text.slice(0, 200)}`;
	}
	const usage = usageOf(messages, finish === "length" ? inputs.max_tokens ?? 256 : 64);
	if (shape === "openai") {
		const content = typeof answer === "string" ? answer : JSON.stringify(answer);
		return { id: `emu-${calls.length}`, object: "chat.completion", model, choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: finish }], usage };
	}
	return { response: answer, usage };
}

function aiRun({ model, inputs, options }) {
	const resolved = ALIASES[model] ?? model;
	const kind = EMBEDDING_MODELS[resolved] ? "embedding" : TEXT_MODELS[resolved] ? "text" : undefined;
	const streamed = kind === "text" && inputs?.stream === true;
	// `rejectIfBusy` (the third argument) is recorded: without it the service queues a busy call.
	calls.push({ binding: "ai", method: "run", model, kind, stream: streamed || undefined, rejectIfBusy: options?.rejectIfBusy === true, deprecated: DEPRECATED_MODELS.includes(model), at: Date.now() });
	const injected = takeInjected("ai", "run", { model, kind, args: inputs, modes: streamed ? STREAM_MODES : JSON_MODES });
	if (injected?.error) throw new BindingError(injected.error);
	if (typeof model !== "string" || deprecated(model)) throw noSuchModel(model);
	if (EMBEDDING_MODELS[resolved]) return runEmbedding(resolved, EMBEDDING_MODELS[resolved], inputs);
	if (streamed) return streamText(resolved, inputs, injected?.mode ? injected : {});
	if (TEXT_MODELS[resolved]) return runText(resolved, TEXT_MODELS[resolved], inputs, injected?.mode ? injected : {});
	throw noSuchModel(model);
}

// ---------------------------------------------------------------- Workers AI: streamed answers

/** A streamed reply: the HTTP layer writes its `chunks` as they are due. */
class StreamReply {
	constructor(chunks, delayMs) {
		this.chunks = chunks;
		this.delayMs = delayMs;
	}
}

const STREAM_DELAY_MS = 15;
const SLOW_DELAY_MS = 400;
const QUESTION_STOPWORDS = new Set(["what", "which", "when", "where", "does", "that", "this", "with", "from", "have", "many", "much", "there", "their", "about", "into", "the", "how", "who", "why", "and", "for", "are", "was", "were", "is", "of"]);

/**
 * The sources and question of an Actorline answer prompt (`[n] title` then
 * the text on one line, then `Question: ...`) in the first user message.
 */
function answerPrompt(messages) {
	const user = messages.find((m) => m.role === "user")?.content ?? "";
	const sources = [...String(user).matchAll(/^\[(\d+)\] (.*)\n(.*)$/gm)].map((m) => ({ n: Number(m[1]), title: m[2], text: m[3] }));
	const question = String(user).match(/^Question: (.*)$/m)?.[1] ?? "";
	const assistant = messages.filter((m) => m.role === "assistant").map((m) => String(m.content)).join("");
	return { sources, question, assistant };
}

/**
 * A grounded answer, as a compliant model writes it: up to three sentences
 * copied from the sources that share the most question words, each ending in
 * its source's `[n]`; "I don't know" when none shares one. Mode
 * "cite-unknown" adds a sentence citing a source number that was not given.
 */
function groundedAnswer({ sources, question }, mode) {
	const words = (t) => (t.toLowerCase().match(/\p{L}[\p{L}\p{N}]*|\p{N}+/gu) ?? []).filter((w) => w.length >= 3 && !QUESTION_STOPWORDS.has(w));
	const wanted = new Set(words(question));
	const picked = [];
	for (const s of sources) {
		for (const sentence of s.text.split(/(?<=[.!?])\s+/)) {
			const score = new Set(words(sentence).filter((w) => wanted.has(w))).size;
			if (score > 0) picked.push({ score, n: s.n, sentence: sentence.trim().replace(/[.!?]+$/, "") });
		}
	}
	picked.sort((a, b) => b.score - a.score);
	const best = picked.length ? picked[0].score : 0;
	const kept = picked.filter((p) => p.score === best).slice(0, 3);
	if (!kept.length) return "I don't know: none of the sources answers that question.";
	let text = kept.map((p) => `${p.sentence} [${p.n}].`).join(" ");
	if (mode === "cite-unknown") text += ` This is also recorded elsewhere [${sources.length + 7}].`;
	return text;
}

/**
 * `run(model, {messages, stream: true})`: the text-generation event stream,
 * `data: {"response":"<piece>"}` per piece, a last `{"response":"","usage"}`,
 * then `data: [DONE]` (workers-ai streaming). A continuation (the committed
 * text given back as the assistant's) gets only what follows it.
 */
function streamText(model, inputs, injected) {
	const messages = textMessages(inputs);
	const prompt = answerPrompt(messages);
	let text = prompt.sources.length ? groundedAnswer(prompt, injected.mode) : `[emulator] ${promptText(messages).slice(0, 200)}`;
	if (prompt.assistant && text.startsWith(prompt.assistant.trim())) text = text.slice(prompt.assistant.trim().length);
	// A few words a piece, as a model's tokens arrive; "tokens": 1 to 3
	// characters a piece, so a citation's `[n]` and a word straddle events,
	// and each event reaches the Worker in two reads split inside it (inside
	// a multi-byte character where it has one).
	const pieces = injected.mode === "tokens" ? charPieces(text) : wordPieces(text);
	const chunks = pieces.map((piece) => `data: ${JSON.stringify({ response: piece })}\n\n`);
	const usage = usageOf(messages, pieces.length);
	// "cut": the stream ends cleanly halfway, without `[DONE]`; "reset": the
	// same, but the connection is torn down (the reader errors), as a dropped
	// upstream would.
	const cutOff = injected.mode === "cut" || injected.mode === "reset";
	if (cutOff) chunks.splice(Math.ceil(chunks.length / 2));
	else chunks.push(`data: ${JSON.stringify({ response: "", usage })}\n\n`, "data: [DONE]\n\n");
	const last = calls[calls.length - 1];
	if (last) last.detail = { mode: injected.mode ?? null, sources: prompt.sources.map((s) => s.n), continuation: Boolean(prompt.assistant), text };
	const reply = new StreamReply(chunks, injected.mode === "slow" ? injected.delayMs ?? SLOW_DELAY_MS : STREAM_DELAY_MS);
	reply.splitEvents = injected.mode === "tokens";
	reply.reset = injected.mode === "reset";
	return reply;
}

/** The modes a streamed answer takes (see `streamText` and `groundedAnswer`). */
const STREAM_MODES = ["cite-unknown", "slow", "cut", "reset", "tokens"];

/** Three words a piece. */
function wordPieces(text) {
	const words = text.match(/\S+\s*|\s+/g) ?? [];
	const out = [];
	for (let i = 0; i < words.length; i += 3) out.push(words.slice(i, i + 3).join(""));
	return out;
}

/** 1, 2 or 3 characters (code points) a piece, in turn. */
function charPieces(text) {
	const chars = [...text];
	const out = [];
	for (let i = 0, n = 1; i < chars.length; i += n, n = (n % 3) + 1) out.push(chars.slice(i, i + n).join(""));
	return out;
}

/** Where to cut `buf` in two: inside its first multi-byte character, else halfway. */
function splitPoint(buf) {
	const lead = buf.findIndex((b) => b >= 0xc0);
	return lead >= 0 && lead + 1 < buf.length ? lead + 1 : Math.max(1, Math.floor(buf.length / 2));
}

// ---------------------------------------------------------------- Vectorize V2

// vectorize/platform/limits and client-api: ids and namespaces ≤ 64 bytes,
// upsert ≤ 1000 vectors per Worker call, topK ≤ 100 (≤ 20 with values or
// all metadata), metadata filter JSON < 2048 bytes. The deleteByIds limit and
// error text are the service's (JSONbored/metagraphed#11137).
const LIMITS = { idBytes: 64, namespaceBytes: 64, upsertBatch: 1000, topK: 100, topKWithData: 20, deleteIds: 100, getIds: 20, filterBytes: 2048, indexedStringBytes: 64, ...config.limits };

/** Visible vectors: id → {id, values, namespace, metadata}. */
const vectors = new Map();
/** Writes not visible yet: {applyAt, mutationId, apply()}. */
let pending = [];
let mutations = 0;
let lastMutation = null;

function settle() {
	const now = Date.now();
	const due = pending.filter((p) => p.applyAt <= now);
	pending = pending.filter((p) => p.applyAt > now);
	for (const p of due) {
		p.apply();
		lastMutation = p.mutationId;
	}
}

function later(apply, visibleAfterMs = config.vectorizeVisibilityMs) {
	mutations += 1;
	const mutationId = `emu-mutation-${mutations}`;
	pending.push({ applyAt: Date.now() + visibleAfterMs, mutationId, apply });
	return { mutationId };
}

const bytes = (s) => Buffer.byteLength(String(s), "utf8");

function checkVectors(kind, list) {
	const err = (code, msg) => new BindingError(`VECTOR_${kind}_ERROR (code = ${code}): ${msg}`);
	if (!Array.isArray(list) || list.length === 0) throw err(40001, "no vectors in payload");
	if (list.length > LIMITS.upsertBatch) throw err(40005, `too many vectors in payload; max vector count is ${LIMITS.upsertBatch}`);
	for (const v of list) {
		if (typeof v.id !== "string" || v.id.length === 0 || bytes(v.id) > LIMITS.idBytes) {
			throw err(40008, `invalid vector id ${JSON.stringify(v.id)}; ids are 1 to ${LIMITS.idBytes} bytes`);
		}
		if (v.namespace !== undefined && bytes(v.namespace) > LIMITS.namespaceBytes) {
			throw err(40009, `namespace longer than ${LIMITS.namespaceBytes} bytes`);
		}
		const values = Array.from(v.values ?? []);
		if (values.length !== config.dimensions) {
			throw err(40012, `invalid vector for id="${v.id}", expected ${config.dimensions} dimensions, and got ${values.length} dimensions`);
		}
		if (values.some((x) => !Number.isFinite(x))) throw err(40013, `vector id="${v.id}" has non-finite values`);
	}
	return list.map((v) => ({ id: v.id, values: Array.from(v.values), namespace: v.namespace ?? null, metadata: v.metadata ?? {} }));
}

function upsert(args, insertOnly) {
	const rows = checkVectors(insertOnly ? "INSERT" : "UPSERT", args.vectors);
	// An injected `lag` mode (`visibleAfterMs`): this write waits behind a
	// backlog, as many small writes do (vectorize best-practices,
	// "Improve Write Throughput": applied in batches, possibly much later).
	const lag = takeInjected("vectorize", insertOnly ? "insert" : "upsert", { args, modes: true });
	return later(() => {
		for (const r of rows) if (!insertOnly || !vectors.has(r.id)) vectors.set(r.id, r);
	}, lag?.mode === "lag" ? lag.visibleAfterMs ?? 30_000 : undefined);
}

function deleteByIds({ ids }) {
	if (!Array.isArray(ids)) throw new BindingError("VECTOR_DELETE_ERROR (code = 40001): ids must be an array");
	if (ids.length > LIMITS.deleteIds) {
		throw new BindingError(`VECTOR_DELETE_ERROR (code = 40007): too many ids in payload; max id count is ${LIMITS.deleteIds}`);
	}
	const copy = [...ids];
	return later(() => copy.forEach((id) => vectors.delete(id)));
}

const indexedType = (prop) => config.metadataIndexes.find((m) => m.propertyName === prop)?.type;

/**
 * What a string metadata index holds: the first 64 bytes, cut back to a
 * UTF-8 character boundary (metadata-filtering.mdx). Filters match that, so
 * a longer filter value matches nothing.
 */
function indexedPrefix(value) {
	if (typeof value !== "string") return value;
	const buf = Buffer.from(value, "utf8");
	if (buf.length <= LIMITS.indexedStringBytes) return value;
	let end = LIMITS.indexedStringBytes;
	while (end > 0 && (buf[end] & 0xc0) === 0x80) end--;
	return buf.subarray(0, end).toString("utf8");
}

/** One property's condition against a vector: only indexed properties of the index's type match. */
function matchesCond(meta, prop, cond) {
	const type = indexedType(prop);
	if (!type) return false; // metadata-filtering: filters only see indexed properties
	const value = type === "string" ? indexedPrefix(meta[prop]) : meta[prop];
	if (value === undefined || typeof value !== type) return false;
	const ops = cond !== null && typeof cond === "object" && !Array.isArray(cond) ? cond : { $eq: cond };
	return Object.entries(ops).every(([op, x]) => {
		switch (op) {
			case "$eq": return value === x;
			case "$ne": return value !== x;
			case "$in": return Array.isArray(x) && x.includes(value);
			case "$nin": return Array.isArray(x) && !x.includes(value);
			case "$lt": return value < x;
			case "$lte": return value <= x;
			case "$gt": return value > x;
			case "$gte": return value >= x;
			default: throw new BindingError(`VECTOR_QUERY_ERROR (code = 40026): unsupported filter operator ${op}`);
		}
	});
}

function cosine(a, b) {
	let dot = 0, na = 0, nb = 0;
	for (let i = 0; i < a.length; i++) {
		dot += a[i] * b[i];
		na += a[i] * a[i];
		nb += b[i] * b[i];
	}
	return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

function query({ vector, options = {} }) {
	const err = (code, msg) => new BindingError(`VECTOR_QUERY_ERROR (code = ${code}): ${msg}`);
	const q = Array.from(vector ?? []);
	if (q.length !== config.dimensions) throw err(40012, `invalid query vector, expected ${config.dimensions} dimensions, and got ${q.length} dimensions`);
	const topK = options.topK ?? 5;
	const returnMetadata = options.returnMetadata === true ? "all" : options.returnMetadata === false ? "none" : options.returnMetadata ?? "none";
	const returnValues = options.returnValues === true;
	const max = returnValues || returnMetadata === "all" ? LIMITS.topKWithData : LIMITS.topK;
	if (!Number.isInteger(topK) || topK < 1 || topK > max) throw err(40025, `max top K is ${max}, but got ${topK}`);
	if (options.namespace !== undefined && bytes(options.namespace) > LIMITS.namespaceBytes) throw err(40009, "namespace too long");
	const filter = options.filter ?? {};
	if (bytes(JSON.stringify(filter)) >= LIMITS.filterBytes) throw err(40026, `filter is ${bytes(JSON.stringify(filter))} bytes; the limit is ${LIMITS.filterBytes}`);
	settle();
	// The namespace, then the metadata filter, are applied before topK.
	const hits = [...vectors.values()]
		.filter((v) => options.namespace === undefined || v.namespace === options.namespace)
		.filter((v) => Object.entries(filter).every(([p, c]) => matchesCond(v.metadata, p, c)))
		.map((v) => ({ v, score: config.metric === "cosine" ? cosine(q, v.values) : -Math.hypot(...q.map((x, i) => x - v.values[i])) }))
		.sort((a, b) => b.score - a.score || (a.v.id < b.v.id ? -1 : 1))
		.slice(0, topK);
	const matches = hits.map(({ v, score }) => {
		const m = { id: v.id, score };
		if (v.namespace !== null) m.namespace = v.namespace;
		if (returnValues) m.values = v.values;
		if (returnMetadata === "all") m.metadata = v.metadata;
		if (returnMetadata === "indexed") {
			m.metadata = Object.fromEntries(Object.entries(v.metadata).filter(([k, x]) => typeof x === indexedType(k)));
		}
		return m;
	});
	return { count: matches.length, matches };
}

function getByIds({ ids }) {
	if (!Array.isArray(ids) || ids.length > LIMITS.getIds) {
		throw new BindingError(`VECTOR_GET_ERROR (code = 40007): too many ids in payload; max id count is ${LIMITS.getIds}`);
	}
	settle();
	return ids.filter((id) => vectors.has(id)).map((id) => vectors.get(id));
}

function describe() {
	settle();
	return {
		id: "emulated-index",
		name: "actorline-chunks",
		config: { dimensions: config.dimensions, metric: config.metric },
		vectorCount: vectors.size,
		processedUpToMutation: lastMutation,
		processedUpToDatetime: new Date().toISOString(),
	};
}

function vectorize(method, args) {
	calls.push({ binding: "vectorize", method, detail: vectorizeDetail(method, args), at: Date.now() });
	const fault = takeFault("vectorize", method, { args });
	if (fault) throw new BindingError(fault);
	switch (method) {
		case "query": return query(args);
		case "upsert": return upsert(args, false);
		case "insert": return upsert(args, true);
		case "deleteByIds": return deleteByIds(args);
		case "getByIds": return getByIds(args);
		case "describe": return describe();
		default: throw new BindingError(`vectorize has no method ${method}`);
	}
}

function vectorizeDetail(method, args) {
	if (method === "query") return { options: args.options ?? {} };
	if (method === "upsert" || method === "insert") return { count: args.vectors?.length ?? 0, first: args.vectors?.[0]?.id ?? null };
	if (method === "deleteByIds" || method === "getByIds") return { count: args.ids?.length ?? 0, first: args.ids?.[0] ?? null };
	return {};
}

// ---------------------------------------------------------------- container

// durable-objects/api/container: start() returns before the container
// listens, `running` does not mean ready. Error texts are the production
// runtime's when the container is stopped or not listening yet.
const container = { running: false, startedAt: null, starts: 0, inactivityTimeoutMs: null, destroyed: 0, signals: [], fetches: 0, refused: 0, disk: null, url: null };
/** The analyzer process of the running container (with `analyzerCommand`). */
let containerProcess = null;

/** A fresh analyzer on an empty disk, listening once it says so. */
function bootContainer() {
	if (!config.analyzerCommand) return;
	const [bin, ...args] = config.analyzerCommand;
	const disk = path.join(config.analyzerDataRoot, `disk-${container.starts}`);
	const child = spawn(bin, [...args, "--data-dir", disk], { stdio: ["ignore", "pipe", "inherit"] });
	Object.assign(container, { disk, url: null });
	containerProcess = child;
	let out = "";
	child.stdout.on("data", (chunk) => {
		out += chunk.toString();
		const m = out.match(/listening on (http:\/\/[^\s]+)/);
		if (m && containerProcess === child && !container.url) container.url = m[1];
	});
	// The process ending (or failing to start) stops the container it is.
	const ended = () => {
		if (containerProcess === child) haltContainer();
	};
	child.on("error", (e) => {
		console.error(`emulated container: ${e.message}`);
		ended();
	});
	child.on("exit", ended);
}

/** The container stops: its process ends, and its disk with it. */
function haltContainer() {
	Object.assign(container, { running: false, startedAt: null, url: null });
	const child = containerProcess;
	containerProcess = null;
	if (child) child.kill("SIGKILL");
}

function containerCall(method, args) {
	calls.push({ binding: "container", method, at: Date.now() });
	const fault = takeFault("container", method, { args });
	if (fault) throw new BindingError(fault);
	switch (method) {
		case "running":
			return container.running;
		case "start":
			if (container.running) throw new BindingError("start() cannot be called on a container that is already running.");
			Object.assign(container, { running: true, startedAt: Date.now(), starts: container.starts + 1 });
			bootContainer();
			return null;
		case "destroy":
			haltContainer();
			container.destroyed += 1;
			return null;
		case "signal":
			container.signals.push(args.signo);
			if ([9, 15].includes(args.signo)) haltContainer();
			return null;
		case "setInactivityTimeout":
			container.inactivityTimeoutMs = args.durationMs;
			return null;
		default:
			throw new BindingError(`container has no method ${method}`);
	}
}

async function containerFetch({ port, method, url, headers, body64 }) {
	container.fetches += 1;
	calls.push({ binding: "container", method: "fetch", at: Date.now() });
	const body = body64 == null ? null : Buffer.from(body64, "base64");
	const fault = takeFault("container", "fetch", { args: body?.toString("latin1") ?? null });
	if (fault) throw new BindingError(fault);
	if (!container.running) {
		container.refused += 1;
		throw new BindingError("The container is not running, consider calling start()");
	}
	if (Date.now() - container.startedAt < config.containerListenDelayMs || (config.analyzerCommand && !container.url)) {
		container.refused += 1;
		throw new BindingError(`The container is not listening in the TCP address 10.0.0.1:${port}`);
	}
	const target = new URL(new URL(url).pathname + new URL(url).search, container.url ?? config.analyzerUrl);
	const resp = await fetch(target, { method, headers, body: body ?? undefined });
	return { status: resp.status, headers: Object.fromEntries(resp.headers), body: await resp.text() };
}

// ---------------------------------------------------------------- HTTP

function readBody(req) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		req.on("data", (c) => chunks.push(c));
		req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
		req.on("error", reject);
	});
}

function control(path, body) {
	switch (path) {
		case "/control/state":
			settle();
			return {
				config,
				vectors: [...vectors.values()].map(({ id, namespace, metadata }) => ({ id, namespace, metadata })),
				pending: pending.length,
				calls,
				faults,
				container,
			};
		case "/control/faults":
			faults.push(...(Array.isArray(body) ? body : [body]));
			return { faults };
		case "/control/clear-faults":
			faults = [];
			return { faults };
		case "/control/config":
			Object.assign(config, body);
			return { config };
		case "/control/container/stop":
			haltContainer();
			return { container };
		case "/control/container/replace":
			// The platform replaced the container (a host move): a new process
			// on a new disk, running, without its actor having started it.
			haltContainer();
			Object.assign(container, { running: true, startedAt: Date.now(), starts: container.starts + 1 });
			bootContainer();
			return { container };
		default:
			return null;
	}
}

/** Writes a streamed reply's chunks, one every `delayMs`; stops if the reader goes away. */
async function streamOut(res, reply) {
	res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
	const pause = (ms) => new Promise((r) => setTimeout(r, ms));
	for (const chunk of reply.chunks) {
		if (res.destroyed) return;
		if (reply.splitEvents) {
			const buf = Buffer.from(chunk, "utf8");
			const at = splitPoint(buf);
			res.write(buf.subarray(0, at));
			await pause(3);
			if (res.destroyed) return;
			res.write(buf.subarray(at));
		} else {
			res.write(chunk);
		}
		await pause(reply.delayMs);
	}
	if (reply.reset) res.destroy();
	else res.end();
}

const server = http.createServer(async (req, res) => {
	let callIndex = -1;
	const reply = (status, value) => {
		res.writeHead(status, { "content-type": "application/json" });
		res.end(JSON.stringify(value));
	};
	try {
		const path = new URL(req.url, "http://x").pathname;
		const text = await readBody(req);
		const body = text ? JSON.parse(text) : {};
		const ctl = path.startsWith("/control/") ? control(path, body) : undefined;
		if (ctl) return reply(200, ctl);
		// Each binding call journals exactly one entry before its first await.
		callIndex = calls.length;
		let result;
		if (path === "/ai/run") result = aiRun(body);
		else if (path.startsWith("/vectorize/")) result = vectorize(path.slice("/vectorize/".length), body);
		else if (path === "/container/fetch") result = await containerFetch(body);
		else if (path.startsWith("/container/")) result = containerCall(path.slice("/container/".length), body);
		else return reply(404, { error: `no route ${path}` });
		if (result instanceof StreamReply) return streamOut(res, result);
		reply(200, { ok: result ?? null });
	} catch (e) {
		// Binding errors travel as data; the Worker side throws them as `Error`s.
		const message = e instanceof BindingError ? e.message : `emulator: ${e?.stack ?? e}`;
		if (calls[callIndex]) calls[callIndex].error = message;
		reply(200, { error: message });
	}
});

server.listen(config.port, "127.0.0.1", () => {
	console.log(`emulator listening on http://127.0.0.1:${server.address().port}`);
});
// Keep-alive connections from workerd would hold `server.close()` open.
for (const sig of ["SIGTERM", "SIGINT"])
	process.on(sig, () => {
		haltContainer();
		process.exit(0);
	});
