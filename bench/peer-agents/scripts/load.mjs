#!/usr/bin/env node
// Smoke test and rough closed-loop throughput for the Agents SDK peer.
//
//   node scripts/load.mjs [--url http://127.0.0.1:8899] [--docs 20] [--concurrency 20] [--bytes 2048]
//
// Each document: POST /api/content, open the run's agent socket
// (/agents/pipeline-run/{run_id}?after=0, which replays from seq 1), wait for
// run.completed (or run.failed), check the frames (shape, dense seq from 1,
// RFC 3339 ts, event order), close, then GET /api/runs/{id} and check 8 stages.
// At most --concurrency documents are in flight. Prints one JSON summary line;
// exits non-zero if any run failed a check.
import WebSocket from "ws";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const BASE = (args.url ?? "http://127.0.0.1:8899").replace(/\/$/, "");
const DOCS = Number(args.docs ?? 20);
const CONC = Number(args.concurrency ?? DOCS);
const BYTES = Number(args.bytes ?? 2048);
const TIMEOUT_MS = Number(args.timeout ?? 60_000);
const STAGES = ["validate", "chunk", "embed", "index", "summarize", "extract", "analyze", "publish"];
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

// The same documents as Actorline's harness (tests/support/mod.rs `document`).
const WORDS = ["signal", "pipeline", "vector", "garden", "harbor", "quantum", "river", "market", "engine", "violin",
  "protein", "glacier", "ledger", "orbit", "canvas", "thunder", "copper", "lantern", "meadow", "circuit"];
const M64 = (1n << 64n) - 1n;
function documentText(topic, seed, bytes) {
  let out = "";
  let i = (BigInt(seed) * 2654435761n) & M64;
  while (Buffer.byteLength(out) < bytes) {
    out += `The ${topic} study of ${WORDS[Number(i % 20n)]} `;
    for (let k = 0; k < 10; k++) {
      i = (i * 6364136223846793005n + 1442695040888963407n) & M64;
      out += WORDS[Number((i >> 33n) % 20n)] + " ";
    }
    out += "shows clear results. ";
  }
  return out;
}

async function submit(n) {
  for (let attempt = 0; ; attempt++) {
    const t0 = performance.now();
    const r = await fetch(`${BASE}/api/content`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ title: `Peer document ${n}`, body: documentText("peer", n, BYTES), category: "peer", tags: ["bench"] }),
    });
    const body = await r.json().catch(() => null);
    if (r.status === 202) return { body, post_ms: performance.now() - t0 };
    if (r.status !== 503 || attempt >= 3) throw new Error(`POST ${r.status}: ${JSON.stringify(body)}`);
  }
}

function watch(runId) {
  const url = `${BASE.replace(/^http/, "ws")}/agents/pipeline-run/${runId}?after=0`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const frames = [];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`${runId}: no run.completed within ${TIMEOUT_MS} ms (${frames.length} frames)`));
    }, TIMEOUT_MS);
    ws.on("message", (data) => {
      const f = JSON.parse(String(data));
      if (f.type !== "event") return;
      frames.push({ ...f, recv: Date.now() });
      if (f.event === "run.completed" || f.event === "run.failed") {
        clearTimeout(timer);
        ws.close();
        resolve(frames);
      }
    });
    ws.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function checkFrames(runId, frames) {
  const problems = [];
  const seen = new Map(); // a replayed frame can also arrive live: dedupe by seq
  for (const f of frames) if (!seen.has(f.seq)) seen.set(f.seq, f);
  const list = [...seen.values()].sort((a, b) => a.seq - b.seq);
  list.forEach((f, i) => {
    if (f.seq !== i + 1) problems.push(`seq ${f.seq} at position ${i + 1}`);
    if (f.topic !== `run:${runId}`) problems.push(`topic ${f.topic}`);
    if (!RFC3339.test(f.ts)) problems.push(`ts ${f.ts}`);
    if (typeof f.data !== "object" || f.data.run_id !== runId) problems.push(`data ${JSON.stringify(f.data)}`);
  });
  const names = list.map((f) => f.event);
  const expected = ["run.queued"];
  for (const s of STAGES) expected.push("stage.started", s === "analyze" && names.includes("stage.skipped") ? "stage.skipped" : "stage.completed");
  expected.push("run.completed");
  if (names.join() !== expected.join()) problems.push(`events ${names.join(",")}`);
  return { problems, names, frames: list, duplicates: frames.length - list.length };
}

async function one(n, out) {
  const t0 = performance.now();
  const { body, post_ms } = await submit(n);
  const frames = await watch(body.run_id);
  const done = performance.now();
  const checked = checkFrames(body.run_id, frames);
  const run = await (await fetch(`${BASE}/api/runs/${body.run_id}`)).json();
  const stagesOk = run.status === "completed" && run.stages.length === 8 &&
    run.stages.every((s, i) => s.name === STAGES[i] && (s.status === "completed" || (s.name === "analyze" && s.status === "skipped")));
  if (!stagesOk) checked.problems.push(`run view ${JSON.stringify(run)}`);
  const last = checked.frames.at(-1);
  out.push({
    run_id: body.run_id,
    latency_ms: done - t0,
    post_ms,
    push_lag_ms: last ? last.recv - Date.parse(last.ts) : null,
    frames: checked.frames.length,
    duplicates: checked.duplicates,
    problems: checked.problems,
    sample: n === 0 ? { accepted: body, first_frame: checked.frames[0], last_frame: last, run } : undefined,
  });
}

const results = [];
const errors = [];
let next = 0;
const start = performance.now();
await Promise.all(
  Array.from({ length: Math.min(CONC, DOCS) }, async () => {
    while (next < DOCS) {
      const n = next++;
      try {
        await one(n, results);
      } catch (e) {
        errors.push(String(e?.message ?? e));
      }
    }
  }),
);
const wall = (performance.now() - start) / 1000;
const lat = results.map((r) => r.latency_ms).sort((a, b) => a - b);
const pct = (p) => (lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]) : null);
const bad = results.filter((r) => r.problems.length);
const summary = {
  docs: DOCS,
  concurrency: CONC,
  bytes: BYTES,
  ok: results.length - bad.length,
  failed: bad.length + errors.length,
  wall_s: Number(wall.toFixed(2)),
  runs_per_s: Number(((results.length - bad.length) / wall).toFixed(1)),
  duplicate_frames: results.reduce((a, r) => a + r.duplicates, 0),
  latency_ms: { p50: pct(0.5), p90: pct(0.9), max: lat.length ? Math.round(lat.at(-1)) : null },
  errors: [...errors, ...bad.flatMap((r) => r.problems.map((p) => `${r.run_id}: ${p}`))].slice(0, 10),
};
if (args.sample !== undefined) summary.sample = results.find((r) => r.sample)?.sample;
console.log(JSON.stringify(summary, null, args.sample !== undefined ? 2 : 0));
process.exit(summary.failed ? 1 : 0);
