// Actorline wire protocol, client side: the one place the web client names
// stages, events, topics, frame types and API paths. It mirrors
// src/protocol.rs (the single source of truth): the stage list comes from
// web/stages.js, generated from it, and tests/web_protocol.rs checks that
// every event name there appears here.

import { STAGES } from './stages.js';

/** Pipeline stages in order (contract: stage names), generated from src/protocol.rs. */
export { STAGES };

/** Event names (contract). */
export const EVENTS = Object.freeze({
  RUN_QUEUED: 'run.queued',
  STAGE_STARTED: 'stage.started',
  STAGE_COMPLETED: 'stage.completed',
  STAGE_RETRYING: 'stage.retrying',
  STAGE_SKIPPED: 'stage.skipped',
  STAGE_FAILED: 'stage.failed',
  RUN_COMPLETED: 'run.completed',
  RUN_FAILED: 'run.failed',
  RUN_CANCELLED: 'run.cancelled',
  CONTENT_UPDATED: 'content.updated',
  CONTENT_INDEXED: 'content.indexed',
  CONTENT_DELETED: 'content.deleted',
  ANSWER_RETRIEVED: 'answer.retrieved',
  ANSWER_DELTA: 'answer.delta',
  ANSWER_COMPLETED: 'answer.completed',
  ANSWER_FAILED: 'answer.failed',
  BATCH_PROGRESS: 'batch.progress',
  BATCH_COMPLETED: 'batch.completed',
});

export const EVENT_NAMES = Object.freeze(Object.values(EVENTS));

/** Client-to-server frame types. */
export const CLIENT_FRAMES = Object.freeze({
  SUBSCRIBE: 'subscribe',
  UNSUBSCRIBE: 'unsubscribe',
  PING: 'ping',
});

/** Server-to-client frame types. */
export const SERVER_FRAMES = Object.freeze({
  SUBSCRIBED: 'subscribed',
  EVENT: 'event',
  READY: 'ready',
  RESYNC_REQUIRED: 'resync_required',
  UNSUBSCRIBED: 'unsubscribed',
  PONG: 'pong',
  ERROR: 'error',
});

export const RUN_STATUSES = Object.freeze(['queued', 'running', 'completed', 'failed', 'cancelled']);
export const TERMINAL_RUN_STATUSES = Object.freeze(['completed', 'failed', 'cancelled']);
export const STAGE_STATUSES = Object.freeze(['pending', 'running', 'retrying', 'completed', 'skipped', 'failed']);
export const CONTENT_STATUSES = Object.freeze(['processing', 'indexed', 'failed']);
/**
 * Error codes that refuse a subscribe for now, not for good (a 5xx or 429:
 * the topic's actor or the catalog failed, or the socket sent too much): the
 * client asks again, with backoff, on the same socket. tests/web_protocol.rs
 * checks them against the server's codes.
 */
export const RETRYABLE_CODES = Object.freeze(['internal', 'unavailable', 'rate_limited', 'circuit_open']);
export const ACTOR_KINDS = Object.freeze(['content', 'run', 'session', 'answer', 'batch']);
/** WebSocket close codes the server sends (src/protocol.rs `close_code`). */
export const CLOSE_CODES = Object.freeze({ NORMAL: 1000, UNSUPPORTED: 1003, RATE_LIMITED: 1008, SERVER_ERROR: 1011, RESUME: 1012, TOKEN_ENDED: 4001 });
export const ANSWER_STATUSES = Object.freeze(['generating', 'completed', 'failed']);
export const TERMINAL_ANSWER_STATUSES = Object.freeze(['completed', 'failed']);

/**
 * Topic builders: `run:<id>`, `content:<id>`, `answer:<id>`, `batch:<id>`, `feed`.
 * Ids are lower-cased: the server names a topic in its frames with the UUID
 * as it prints it, and frames are matched to subscriptions by that name, so
 * a pasted upper-case id must not leave a view waiting for frames forever.
 */
const named = (kind) => (id) => `${kind}:${String(id).toLowerCase()}`;
export const topics = Object.freeze({
  run: named('run'),
  content: named('content'),
  answer: named('answer'),
  batch: named('batch'),
  feed: () => 'feed',
});

/** Frame builders for what the client sends. */
export const frames = Object.freeze({
  subscribe(topic, after) {
    const f = { type: CLIENT_FRAMES.SUBSCRIBE, topic };
    if (after !== undefined && after !== null) f.after = after;
    return f;
  },
  unsubscribe: (topic) => ({ type: CLIENT_FRAMES.UNSUBSCRIBE, topic }),
  ping: () => ({ type: CLIENT_FRAMES.PING }),
});

const enc = encodeURIComponent;

/** REST paths (contract). */
export const api = Object.freeze({
  content: () => '/api/content',
  contentItem: (id) => `/api/content/${enc(id)}`,
  contentSource: (id, version) => `/api/content/${enc(id)}/source${version ? `?version=${enc(version)}` : ''}`,
  uploads: () => '/api/uploads',
  run: (id) => `/api/runs/${enc(id)}`,
  runCancel: (id) => `/api/runs/${enc(id)}/cancel`,
  runRetry: (id) => `/api/runs/${enc(id)}/retry`,
  search: () => '/api/search',
  sessions: () => '/api/sessions',
  sessionSocket: (id, token) => `/api/sessions/${enc(id)}/ws?token=${enc(token)}`,
  /** The feed actor's own socket, opened with a session's token (reads as its principal). */
  feedSocket: (id, token) => `/api/topics/feed/ws?session=${enc(id)}&token=${enc(token)}`,
  adminActors: () => '/admin/actors',
  adminActor: (kind, id) => `/admin/actors/${enc(kind)}/${enc(id)}`,
  adminAlarm: (kind, id) => `/admin/actors/${enc(kind)}/${enc(id)}/alarm`,
  deadLetters: () => '/admin/dead-letters',
  metrics: () => '/admin/metrics',
  health: () => '/healthz',
  me: () => '/api/me',
  answers: () => '/api/answers',
  answer: (id) => `/api/answers/${enc(id)}`,
  contentBatch: () => '/api/content/batch',
  batch: (id) => `/api/batches/${enc(id)}`,
  topicEvents: (topic, after) => `/api/topics/${enc(topic)}/events${after ? `?after=${enc(after)}` : ''}`,
});

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s) => typeof s === 'string' && UUID_RE.test(s);

// ------------------------------------------------------------------ run state

/** A blank run view for `id`, used until the journal arrives. */
export function emptyRun(id) {
  return {
    id,
    content_id: null,
    version: null,
    status: 'queued',
    stages: STAGES.map((name) => ({ name, status: 'pending', attempts: 0 })),
    created_at: null,
  };
}

function stageOf(run, name) {
  let st = run.stages.find((s) => s.name === name);
  if (!st && STAGES.includes(name)) {
    st = { name, status: 'pending', attempts: 0 };
    run.stages.push(st);
    run.stages.sort((a, b) => STAGES.indexOf(a.name) - STAGES.indexOf(b.name));
  }
  return st;
}

/**
 * Applies one run-topic event to a run view (mutating it), the same way the
 * run actor changed its journal. Applying the log in seq order over any earlier
 * journal yields the current journal's statuses, attempts and errors.
 */
export function applyRunEvent(run, ev) {
  const d = ev.data || {};
  if (d.content_id && !run.content_id) run.content_id = d.content_id;
  if (d.run_id && !run.id) run.id = d.run_id;
  const st = d.stage ? stageOf(run, d.stage) : null;
  switch (ev.event) {
    case EVENTS.RUN_QUEUED:
      run.status = 'queued';
      if (d.version !== undefined) run.version = d.version;
      if (!run.created_at) run.created_at = ev.ts;
      if (d.retry) {
        run.finished_at = undefined;
        run.reason = undefined;
        for (const s of run.stages) {
          if (s.status !== 'completed' && s.status !== 'skipped') {
            s.status = 'pending';
            s.attempts = 0;
            s.next_at = undefined;
            s.finished_at = undefined;
          }
        }
      }
      break;
    case EVENTS.STAGE_STARTED:
      if (!st) break;
      run.status = 'running';
      st.status = 'running';
      st.attempts = d.attempt ?? st.attempts + 1;
      st.started_at = ev.ts;
      st.next_at = undefined;
      st.finished_at = undefined;
      st.duration_ms = undefined;
      break;
    case EVENTS.STAGE_COMPLETED:
      if (!st) break;
      st.status = 'completed';
      if (d.attempt !== undefined) st.attempts = d.attempt;
      st.duration_ms = d.duration_ms;
      st.finished_at = ev.ts;
      st.error = undefined;
      st.next_at = undefined;
      break;
    case EVENTS.STAGE_RETRYING:
      if (!st) break;
      st.status = 'retrying';
      if (d.attempt !== undefined) st.attempts = d.attempt;
      st.next_at = d.next_at;
      st.error = { class: d.class || 'transient', message: d.error || '' };
      st.duration_ms = undefined;
      break;
    case EVENTS.STAGE_SKIPPED:
      if (!st) break;
      st.status = 'skipped';
      if (d.attempts !== undefined) st.attempts = d.attempts;
      st.reason = d.reason;
      st.finished_at = ev.ts;
      st.next_at = undefined;
      break;
    case EVENTS.STAGE_FAILED:
      if (!st) break;
      st.status = 'failed';
      if (d.attempts !== undefined) st.attempts = d.attempts;
      st.error = { class: d.class || 'terminal', message: d.error || '' };
      st.finished_at = ev.ts;
      st.next_at = undefined;
      break;
    case EVENTS.RUN_COMPLETED:
      run.status = 'completed';
      run.finished_at = ev.ts;
      if (d.duration_ms !== undefined) run.duration_ms = d.duration_ms;
      break;
    case EVENTS.RUN_FAILED:
      run.status = 'failed';
      run.finished_at = ev.ts;
      if (d.stage) run.reason = `${d.stage} failed after ${d.attempts} attempts: ${d.error}`;
      break;
    case EVENTS.RUN_CANCELLED:
      run.status = 'cancelled';
      run.finished_at = ev.ts;
      run.reason = d.reason;
      for (const s of run.stages) {
        if (s.status === 'running' || s.status === 'retrying') {
          s.status = 'pending';
          s.next_at = undefined;
        }
      }
      break;
    default:
      break;
  }
  return run;
}

// ------------------------------------------------------------- search helpers

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: false });

/**
 * Splits a snippet into `[{text, mark}]` segments from `highlights`, which are
 * byte ranges into the snippet's UTF-8 encoding (the server is Rust). JS
 * strings are UTF-16, so offsets are mapped through the UTF-8 bytes. Ranges
 * that are out of order, overlapping or out of bounds are ignored.
 */
export function highlightSegments(snippet, highlights) {
  const text = String(snippet ?? '');
  if (!Array.isArray(highlights) || highlights.length === 0) return [{ text, mark: false }];
  const bytes = utf8.encode(text);
  const out = [];
  let pos = 0;
  for (const r of highlights) {
    const [a, b] = Array.isArray(r) ? r : [r?.start, r?.end];
    if (!Number.isInteger(a) || !Number.isInteger(b) || a < pos || b <= a || b > bytes.length) continue;
    if (a > pos) out.push({ text: fromUtf8.decode(bytes.subarray(pos, a)), mark: false });
    out.push({ text: fromUtf8.decode(bytes.subarray(a, b)), mark: true });
    pos = b;
  }
  if (pos < bytes.length) out.push({ text: fromUtf8.decode(bytes.subarray(pos)), mark: false });
  return out;
}

/** Client-side fallback: marks whole-word, case-insensitive query terms. */
export function termSegments(text, query) {
  const s = String(text ?? '');
  const terms = String(query ?? '')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((t) => t.length > 1);
  if (terms.length === 0) return [{ text: s, mark: false }];
  const esc = terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(${esc.join('|')})(?![\\p{L}\\p{N}])`, 'giu');
  const out = [];
  let last = 0;
  for (const m of s.matchAll(re)) {
    if (m.index > last) out.push({ text: s.slice(last, m.index), mark: false });
    out.push({ text: m[0], mark: true });
    last = m.index + m[0].length;
  }
  if (last < s.length) out.push({ text: s.slice(last), mark: false });
  return out;
}
