// The emulated bindings as the Actorline Worker sees them: named entrypoints
// bound as service bindings in wrangler.toml [env.emulated] (AI, VECTORIZE,
// ANALYZER_CONTAINER_EMULATOR). Each method has the binding's JS signature
// and forwards to server.mjs (EMULATOR_URL), which holds the state; a failure
// comes back as a thrown `Error` with the service's text, as the real binding
// rejects.

import { RpcTarget, WorkerEntrypoint } from "cloudflare:workers";

async function call(env, path, args) {
	const resp = await fetch(`${env.EMULATOR_URL}${path}`, {
		method: "POST",
		headers: { "content-type": "application/json" },
		body: JSON.stringify(args ?? {}),
	});
	// A streamed text model answers with its event stream, handed on as is.
	if ((resp.headers.get("content-type") ?? "").startsWith("text/event-stream")) return resp.body;
	const out = await resp.json();
	if ("error" in out) throw new Error(out.error);
	return out.ok;
}

/**
 * Workers AI: `env.AI.run(model, inputs, options)`. With `stream: true` a
 * text model resolves to the `ReadableStream` of its event stream, as the
 * binding does.
 */
export class Ai extends WorkerEntrypoint {
	async run(model, inputs, options) {
		return call(this.env, "/ai/run", { model, inputs, options });
	}
}

/** Vectorize V2: the index binding's methods. Vectors may be typed arrays. */
export class Vectorize extends WorkerEntrypoint {
	async query(vector, options) {
		return call(this.env, "/vectorize/query", { vector: Array.from(vector ?? []), options });
	}
	async upsert(vectors) {
		return call(this.env, "/vectorize/upsert", { vectors: plainVectors(vectors) });
	}
	async insert(vectors) {
		return call(this.env, "/vectorize/insert", { vectors: plainVectors(vectors) });
	}
	async deleteByIds(ids) {
		return call(this.env, "/vectorize/deleteByIds", { ids });
	}
	async getByIds(ids) {
		return call(this.env, "/vectorize/getByIds", { ids });
	}
	async describe() {
		return call(this.env, "/vectorize/describe", {});
	}
}

function plainVectors(vectors) {
	return Array.isArray(vectors) ? vectors.map((v) => ({ ...v, values: Array.from(v.values ?? []) })) : vectors;
}

/** `bytes` in base64, a chunk at a time (a spread of a large array overflows the stack). */
function base64(bytes) {
	let text = "";
	for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
	return btoa(text);
}

/** What `ctx.container.getTcpPort(port)` returns: a fetcher into the container. */
class PortFetcher extends RpcTarget {
	#env;
	#port;
	constructor(env, port) {
		super();
		this.#env = env;
		this.#port = port;
	}
	async fetch(input, init) {
		const req = new Request(input, init);
		// Bytes, not text: a PDF is binary, and decoding it as UTF-8 would
		// hand the analyzer a different file than the runtime does.
		const bytes = ["GET", "HEAD"].includes(req.method) ? null : new Uint8Array(await req.arrayBuffer());
		const out = await call(this.#env, "/container/fetch", {
			port: this.#port,
			method: req.method,
			url: req.url,
			headers: Object.fromEntries(req.headers),
			body64: bytes && base64(bytes),
		});
		return new Response(out.body, { status: out.status, headers: out.headers });
	}
}

/**
 * A Durable Object's `ctx.container`. Over RPC every member is async, so
 * `running` is a promise here where the runtime's is a plain boolean; the
 * Rust side awaits both the same way (`Promise.resolve`).
 */
export class Container extends WorkerEntrypoint {
	get running() {
		return call(this.env, "/container/running", {});
	}
	async start(options) {
		await call(this.env, "/container/start", { options: options ?? null });
	}
	getTcpPort(port) {
		return new PortFetcher(this.env, port);
	}
	async destroy(reason) {
		await call(this.env, "/container/destroy", { reason: reason === undefined ? null : String(reason) });
	}
	async signal(signo) {
		await call(this.env, "/container/signal", { signo });
	}
	async setInactivityTimeout(durationMs) {
		await call(this.env, "/container/setInactivityTimeout", { durationMs: Number(durationMs) });
	}
}

export default {
	async fetch() {
		return new Response("actorline emulator: bindings only", { status: 404 });
	},
};
