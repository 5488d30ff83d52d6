// Actorline's benchmark peer on Cloudflare's Agents SDK (npm `agents`).
//
// One Agent instance (`PipelineRun`, a SQLite-backed Durable Object) per
// pipeline run. It runs Actorline's 8 stages one per `this.schedule(...)`
// callback (the SDK turns each into a Durable Object alarm), keeps the run
// journal in the Agent's state (`this.setState`, stored in its SQLite), keeps
// events, artifacts and vectors in its own SQL tables, and pushes every event
// to connected WebSocket clients with `this.broadcast`. The stage work is
// Actorline's own `src/nlp`, compiled to wasm (see nlp-wasm/ and build.sh).
// One `Feed` Agent (name "main") is Actorline's `feed` topic: run Agents hand
// it their content-level events by RPC, it numbers, stores and broadcasts them.
//
// REST (the subset of Actorline's contract a load generator needs):
//   POST /api/content        {title, body, category?, tags?, author?} -> 202 {content_id, version, run_id, links}
//   GET  /api/runs/{id}      the run journal
//   GET  /api/content/{id}   the published catalog row (D1), 404 until published
//   GET  /healthz            200
// WebSocket (the SDK's standard agent URL, served by routeAgentRequest):
//   GET  /agents/pipeline-run/{run_id}[?after=N]   upgrade; frames are
//   {"type":"event","topic":"run:<id>","seq":n,"event":"<name>","data":{...},"ts":"<RFC 3339>"}
//   GET  /agents/feed/main[?after=N]              the same for topic "feed":
//   content.updated (run accepted) and content.indexed (published), every run

import { Agent, type Connection, type ConnectionContext, getAgentByName, routeAgentRequest } from "agents";
import nlpWasm from "../nlp-pkg/actorline_nlp_bg.wasm";
import * as nlp from "../nlp-pkg/actorline_nlp.js";

// Instantiate the precompiled module once per isolate, at startup.
nlp.initSync({ module: nlpWasm });

export interface Env {
  PipelineRun: DurableObjectNamespace<PipelineRun>;
  Feed: DurableObjectNamespace<Feed>;
  DB: D1Database;
  ANALYZER_URL?: string;
}

// ------------------------------------------------------------------ contract

const STAGES = ["validate", "chunk", "embed", "index", "summarize", "extract", "analyze", "publish"] as const;
type StageName = (typeof STAGES)[number];

type RunStatus = "queued" | "running" | "completed" | "failed";
type StageStatus = "pending" | "running" | "retrying" | "completed" | "skipped" | "failed";

interface StageRecord {
  name: StageName;
  status: StageStatus;
  attempts: number;
  started_at?: string;
  finished_at?: string;
  duration_ms?: number;
  error?: { class: string; message: string };
  next_at?: string;
  reason?: string;
}

/** The run journal: the Agent's state, persisted by the SDK in its SQLite. */
interface RunState {
  id: string;
  content_id: string;
  version: number;
  status: RunStatus;
  stages: StageRecord[];
  created_at: string;
  finished_at?: string;
  reason?: string;
}

interface ContentDoc {
  content_id: string;
  version: number;
  title: string;
  body: string;
  category: string | null;
  tags: string[];
  author: string | null;
}

/** Actorline's limits (src/config.rs). */
const LIMITS = { title: 300, body: 200 * 1024, tags: 20, tag: 40, category: 40, author: 200 };
const REQUEST_LIMIT = 256 * 1024;

/** Actorline's retry tuning (src/domain/retry.rs): base 100 ms, cap 30 s, 10 attempts; validate and analyze 3. */
const RETRY = { baseMs: 100, maxMs: 30_000, maxAttempts: 10 };
const maxAttempts = (s: StageName) => (s === "validate" || s === "analyze" ? 3 : RETRY.maxAttempts);
const ANALYZE_TIMEOUT_MS = 10_000;

class StageError extends Error {
  constructor(
    message: string,
    readonly cls: "transient" | "terminal" = "transient",
  ) {
    super(message);
  }
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const now = () => new Date().toISOString();
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

function errorResponse(e: unknown): Response {
  if (e instanceof ApiError) return json({ error: { code: e.code, message: e.message } }, e.status);
  console.error("internal error", e);
  return json({ error: { code: "internal", message: String(e instanceof Error ? e.message : e) } }, 500);
}

const invalid = (field: string, message: string) => new ApiError(422, "invalid_field", `${field}: ${message}`);

/** Actorline's `ContentDoc::validate` (src/domain/content.rs), same rules. */
function validateInput(raw: unknown): Omit<ContentDoc, "content_id" | "version"> {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw invalid("body", "expected a JSON object");
  const input = raw as Record<string, unknown>;
  for (const k of Object.keys(input)) {
    if (!["title", "body", "category", "tags", "author"].includes(k)) throw invalid("body", `unknown field \`${k}\``);
  }
  if (typeof input.title !== "string") throw invalid("title", "must be a string");
  if (typeof input.body !== "string") throw invalid("body", "must be a string");
  const title = input.title.trim();
  const n = [...title].length;
  if (n === 0 || n > LIMITS.title) throw invalid("title", `must be 1 to ${LIMITS.title} characters`);
  if (CONTROL_RE.test(title)) throw invalid("title", "must be a single line without control characters");
  const body = input.body;
  const bodyBytes = new TextEncoder().encode(body).length;
  if (bodyBytes === 0 || bodyBytes > LIMITS.body) throw invalid("body", `must be 1 byte to ${LIMITS.body} bytes of UTF-8`);
  if (body.trim() === "") throw invalid("body", "must contain text, not only whitespace");
  if (body.includes("\0")) throw invalid("body", "must not contain NUL characters");
  let category: string | null = null;
  if (input.category !== undefined && input.category !== null) {
    if (typeof input.category !== "string") throw invalid("category", "must be a string");
    const c = input.category.trim().toLowerCase();
    if (c !== "") {
      if ([...c].length > LIMITS.category || !/^[\p{L}\p{N}_\- ]+$/u.test(c)) {
        throw invalid("category", `must be up to ${LIMITS.category} letters, digits, spaces, '-' or '_'`);
      }
      category = c;
    }
  }
  const tags: string[] = [];
  if (input.tags !== undefined && input.tags !== null) {
    if (!Array.isArray(input.tags)) throw invalid("tags", "must be an array of strings");
    if (input.tags.length > LIMITS.tags) throw invalid("tags", `at most ${LIMITS.tags} tags`);
    for (const t of input.tags) {
      if (typeof t !== "string") throw invalid("tags", "must be an array of strings");
      const tt = t.trim();
      const len = [...tt].length;
      if (len === 0 || len > LIMITS.tag || CONTROL_RE.test(tt)) throw invalid("tags", `each tag must be 1 to ${LIMITS.tag} characters`);
      if (!tags.includes(tt)) tags.push(tt);
    }
  }
  let author: string | null = null;
  if (input.author !== undefined && input.author !== null) {
    if (typeof input.author !== "string") throw invalid("author", "must be a string");
    const a = input.author.trim();
    if ([...a].length > LIMITS.author || CONTROL_RE.test(a)) throw invalid("author", `must be up to ${LIMITS.author} characters`);
    author = a === "" ? null : a;
  }
  return { title, body, category, tags, author };
}

async function readJson(req: Request): Promise<unknown> {
  const ct = (req.headers.get("content-type") ?? "").toLowerCase();
  if (!ct.startsWith("application/json") && !ct.includes("+json")) {
    throw new ApiError(415, "unsupported_media_type", "expected Content-Type: application/json");
  }
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (declared > REQUEST_LIMIT) throw new ApiError(413, "payload_too_large", `request body over ${REQUEST_LIMIT} bytes`);
  const bytes = await req.arrayBuffer();
  if (bytes.byteLength > REQUEST_LIMIT) throw new ApiError(413, "payload_too_large", `request body over ${REQUEST_LIMIT} bytes`);
  if (bytes.byteLength === 0) throw new ApiError(400, "malformed_json", "malformed JSON: empty body");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "malformed_json", "malformed JSON: body is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, "malformed_json", `malformed JSON: ${(e as Error).message}`);
  }
}

// -------------------------------------------------------------- the Agents

/**
 * An Agent that owns one Actorline topic: an event log with a dense seq (from
 * 1) in its own SQLite table, each event stored and sent with `this.broadcast`
 * to every socket on the Agent in one synchronous step.
 */
abstract class TopicAgent<State = unknown> extends Agent<Env, State> {
  // The peer's sockets carry only Actorline-shaped frames: no SDK identity,
  // state-sync or MCP protocol frames (the journal is read over REST).
  static options = { sendIdentityOnConnect: false };

  /** The SQLite table of the event log. */
  protected abstract get table(): string;
  /** The topic named in frames. */
  protected abstract get topic(): string;

  shouldSendProtocolMessages(_c: Connection, _ctx: ConnectionContext): boolean {
    return false;
  }

  async onStart(): Promise<void> {
    this.ctx.storage.sql.exec(
      `CREATE TABLE IF NOT EXISTS ${this.table} (seq INTEGER PRIMARY KEY, event TEXT NOT NULL, data TEXT NOT NULL, ts TEXT NOT NULL)`,
    );
  }

  /** `?after=N` replays events with seq > N; then a `ready` frame with the latest seq. */
  async onConnect(conn: Connection, ctx: ConnectionContext): Promise<void> {
    const afterRaw = new URL(ctx.request.url).searchParams.get("after");
    if (afterRaw !== null) {
      const after = Number.parseInt(afterRaw, 10) || 0;
      for (const r of this.ctx.storage.sql.exec<{ seq: number; event: string; data: string; ts: string }>(
        `SELECT seq, event, data, ts FROM ${this.table} WHERE seq > ? ORDER BY seq`,
        after,
      )) {
        conn.send(frame(this.topic, r.seq, r.event, r.data, r.ts));
      }
    }
    conn.send(JSON.stringify({ type: "ready", topic: this.topic, seq: this.lastSeq() }));
  }

  async onMessage(conn: Connection, message: string | ArrayBuffer | ArrayBufferView): Promise<void> {
    if (typeof message === "string" && message.includes('"ping"')) conn.send(JSON.stringify({ type: "pong" }));
  }

  private lastSeq(): number {
    const r = [...this.ctx.storage.sql.exec<{ seq: number | null }>(`SELECT MAX(seq) AS seq FROM ${this.table}`)][0];
    return r?.seq ?? 0;
  }

  /** Appends one event (`data` is JSON text) and broadcasts it; returns its seq. */
  protected append(event: string, data: string): number {
    const ts = now();
    const seq = this.lastSeq() + 1;
    this.ctx.storage.sql.exec(`INSERT INTO ${this.table} (seq, event, data, ts) VALUES (?, ?, ?, ?)`, seq, event, data, ts);
    this.broadcast(frame(this.topic, seq, event, data, ts));
    return seq;
  }
}

/** The one feed Agent's name (`/agents/feed/main`). */
const FEED_NAME = "main";

type FeedEvent = "content.updated" | "content.indexed";

/** The content-level fields of a feed event (Actorline's `ContentState::event` data, plus run_id). */
interface FeedData {
  content_id: string;
  run_id: string;
  version: number;
  title: string;
  status?: string;
  category?: string | null;
  summary?: string | null;
  chunks?: number;
}

/** Actorline's `feed` topic (its FeedActor): one instance, every content-level event of every run. */
export class Feed extends TopicAgent {
  protected get table(): string {
    return "feed_events";
  }

  protected get topic(): string {
    return "feed";
  }

  /** RPC from a run Agent: numbers, stores and broadcasts one event; returns its seq. */
  async publish(event: FeedEvent, data: FeedData): Promise<number> {
    return this.append(event, JSON.stringify(data));
  }
}

/** One pipeline run. Its name is the run id (a server-made UUID). */
export class PipelineRun extends TopicAgent<RunState> {
  protected get table(): string {
    return "run_events";
  }

  protected get topic(): string {
    return `run:${this.name}`;
  }

  async onStart(): Promise<void> {
    await super.onStart();
    this.ctx.storage.sql.exec(
      `CREATE TABLE IF NOT EXISTS artifacts (k TEXT PRIMARY KEY, v TEXT, b BLOB);
       CREATE TABLE IF NOT EXISTS vectors (id TEXT PRIMARY KEY, content_id TEXT NOT NULL, version INTEGER NOT NULL,
         chunk INTEGER NOT NULL, category TEXT, v BLOB NOT NULL);
       CREATE INDEX IF NOT EXISTS vectors_by_content ON vectors (content_id, version);`,
    );
  }

  // ---------------------------------------------------------------- RPC

  /** Called once by the Worker: stores the document, queues `validate`. */
  async start(doc: ContentDoc): Promise<RunState> {
    if (this.state) return this.state; // idempotent
    const created = now();
    this.putText("doc", JSON.stringify(doc));
    this.setState({
      id: this.name,
      content_id: doc.content_id,
      version: doc.version,
      status: "queued",
      stages: STAGES.map((name) => ({ name, status: "pending", attempts: 0 })),
      created_at: created,
    });
    this.emit("run.queued", { version: doc.version });
    await this.schedule(0, "runStage", { stage: "validate" });
    // Actorline's ContentActor appends content.updated to the feed before it answers.
    await this.toFeed("content.updated", { version: doc.version, title: doc.title, status: "processing" });
    return this.state;
  }

  /** The run view (`GET /api/runs/{id}`), or null for an unknown run. */
  async view(): Promise<RunState | null> {
    return this.state ?? null;
  }

  async onRequest(req: Request): Promise<Response> {
    if (req.method !== "GET") return json({ error: { code: "method_not_allowed", message: "GET only" } }, 405);
    return this.state ? json(this.state) : json({ error: { code: "not_found", message: "no such run" } }, 404);
  }

  // ------------------------------------------------------------- stages

  /** The scheduled callback: exactly one stage attempt per invocation. */
  async runStage(payload: { stage: StageName }): Promise<void> {
    const state = this.state;
    if (!state || state.status === "completed" || state.status === "failed") return;
    const stage = payload.stage;
    const idx = STAGES.indexOf(stage);
    const current = state.stages.findIndex((s) => s.status !== "completed" && s.status !== "skipped");
    if (idx < 0 || idx !== current) return; // stale or duplicate schedule

    // Record the attempt before any work (an interrupted attempt still counts).
    const started = Date.now();
    const startedAt = new Date(started).toISOString();
    const rec0 = state.stages[idx];
    const attempt = rec0.attempts + 1;
    this.setState(
      this.withStage(state, idx, { ...rec0, status: "running", attempts: attempt, started_at: startedAt, next_at: undefined }, "running"),
    );
    this.emit("stage.started", { stage, attempt });

    let outcome: { ok: true; skipped?: string } | { ok: false; err: StageError };
    try {
      const skipped = await this.work(stage);
      outcome = { ok: true, skipped };
    } catch (e) {
      outcome = { ok: false, err: e instanceof StageError ? e : new StageError(String(e instanceof Error ? e.message : e)) };
    }

    const end = Date.now();
    const finishedAt = new Date(end).toISOString();
    const duration = end - started;
    const s = this.state;
    const rec = { ...s.stages[idx], finished_at: finishedAt, duration_ms: duration };
    let next: StageName | undefined;

    if (outcome.ok && outcome.skipped === undefined) {
      this.setState(this.withStage(s, idx, { ...rec, status: "completed", error: undefined }));
      this.emit("stage.completed", { stage, attempt, duration_ms: duration });
      next = STAGES[idx + 1];
    } else if (outcome.ok) {
      this.setState(this.withStage(s, idx, { ...rec, status: "skipped", reason: outcome.skipped }));
      this.emit("stage.skipped", { stage, attempts: attempt, reason: outcome.skipped });
      next = STAGES[idx + 1];
    } else {
      const err = outcome.err;
      const error = { class: err.cls, message: err.message };
      if (err.cls === "transient" && attempt < maxAttempts(stage)) {
        // Exponential backoff with full jitter, waited through the SDK's scheduler.
        const cap = Math.min(RETRY.maxMs, RETRY.baseMs * 2 ** (attempt - 1));
        const backoff = Math.max(1, Math.floor(Math.random() * cap));
        const nextAt = new Date(end + backoff).toISOString();
        this.setState(this.withStage(s, idx, { ...rec, status: "retrying", error, next_at: nextAt }));
        this.emit("stage.retrying", { stage, attempt, next_at: nextAt, backoff_ms: backoff, error: err.message, class: err.cls });
        await this.schedule(backoff / 1000, "runStage", { stage });
        return;
      }
      if (stage === "analyze") {
        const reason = `gave up after ${attempt} attempts: ${err.message}`;
        this.setState(this.withStage(s, idx, { ...rec, status: "skipped", error, reason }));
        this.emit("stage.skipped", { stage, attempts: attempt, reason, class: err.cls });
        next = STAGES[idx + 1];
      } else {
        const data = { stage, attempts: attempt, error: err.message, class: err.cls };
        const failed = this.withStage(s, idx, { ...rec, status: "failed", error });
        this.setState({ ...failed, status: "failed", finished_at: finishedAt, reason: `${stage} failed after ${attempt} attempts: ${err.message}` });
        this.emit("stage.failed", data);
        this.emit("run.failed", data);
        return;
      }
    }

    if (next) {
      await this.schedule(0, "runStage", { stage: next });
    } else {
      const done = this.state;
      this.setState({ ...done, status: "completed", finished_at: finishedAt });
      const skipped = done.stages.filter((r) => r.status === "skipped").map((r) => r.name);
      this.emit("run.completed", { duration_ms: end - Date.parse(done.created_at), skipped });
    }
  }

  /** The work of one stage; returns a reason when the stage is skipped. */
  private async work(stage: StageName): Promise<string | undefined> {
    const doc = JSON.parse(this.getText("doc")) as ContentDoc;
    switch (stage) {
      case "validate": {
        validateInput({ title: doc.title, body: doc.body, category: doc.category, tags: doc.tags, author: doc.author });
        if (nlp.word_count(doc.body) === 0) throw new StageError("body has no words to index", "terminal");
        return;
      }
      case "chunk": {
        const chunks = nlp.chunk(doc.body);
        if (chunks === "[]") throw new StageError("body produced no chunks", "terminal");
        this.putText("chunks", chunks);
        return;
      }
      case "embed": {
        const chunks = JSON.parse(this.getText("chunks")) as string[];
        const dim = nlp.embed_dim();
        const flat = new Float32Array(chunks.length * dim);
        chunks.forEach((c, i) => {
          const v = nlp.embed(c);
          if (v.length !== dim) throw new StageError("embedder returned vectors of mixed dimensions");
          flat.set(v, i * dim);
        });
        this.putText("dim", JSON.stringify(dim));
        this.ctx.storage.sql.exec("INSERT OR REPLACE INTO artifacts (k, b) VALUES ('vectors', ?)", flat.buffer);
        return;
      }
      case "index": {
        const dim = JSON.parse(this.getText("dim")) as number;
        const row = [...this.ctx.storage.sql.exec<{ b: ArrayBuffer }>("SELECT b FROM artifacts WHERE k = 'vectors'")][0];
        if (!row?.b || row.b.byteLength % (4 * dim) !== 0) throw new StageError("vectors blob is corrupt", "terminal");
        const n = row.b.byteLength / (4 * dim);
        // Deterministic ids, as Actorline: a retried index overwrites, never duplicates.
        for (let i = 0; i < n; i++) {
          this.ctx.storage.sql.exec(
            "INSERT OR REPLACE INTO vectors (id, content_id, version, chunk, category, v) VALUES (?, ?, ?, ?, ?, ?)",
            `${doc.content_id}:${doc.version}:${i}`,
            doc.content_id,
            doc.version,
            i,
            doc.category,
            row.b.slice(i * 4 * dim, (i + 1) * 4 * dim),
          );
        }
        this.ctx.storage.sql.exec("DELETE FROM vectors WHERE content_id = ? AND version != ?", doc.content_id, doc.version);
        return;
      }
      case "summarize": {
        this.putText("summary", JSON.stringify(nlp.summarize(doc.body)));
        return;
      }
      case "extract": {
        this.putText("extraction", nlp.extract(`${doc.title}.\n${doc.body}`));
        return;
      }
      case "analyze": {
        const base = (this.env.ANALYZER_URL ?? "").trim().replace(/\/+$/, "");
        if (!base) return "no analyzer configured (ANALYZER_URL is unset)";
        let res: Response;
        try {
          res = await fetch(`${base}/analyze`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ id: doc.content_id, version: doc.version, title: doc.title, text: doc.body }),
            signal: AbortSignal.timeout(ANALYZE_TIMEOUT_MS),
          });
        } catch (e) {
          throw new StageError(`analyzer unreachable: ${(e as Error).message}`);
        }
        const text = await res.text();
        if (!res.ok) throw new StageError(`analyzer answered ${res.status}`, res.status >= 500 || res.status === 429 ? "transient" : "terminal");
        try {
          JSON.parse(text);
        } catch {
          throw new StageError("analyzer answered non-JSON");
        }
        this.putText("analysis", text);
        return;
      }
      case "publish": {
        const chunks = JSON.parse(this.getText("chunks")) as string[];
        const summary = this.getTextOpt("summary");
        const extraction = this.getTextOpt("extraction");
        const x = extraction ? (JSON.parse(extraction) as { keywords: unknown; entities: unknown; sentiment: unknown }) : null;
        const ts = Date.now();
        try {
          await this.env.DB.prepare(
            `INSERT INTO content (id, version, title, category, tags, author, status, summary, keywords, entities,
               sentiment, analysis, chunks, run_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'indexed', ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, title = excluded.title, category = excluded.category,
               tags = excluded.tags, author = excluded.author, status = excluded.status, summary = excluded.summary,
               keywords = excluded.keywords, entities = excluded.entities, sentiment = excluded.sentiment,
               analysis = excluded.analysis, chunks = excluded.chunks, run_id = excluded.run_id, updated_at = excluded.updated_at
             WHERE excluded.version >= content.version`,
          )
            .bind(
              doc.content_id,
              doc.version,
              doc.title,
              doc.category,
              JSON.stringify(doc.tags),
              doc.author,
              summary === null ? null : (JSON.parse(summary) as string),
              x ? JSON.stringify(x.keywords) : null,
              x ? JSON.stringify(x.entities) : null,
              x ? JSON.stringify(x.sentiment) : null,
              this.getTextOpt("analysis"),
              chunks.length,
              this.name,
              ts,
            )
            .run();
        } catch (e) {
          throw new StageError(`D1: ${(e as Error).message}`);
        }
        await this.toFeed("content.indexed", {
          version: doc.version,
          title: doc.title,
          category: doc.category,
          summary: summary === null ? null : (JSON.parse(summary) as string),
          chunks: chunks.length,
        });
        return;
      }
    }
  }

  // ------------------------------------------------------------ helpers

  private withStage(s: RunState, idx: number, rec: StageRecord, status?: RunStatus): RunState {
    const stages = s.stages.slice();
    stages[idx] = rec;
    return { ...s, stages, status: status ?? s.status };
  }

  /** Appends to the run's event log and broadcasts it. */
  private emit(event: string, data: Record<string, unknown>): void {
    const s = this.state;
    this.append(event, JSON.stringify({ ...data, run_id: s.id, content_id: s.content_id }));
  }

  /**
   * Hands a content-level event to the Feed Agent by RPC. Best-effort, as
   * Actorline's feed append: a failure is logged, never fails the run.
   */
  private async toFeed(event: FeedEvent, data: Omit<FeedData, "content_id" | "run_id">): Promise<void> {
    const s = this.state;
    try {
      const feed = await getAgentByName<Env, Feed>(this.env.Feed, FEED_NAME);
      await feed.publish(event, { content_id: s.content_id, run_id: s.id, ...data });
    } catch (e) {
      console.error("feed append failed", e);
    }
  }

  private putText(k: string, v: string): void {
    this.ctx.storage.sql.exec("INSERT OR REPLACE INTO artifacts (k, v) VALUES (?, ?)", k, v);
  }

  private getTextOpt(k: string): string | null {
    const r = [...this.ctx.storage.sql.exec<{ v: string | null }>("SELECT v FROM artifacts WHERE k = ?", k)][0];
    return r?.v ?? null;
  }

  private getText(k: string): string {
    const v = this.getTextOpt(k);
    if (v === null) throw new StageError(`missing artifact ${k}`, "terminal");
    return v;
  }
}

/** One Actorline event frame; `data` is already JSON text. */
function frame(topic: string, seq: number, event: string, data: string, ts: string): string {
  return `{"type":"event","topic":${JSON.stringify(topic)},"seq":${seq},"event":${JSON.stringify(event)},"data":${data},"ts":${JSON.stringify(ts)}}`;
}

// ---------------------------------------------------------------- the Worker

async function createContent(req: Request, env: Env): Promise<Response> {
  const input = validateInput(await readJson(req));
  const content_id = crypto.randomUUID();
  const run_id = crypto.randomUUID();
  const run = await getAgentByName<Env, PipelineRun>(env.PipelineRun, run_id);
  await run.start({ content_id, version: 1, ...input });
  return json(
    { content_id, version: 1, run_id, links: { content: `/api/content/${content_id}`, run: `/api/runs/${run_id}` } },
    202,
    { location: `/api/content/${content_id}` },
  );
}

async function getRun(id: string, env: Env): Promise<Response> {
  if (!UUID_RE.test(id)) throw new ApiError(400, "bad_request", "run id must be a UUID");
  const run = await getAgentByName<Env, PipelineRun>(env.PipelineRun, id.toLowerCase());
  const view = await run.view();
  if (!view) throw new ApiError(404, "not_found", `no run ${id}`);
  return json(view);
}

async function getContent(id: string, env: Env): Promise<Response> {
  if (!UUID_RE.test(id)) throw new ApiError(400, "bad_request", "content id must be a UUID");
  const row = await env.DB.prepare("SELECT * FROM content WHERE id = ?").bind(id.toLowerCase()).first<Record<string, unknown>>();
  if (!row) throw new ApiError(404, "not_found", `no published content ${id}`);
  const parse = (v: unknown) => (typeof v === "string" ? JSON.parse(v) : undefined);
  return json({
    id: row.id,
    version: row.version,
    title: row.title,
    category: row.category,
    tags: parse(row.tags) ?? [],
    author: row.author ?? undefined,
    status: row.status,
    summary: row.summary ?? undefined,
    keywords: parse(row.keywords),
    entities: parse(row.entities),
    sentiment: parse(row.sentiment),
    analysis: parse(row.analysis),
    chunks: row.chunks,
    runs: [row.run_id],
    created_at: new Date(row.created_at as number).toISOString(),
    updated_at: new Date(row.updated_at as number).toISOString(),
  });
}

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    try {
      if (path.startsWith("/agents/")) {
        return (await routeAgentRequest(req, env)) ?? json({ error: { code: "not_found", message: "no such agent" } }, 404);
      }
      if (path === "/healthz") {
        return json({ status: "ok", peer: "agents-sdk", backends: { ai: "local-wasm", vectors: "agent-sqlite", analyzer: env.ANALYZER_URL ? "url" : "none" } });
      }
      if (path === "/api/content") {
        if (req.method !== "POST") throw new ApiError(405, "method_not_allowed", "POST only");
        return await createContent(req, env);
      }
      let m = /^\/api\/runs\/([^/]+)$/.exec(path);
      if (m) {
        if (req.method !== "GET") throw new ApiError(405, "method_not_allowed", "GET only");
        return await getRun(decodeURIComponent(m[1]), env);
      }
      m = /^\/api\/content\/([^/]+)$/.exec(path);
      if (m) {
        if (req.method !== "GET") throw new ApiError(405, "method_not_allowed", "GET only");
        return await getContent(decodeURIComponent(m[1]), env);
      }
      throw new ApiError(404, "not_found", `no route for ${path}`);
    } catch (e) {
      return errorResponse(e);
    }
  },
} satisfies ExportedHandler<Env>;
