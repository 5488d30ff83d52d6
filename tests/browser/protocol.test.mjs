// Plain-node checks of the client's pure helpers (no browser, no server):
// byte-range highlighting, run-event application and reconnect backoff.

import { mock, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  applyRunEvent, emptyRun, EVENT_NAMES, EVENTS, frames, highlightSegments, STAGES, termSegments, topics,
} from '../../web/protocol.js';
import { backoffMs, Live } from '../../web/live.js';
import { applyAnswerEvent } from '../../web/views/ask.js';

test('protocol.js names the contract', () => {
  // The names themselves are generated from src/protocol.rs (web/stages.js).
  assert.ok(Object.isFrozen(STAGES) && STAGES.length > 0);
  assert.equal(EVENT_NAMES.length, 18);
  assert.equal(topics.run('x'), 'run:x');
  assert.equal(topics.content('y'), 'content:y');
  assert.equal(topics.answer('z'), 'answer:z');
  assert.equal(topics.batch('b'), 'batch:b');
  assert.equal(topics.feed(), 'feed');
  // The server's spelling of a UUID, which its frames name the topic by.
  assert.equal(topics.run('0F3A6B2C-0000-4000-8000-00000000ABCD'), 'run:0f3a6b2c-0000-4000-8000-00000000abcd');
  assert.deepEqual(frames.subscribe('feed'), { type: 'subscribe', topic: 'feed' });
  assert.deepEqual(frames.subscribe('run:x', 0), { type: 'subscribe', topic: 'run:x', after: 0 });
});

test('highlights are UTF-8 byte ranges, mapped onto UTF-16 strings', () => {
  // "…" is 3 bytes in UTF-8 and one UTF-16 unit; "é" 2 bytes; "😀" 4 bytes and two units.
  const snippet = '…café 😀 harbor lanterns';
  const enc = new TextEncoder().encode(snippet);
  const start = enc.indexOf('h'.charCodeAt(0));
  const segs = highlightSegments(snippet, [[3, 8], [start, start + 6]]);
  assert.deepEqual(segs.filter((s) => s.mark).map((s) => s.text), ['café', 'harbor']);
  assert.equal(segs.map((s) => s.text).join(''), snippet);
  // Bad ranges are ignored rather than corrupting the text.
  const bad = highlightSegments('abc', [[2, 1], [0, 99], [1, 2]]);
  assert.deepEqual(bad, [{ text: 'a', mark: false }, { text: 'b', mark: true }, { text: 'c', mark: false }]);
  assert.deepEqual(highlightSegments('plain', []), [{ text: 'plain', mark: false }]);
});

test('client-side term highlighting is whole-word and case-insensitive', () => {
  const segs = termSegments('Harbor harbors HARBOR', 'harbor');
  assert.deepEqual(segs.filter((s) => s.mark).map((s) => s.text), ['Harbor', 'HARBOR']);
});

test('applying the log in order rebuilds the journal, including retries', () => {
  const run = emptyRun('r');
  const evs = [
    [EVENTS.RUN_QUEUED, { version: 1 }],
    [EVENTS.STAGE_STARTED, { stage: 'validate', attempt: 1 }],
    [EVENTS.STAGE_COMPLETED, { stage: 'validate', attempt: 1, duration_ms: 5 }],
    [EVENTS.STAGE_STARTED, { stage: 'chunk', attempt: 1 }],
    [EVENTS.STAGE_RETRYING, { stage: 'chunk', attempt: 1, next_at: '2030-01-01T00:00:01Z', error: 'boom', class: 'transient' }],
  ];
  evs.forEach(([event, data], i) => applyRunEvent(run, { seq: i + 1, event, data, ts: '2030-01-01T00:00:00Z' }));
  assert.equal(run.status, 'running');
  assert.equal(run.stages[0].status, 'completed');
  assert.equal(run.stages[1].status, 'retrying');
  assert.equal(run.stages[1].next_at, '2030-01-01T00:00:01Z');
  assert.equal(run.stages[1].error.message, 'boom');
  applyRunEvent(run, { seq: 6, event: EVENTS.STAGE_STARTED, data: { stage: 'chunk', attempt: 2 }, ts: 't' });
  applyRunEvent(run, { seq: 7, event: EVENTS.STAGE_COMPLETED, data: { stage: 'chunk', attempt: 2, duration_ms: 3 }, ts: 't' });
  assert.equal(run.stages[1].status, 'completed');
  assert.equal(run.stages[1].attempts, 2);
  assert.equal(run.stages[1].error, undefined);
  applyRunEvent(run, { seq: 8, event: EVENTS.RUN_CANCELLED, data: { reason: 'operator' }, ts: 't' });
  assert.equal(run.status, 'cancelled');
  applyRunEvent(run, { seq: 9, event: EVENTS.RUN_QUEUED, data: { version: 1, retry: true }, ts: 't' });
  assert.equal(run.status, 'queued');
  assert.equal(run.stages[1].status, 'completed', 'completed stages survive an operator retry');
  assert.equal(run.stages[2].attempts, 0);
});

test('reconnect backoff grows, is capped and jittered', () => {
  assert.equal(backoffMs(0, () => 0), 250);
  assert.equal(backoffMs(0, () => 1), 500);
  assert.equal(backoffMs(3, () => 1), 4000);
  assert.equal(backoffMs(30, () => 1), 15000);
  assert.ok(backoffMs(30, () => 0) >= 7500);
});

test('answer events rebuild the answer: deltas in seq order, then the completion', () => {
  const a = { text: '', sources: [], citations: [], status: 'generating', error: null };
  const log = [
    { seq: 1, event: EVENTS.ANSWER_RETRIEVED, data: { sources: [{ n: 1, content_id: 'c1', title: 'T' }] } },
    { seq: 2, event: EVENTS.ANSWER_DELTA, data: { index: 0, text: 'First. [1]' } },
    { seq: 3, event: EVENTS.ANSWER_DELTA, data: { index: 1, text: ' Second. [1]' } },
    { seq: 4, event: EVENTS.ANSWER_COMPLETED, data: { text: 'First. [1] Second. [1]', citations: [{ n: 1, content_id: 'c1', title: 'T', snippet: 's' }] } },
  ];
  for (const f of log.slice(0, 3)) applyAnswerEvent(a, f);
  assert.equal(a.text, 'First. [1] Second. [1]');
  assert.equal(a.status, 'generating');
  applyAnswerEvent(a, log[3]);
  assert.equal(a.status, 'completed');
  assert.equal(a.citations.length, 1);
  const failed = { text: '', sources: [], citations: [], status: 'generating', error: null };
  applyAnswerEvent(failed, { seq: 2, event: EVENTS.ANSWER_FAILED, data: { error: 'boom' } });
  assert.equal(failed.status, 'failed');
  assert.equal(failed.error, 'boom');
});

test('every pattern in the OpenAPI document is an ECMA-262 regex, with and without the u flag', async () => {
  const { readFile } = await import('node:fs/promises');
  const doc = JSON.parse(await readFile(new URL('../../src/api/openapi.json', import.meta.url), 'utf8'));
  const patterns = [];
  (function walk(v) {
    if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) (k === 'pattern' ? patterns.push(x) : walk(x));
    }
  })(doc);
  assert.ok(patterns.length >= 10, `${patterns.length} patterns`);
  for (const p of patterns) {
    new RegExp(p);
    new RegExp(p, 'u');
  }
});

/** A Live with an open socket stand-in and `topics` subscribed, fed frames by hand. */
function liveWith(topics, errors = []) {
  globalThis.WebSocket ??= { OPEN: 1 };
  const live = new Live({ sessions: {} });
  const sent = [];
  live.ws = { readyState: WebSocket.OPEN, send: (d) => sent.push(JSON.parse(d)) };
  live.state = 'resyncing';
  for (const topic of topics) {
    live.subs.set(topic, {
      topic, lastSeq: null, subscribedSeq: null, ready: false, applied: [], handlers: { onError: (e) => errors.push(e) },
    });
  }
  const frame = (f) => live.onMessage({ data: JSON.stringify(f) });
  return { live, frame, sent };
}

test('a refused subscribe settles: its error names the topic, and the connection stops waiting for it', () => {
  const errors = [];
  const { live, frame } = liveWith(['run:a', 'run:b'], errors);
  frame({ type: 'subscribed', topic: 'run:a', seq: 3 });
  frame({ type: 'ready', topic: 'run:a' });
  assert.equal(live.state, 'resyncing');
  // The message does not name the topic; the frame's `topic` does.
  frame({ type: 'error', code: 'too_many_followers', message: "this principal's sessions follow this topic at most 16 times", topic: 'run:b' });
  assert.equal(live.state, 'live');
  assert.deepEqual(errors.map((e) => [e.code, e.topic]), [['too_many_followers', 'run:b']]);
  // An error of the socket itself (no topic) settles nothing.
  const other = liveWith(['run:c']);
  other.frame({ type: 'error', code: 'rate_limited', message: 'too many frames; slow down' });
  assert.equal(other.live.state, 'resyncing');
});

test('a subscribe refused for now is asked for again from its cursor; one refused for good settles', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const errors = [];
    const { live, frame, sent } = liveWith(['answer:a', 'run:b'], errors);
    live.subs.get('answer:a').lastSeq = 4;
    // The topic's actor failed (a D1 hiccup during the replay check): not the view's end.
    frame({ type: 'error', code: 'internal', message: 'internal error', topic: 'answer:a' });
    assert.deepEqual(errors, [], 'a view is not told a retryable refusal');
    assert.equal(live.subs.get('answer:a').ready, false);
    assert.equal(live.state, 'resyncing');
    mock.timers.tick(60_000);
    assert.deepEqual(sent, [{ type: 'subscribe', topic: 'answer:a', after: 4 }]);
    // Refused again: asked again, later.
    frame({ type: 'error', code: 'unavailable', message: 'busy', topic: 'answer:a' });
    mock.timers.tick(60_000);
    assert.equal(sent.length, 2);
    frame({ type: 'subscribed', topic: 'answer:a', seq: 9 });
    frame({ type: 'ready', topic: 'answer:a' });
    assert.equal(live.subs.get('answer:a').retries, 0);
    // Subscribed again (a view reopened), then refused for now again and
    // again: after a few tries the view is told.
    live.sendSubscribe(live.subs.get('answer:a'));
    for (let i = 0; i < 6; i += 1) {
      frame({ type: 'error', code: 'internal', message: 'internal error', topic: 'answer:a' });
      mock.timers.tick(60_000);
    }
    assert.equal(sent.length, 9, 'six more tries');
    frame({ type: 'error', code: 'internal', message: 'internal error', topic: 'answer:a' });
    mock.timers.tick(60_000);
    assert.equal(sent.length, 9);
    assert.deepEqual(errors.map((e) => e.code), ['internal']);
    assert.equal(live.subs.get('answer:a').ready, true);
    errors.length = 0;
    // A refusal for good settles at once and is not asked again.
    frame({ type: 'error', code: 'unknown_topic', message: 'topic run:b not found', topic: 'run:b' });
    mock.timers.tick(60_000);
    assert.equal(sent.length, 9);
    assert.deepEqual(errors.map((e) => e.code), ['unknown_topic']);
    assert.equal(live.state, 'live');
  } finally {
    mock.timers.reset();
  }
});

test('a subscribe the server went silent on before `ready` is asked again from the cursor', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { live, frame, sent } = liveWith([]);
    live.subscribe('run:s', { after: 0 });
    assert.deepEqual(sent, [{ type: 'subscribe', topic: 'run:s', after: 0 }]);
    // The session actor was reset mid-subscribe: a later push arrives as
    // events with no `subscribed`, which are dropped (the cursor stays).
    frame({ type: 'event', topic: 'run:s', seq: 1, event: EVENTS.RUN_QUEUED, data: {}, ts: '' });
    assert.equal(live.subs.get('run:s').lastSeq, 0);
    mock.timers.tick(29_000);
    assert.equal(sent.length, 1, 'not yet');
    mock.timers.tick(1_000);
    assert.deepEqual(sent.at(-1), { type: 'subscribe', topic: 'run:s', after: 0 });
    assert.equal(live.stats.stalls, 1);
    // Answered this time, then cut off mid-replay: asked again from what it applied.
    frame({ type: 'subscribed', topic: 'run:s', seq: 3 });
    frame({ type: 'event', topic: 'run:s', seq: 1, event: EVENTS.RUN_QUEUED, data: {}, ts: '' });
    mock.timers.tick(20_000);
    frame({ type: 'event', topic: 'run:s', seq: 2, event: EVENTS.STAGE_STARTED, data: {}, ts: '' });
    mock.timers.tick(20_000);
    assert.equal(sent.length, 2, 'each frame restarts the wait');
    mock.timers.tick(10_000);
    assert.deepEqual(sent.at(-1), { type: 'subscribe', topic: 'run:s', after: 2 });
    frame({ type: 'subscribed', topic: 'run:s', seq: 3 });
    frame({ type: 'event', topic: 'run:s', seq: 3, event: EVENTS.STAGE_COMPLETED, data: {}, ts: '' });
    frame({ type: 'ready', topic: 'run:s' });
    // Ready: a quiet topic is not asked again.
    mock.timers.tick(120_000);
    assert.equal(sent.length, 3);
    assert.deepEqual(live.applied('run:s'), [1, 2, 3]);
  } finally {
    mock.timers.reset();
  }
});

test('a resync never moves the cursor back', () => {
  const { live, frame } = liveWith(['run:a']);
  frame({ type: 'subscribed', topic: 'run:a', seq: 5 });
  for (let seq = 6; seq <= 10; seq += 1) frame({ type: 'event', topic: 'run:a', seq, event: EVENTS.STAGE_STARTED, data: {}, ts: '' });
  frame({ type: 'ready', topic: 'run:a' });
  // Mid-stream (a poll found the log trimmed): the server goes on from later still.
  frame({ type: 'resync_required', topic: 'run:a', snapshot: {} });
  assert.equal(live.subs.get('run:a').lastSeq, 10);
  // At a subscribe whose `after` was older than the log: from the seq `subscribed` named.
  const fresh = liveWith(['run:b']);
  fresh.live.subs.get('run:b').lastSeq = 2;
  fresh.frame({ type: 'subscribed', topic: 'run:b', seq: 40 });
  fresh.frame({ type: 'resync_required', topic: 'run:b', snapshot: {} });
  assert.equal(fresh.live.subs.get('run:b').lastSeq, 40);
});

test('a "from now" asked again before `subscribed` is told as a resync; one answered is not', () => {
  const { live, frame, sent } = liveWith([]);
  let resyncs = 0;
  live.subscribe('content:c', { onResync: (snapshot) => { resyncs += 1; assert.equal(snapshot, null); } });
  assert.deepEqual(sent.at(-1), { type: 'subscribe', topic: 'content:c' });
  // The socket drops before `subscribed`: the reopened one asks from now again.
  live.sendSubscribe(live.subs.get('content:c'));
  assert.deepEqual(sent.at(-1), { type: 'subscribe', topic: 'content:c' });
  frame({ type: 'subscribed', topic: 'content:c', seq: 7 });
  assert.equal(resyncs, 1, 'events between the two asks are not owed to the cursor: the view reloads');
  // Once the seq is named, a resubscribe resumes from it, with nothing to tell.
  live.sendSubscribe(live.subs.get('content:c'));
  assert.deepEqual(sent.at(-1), { type: 'subscribe', topic: 'content:c', after: 7 });
  frame({ type: 'subscribed', topic: 'content:c', seq: 7 });
  assert.equal(resyncs, 1);
  // A first "from now" that is answered tells nothing either.
  live.subscribe('feed', { onResync: () => { resyncs += 1; } });
  frame({ type: 'subscribed', topic: 'feed', seq: 3 });
  assert.equal(resyncs, 1);
});

test('an event before `subscribed` is an earlier subscription\'s leftover: it does not cut the replay short', () => {
  const { live, frame } = liveWith(['answer:x']);
  live.subs.get('answer:x').lastSeq = 0;
  const event = (seq) => frame({ type: 'event', topic: 'answer:x', seq, event: EVENTS.ANSWER_DELTA, data: {}, ts: '' });
  event(5);
  frame({ type: 'subscribed', topic: 'answer:x', seq: 5 });
  for (let seq = 1; seq <= 5; seq += 1) event(seq);
  frame({ type: 'ready', topic: 'answer:x' });
  assert.deepEqual(live.applied('answer:x'), [1, 2, 3, 4, 5]);
});

/**
 * Runs `body(asked)` with `fetch` answering every request with `status`;
 * `asked()` says how many it got.
 */
async function withRefusingFetch(status, body) {
  const saved = globalThis.fetch;
  let asked = 0;
  globalThis.fetch = async () => {
    asked += 1;
    return { ok: false, status, json: async () => ({}) };
  };
  try {
    await body(() => asked);
  } finally {
    globalThis.fetch = saved;
  }
}

test('a refused credential holds the reconnects for minutes, not seconds', () => withRefusingFetch(401, async (asked) => {
  const live = new Live();
  await live.connect();
  clearTimeout(live.timer);
  assert.equal(asked(), 1);
  assert.equal(live.state, 'reconnecting');
  assert.ok(live.retryAt - Date.now() > 4 * 60_000, `next try in ${live.retryAt - Date.now()} ms`);
}));

test('a reconnect timer that fires over a socket opened meanwhile leaves it alone', () => withRefusingFetch(503, async (asked) => {
  const { live } = liveWith([]);
  live.state = 'live';
  await live.connect();
  clearTimeout(live.timer);
  assert.equal(live.state, 'live');
  assert.equal(asked(), 0, 'no new session asked for');
}));

test('`ready` and `resync_required` before `subscribed` are an earlier subscription\'s: the new one is not settled by them', () => {
  const { live, frame } = liveWith(['run:a']);
  const sub = live.subs.get('run:a');
  let resyncs = 0;
  sub.handlers.onResync = () => { resyncs += 1; };
  frame({ type: 'resync_required', topic: 'run:a', snapshot: {} });
  frame({ type: 'ready', topic: 'run:a' });
  assert.equal(sub.ready, false, 'still waiting for its own replay');
  assert.equal(resyncs, 0);
  assert.equal(live.state, 'resyncing');
  frame({ type: 'subscribed', topic: 'run:a', seq: 2 });
  frame({ type: 'ready', topic: 'run:a' });
  assert.equal(sub.ready, true);
  assert.equal(live.state, 'live');
});

test('the backoff starts over once a socket proves healthy, not at its open', async () => {
  const { live, frame } = liveWith(['run:a']);
  live.attempt = 5;
  frame({ type: 'subscribed', topic: 'run:a', seq: 0 });
  assert.equal(live.attempt, 5, 'a `subscribed` alone proves nothing');
  frame({ type: 'ready', topic: 'run:a' });
  assert.equal(live.attempt, 0);
});

test('a close for flooding (1008) keeps the session and holds the reconnect; a revocation (4001) drops it', async () => {
  globalThis.WebSocket ??= { OPEN: 1 };
  const session = { session_id: 's', token: 't', expires_at: new Date(Date.now() + 3600_000).toISOString() };
  for (const [code, kept] of [[1008, true], [4001, false]]) {
    const live = new Live();
    live.session = session;
    const ws = {};
    live.ws = ws;
    await live.onClosed(ws, true, session, code);
    clearTimeout(live.timer);
    assert.equal(live.session !== null, kept, `close ${code}`);
    if (code === 1008) assert.ok(live.retryAt - Date.now() >= 29_000, 'not back at once');
  }
});

test('two sockets that need a session at once get one, from one request', async () => {
  const saved = globalThis.fetch;
  let asked = 0;
  globalThis.fetch = async () => {
    asked += 1;
    await new Promise((r) => setTimeout(r, 5));
    return { ok: true, status: 200, json: async () => ({ session_id: `s${asked}`, token: 't', expires_at: new Date(Date.now() + 3600_000).toISOString() }) };
  };
  try {
    const main = new Live();
    const feed = new Live({ sessions: main });
    const [a, b] = await Promise.all([main.getSession(), feed.getSession()]);
    assert.equal(asked, 1);
    assert.equal(a.session_id, b.session_id);
  } finally {
    globalThis.fetch = saved;
  }
});
