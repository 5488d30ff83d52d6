// Plain-node checks of the client's pure helpers (no browser, no server):
// byte-range highlighting, run-event application and reconnect backoff.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  applyRunEvent, emptyRun, EVENT_NAMES, frames, highlightSegments, STAGES, termSegments, topics,
} from '../../web/protocol.js';
import { backoffMs } from '../../web/live.js';
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
    ['run.queued', { version: 1 }],
    ['stage.started', { stage: 'validate', attempt: 1 }],
    ['stage.completed', { stage: 'validate', attempt: 1, duration_ms: 5 }],
    ['stage.started', { stage: 'chunk', attempt: 1 }],
    ['stage.retrying', { stage: 'chunk', attempt: 1, next_at: '2030-01-01T00:00:01Z', error: 'boom', class: 'transient' }],
  ];
  evs.forEach(([event, data], i) => applyRunEvent(run, { seq: i + 1, event, data, ts: '2030-01-01T00:00:00Z' }));
  assert.equal(run.status, 'running');
  assert.equal(run.stages[0].status, 'completed');
  assert.equal(run.stages[1].status, 'retrying');
  assert.equal(run.stages[1].next_at, '2030-01-01T00:00:01Z');
  assert.equal(run.stages[1].error.message, 'boom');
  applyRunEvent(run, { seq: 6, event: 'stage.started', data: { stage: 'chunk', attempt: 2 }, ts: 't' });
  applyRunEvent(run, { seq: 7, event: 'stage.completed', data: { stage: 'chunk', attempt: 2, duration_ms: 3 }, ts: 't' });
  assert.equal(run.stages[1].status, 'completed');
  assert.equal(run.stages[1].attempts, 2);
  assert.equal(run.stages[1].error, undefined);
  applyRunEvent(run, { seq: 8, event: 'run.cancelled', data: { reason: 'operator' }, ts: 't' });
  assert.equal(run.status, 'cancelled');
  applyRunEvent(run, { seq: 9, event: 'run.queued', data: { version: 1, retry: true }, ts: 't' });
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
    { seq: 1, event: 'answer.retrieved', data: { sources: [{ n: 1, content_id: 'c1', title: 'T' }] } },
    { seq: 2, event: 'answer.delta', data: { index: 0, text: 'First. [1]' } },
    { seq: 3, event: 'answer.delta', data: { index: 1, text: ' Second. [1]' } },
    { seq: 4, event: 'answer.completed', data: { text: 'First. [1] Second. [1]', citations: [{ n: 1, content_id: 'c1', title: 'T', snippet: 's' }] } },
  ];
  for (const f of log.slice(0, 3)) applyAnswerEvent(a, f);
  assert.equal(a.text, 'First. [1] Second. [1]');
  assert.equal(a.status, 'generating');
  applyAnswerEvent(a, log[3]);
  assert.equal(a.status, 'completed');
  assert.equal(a.citations.length, 1);
  const failed = { text: '', sources: [], citations: [], status: 'generating', error: null };
  applyAnswerEvent(failed, { seq: 2, event: 'answer.failed', data: { error: 'boom' } });
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
