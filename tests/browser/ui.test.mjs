// The web client in real headless Chromium against a real server (wrangler dev
// + the analyzer, started by server.mjs). One server for the whole file.
//
// Screenshots of every main view go to $ACTORLINE_SCREENSHOTS when set (the
// committed ones: ACTORLINE_SCREENSHOTS=docs/screenshots), else to the run's
// temp dir.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { EVENTS, STAGES } from '../../web/protocol.js';
import { ROOT, startServer } from './server.mjs';

const LAUNCH = {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
};
const DESKTOP = { width: 1280, height: 800 };
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

let server;
let browser;
let shotDir;
const pages = [];
// Shared between tests (they run in order).
const doc = {};

function log(...args) {
  console.log('#', ...args);
}

/** A body of about `bytes` bytes of plain prose that mentions `word` so search can find it. */
function documentBody(word, bytes) {
  const sentences = [
    'Night-sky tourism keeps growing along the coast, and guides now run tours well into March.',
    'Most visitors come for the auroras, but many stay for the quiet fjords and the long blue dusk.',
    'Hotels report that guests ask for forecasts first and breakfast times second.',
    'Photographers share tips on exposure, tripods and keeping batteries warm in the cold.',
    'Local schools use the displays to teach how the solar wind meets the magnetic field.',
    'Fishing villages that were empty in winter now keep their cafés open until midnight.',
    'Researchers warn that light pollution from new roads could dim the view within a decade.',
  ];
  let out = `The ${word} report describes a record season of auroras over the harbor. `;
  for (let i = 0; out.length < bytes; i++) {
    out += `${sentences[i % sentences.length]} `;
    if (i % 5 === 4) out += `The ${word} survey counted more visitors than the year before. `;
  }
  return out;
}

/** Readable prose about auroras that names `word` (a unique token) so search can find it. */
function proseBody(word) {
  return [
    `The ${word} spectrograph at the Tromsø observatory in northern Norway recorded the brightest auroras of the decade last winter.`,
    'Green curtains dominated most nights, produced by oxygen atoms about one hundred kilometres above the ground.',
    'On the clearest nights a rare crimson band appeared higher up, where thinner oxygen glows red.',
    `Researchers compared the ${word} readings with solar wind data from satellites and found that most displays followed a fast stream from a coronal hole by about two days.`,
    'Local guides reported record visitor numbers, and the cold, dry air made the sky unusually clear.',
    'The team in Svalbard confirmed the timing with magnetometers, which showed sharp disturbances during each substorm.',
    'Forecasts are still uncertain beyond a few hours, because the orientation of the magnetic field in the solar wind is hard to predict.',
    'Even so, the observatory now publishes an hourly outlook that photographers and schools use to plan their nights.',
  ].join(' ');
}

/** A request as the local tenant's key (the default) or with `token`. */
async function api(method, p, body, token) {
  token = token === undefined ? server.apiKey : token;
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(server.base + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

/**
 * A fresh context (its own sessionStorage) and page that fails the test on
 * page errors or off-origin requests. Signed in with the local tenant's key
 * (as a newcomer does once) unless `signedIn` is false.
 */
async function newPage(viewport = DESKTOP, { signedIn = true } = {}) {
  const context = await browser.newContext({ viewport, reducedMotion: 'reduce' });
  if (signedIn) {
    await context.addInitScript((key) => {
      if (!sessionStorage.getItem('actorline.credential')) sessionStorage.setItem('actorline.credential', key);
    }, server.apiKey);
  }
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('request', (req) => {
    const u = req.url();
    if (!u.startsWith(server.base) && !u.startsWith(server.base.replace('http:', 'ws:')) && !u.startsWith('data:')) {
      page.problems.push(`off-origin request: ${u}`);
    }
  });
  page.on('websocket', (ws) => {
    if (!ws.url().startsWith(server.base.replace('http:', 'ws:'))) page.problems.push(`off-origin socket: ${ws.url()}`);
  });
  pages.push(page);
  return page;
}

function assertClean(page) {
  assert.deepEqual(page.problems, [], 'no page errors and no requests leave the origin');
}

async function shot(page, name) {
  const file = path.join(shotDir, `${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${file}`);
}

async function waitLive(page) {
  await page.waitForFunction(() => document.querySelector('#conn')?.dataset.state === 'live', null, { timeout: 20_000 });
}

before(async () => {
  shotDir = process.env.ACTORLINE_SCREENSHOTS
    ? path.resolve(ROOT, process.env.ACTORLINE_SCREENSHOTS)
    : null;
  const t0 = Date.now();
  server = await startServer();
  log(`server ${server.base} up in ${Date.now() - t0} ms (state ${server.dir})`);
  shotDir ??= path.join(server.dir, 'screenshots');
  fs.mkdirSync(shotDir, { recursive: true });
  // Imported only now: the server's bootstrap must not reinstall node_modules under a loaded module.
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch(LAUNCH);
  log(`chromium ${browser.version()}`);
}, { timeout: 480_000 });

after(async () => {
  try {
    await browser?.close();
  } finally {
    await server?.stop();
  }
});

test('submit through the form, with inline API errors, then watch every stage complete live', { timeout: 90_000 }, async () => {
  const page = await newPage();
  await page.goto(`${server.base}/#/submit`);
  await waitLive(page);
  await page.evaluate(() => {
    window.__noReload = true;
  });

  // An empty title: the API's 422 names the field and the message appears next to it.
  await page.fill('#body', 'Some body text.');
  await page.click('button[type=submit]');
  await page.waitForSelector('#title-error:not([hidden])');
  assert.match(await page.textContent('#title-error'), /must be 1 to 300 characters/);
  assert.equal(await page.getAttribute('#title', 'aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'title', 'focus moves to the invalid input');
  // A bad category: the error moves to that input.
  await page.fill('#title', 'x');
  await page.fill('#category', 'no/slashes');
  await page.click('button[type=submit]');
  await page.waitForSelector('#category-error:not([hidden])');
  assert.equal(await page.getAttribute('#title', 'aria-invalid'), null);

  doc.word = `zephyrine${Date.now().toString(36)}`;
  doc.title = 'Record auroras over Tromsø';
  doc.category = 'astronomy';
  await page.fill('#title', doc.title);
  await page.fill('#body', proseBody(doc.word));
  await page.fill('#category', doc.category);
  await page.fill('#tags', 'aurora, night sky , tromsø');
  await page.fill('#author', 'Ingrid Solberg');
  assert.equal(await page.isHidden('.error-summary'), true, 'fixing the fields cleared the errors');
  await page.evaluate(() => {
    document.activeElement.blur();
    document.querySelector('#body').scrollTop = 0;
    window.scrollTo(0, 0);
  });
  await shot(page, 'submit');
  const t0 = Date.now();
  await page.click('button[type=submit]');
  await page.waitForURL(new RegExp(`#/runs/${UUID}$`), { timeout: 15_000 });
  doc.runId = page.url().split('/').pop();
  const topic = `run:${doc.runId}`;

  // Record every stage status the page shows, to see the track move.
  await page.evaluate(() => {
    window.__seen = {};
    const note = () => {
      for (const li of document.querySelectorAll('.track > li[data-stage]')) {
        const list = (window.__seen[li.dataset.stage] ??= []);
        if (list[list.length - 1] !== li.dataset.status) list.push(li.dataset.status);
      }
    };
    note();
    new MutationObserver(note).observe(document.querySelector('.track'), { childList: true, subtree: true });
  });
  await page.waitForFunction(() => document.querySelectorAll('.track > li[data-status="completed"]').length === 8, null, { timeout: 45_000 });
  await page.waitForSelector('#run-status [data-status="completed"]');
  log(`run ${doc.runId}: all 8 stages completed ${Date.now() - t0} ms after submit`);

  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page never reloaded');
  assert.deepEqual(await page.$$eval('.track > li[data-stage]', (els) => els.map((e) => e.dataset.stage)), STAGES);
  const seen = await page.evaluate(() => window.__seen);
  log('statuses seen per stage', JSON.stringify(seen));
  for (const s of STAGES) assert.equal(seen[s].at(-1), 'completed', `${s} ends completed`);

  // Everything arrived over the socket, each seq once and in order.
  const insp = await api('GET', `/admin/actors/run/${doc.runId}`, undefined, server.adminToken);
  const lastSeq = insp.body.events.last_seq;
  const applied = await page.evaluate((t) => window.__actorline.applied(t), topic);
  assert.deepEqual(applied, Array.from({ length: lastSeq }, (_, i) => i + 1));
  assert.equal(await page.locator('.log tbody tr').count(), lastSeq);
  assert.match(await page.textContent('.run-progress label'), /8 of 8 stages done/);
  doc.contentId = await page.evaluate(() => window.__actorline.view().run.content_id);
  assert.match(doc.contentId, new RegExp(`^${UUID}$`));
  await shot(page, 'run');

  // A reload shows the same state.
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('.track > li[data-status="completed"]').length === 8, null, { timeout: 20_000 });
  await waitLive(page);
  assert.equal(await page.locator('.log tbody tr').count(), lastSeq);

  // The same view at 360 px.
  const narrow = await newPage({ width: 360, height: 800 });
  await narrow.goto(`${server.base}/#/runs/${doc.runId}`);
  await narrow.waitForFunction(() => document.querySelectorAll('.track > li[data-status="completed"]').length === 8, null, { timeout: 20_000 });
  await waitLive(narrow);
  assert.ok(await narrow.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'no horizontal scroll at 360 px');
  await shot(narrow, 'run-360');
  assertClean(narrow);
  assertClean(page);
});

test('a socket dropped mid-run resumes with no stage and no seq missing', { timeout: 90_000 }, async () => {
  const page = await newPage();
  await page.goto(`${server.base}/#/submit`);
  await waitLive(page);
  // Cut the socket as soon as the run view has applied 3 events, and stay down 1.5 s.
  await page.evaluate(() => window.__actorline.dropSocket({ afterEvents: 3, topic: 'run:', holdMs: 1500 }));
  await page.fill('#title', 'Aurora season brings visitors north');
  await page.fill('#body', documentBody('resumption', 150_000));
  await page.click('button[type=submit]');
  await page.waitForURL(new RegExp(`#/runs/${UUID}$`), { timeout: 15_000 });
  const runId = page.url().split('/').pop();
  const topic = `run:${runId}`;

  await page.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 15_000 });
  assert.match(await page.textContent('#conn'), /Reconnecting/);
  const atCut = await page.evaluate((t) => ({
    applied: window.__actorline.applied(t),
    done: document.querySelectorAll('.track > li[data-status="completed"]').length,
  }), topic);
  const server_ = await api('GET', `/api/runs/${runId}`);
  log(`cut after seqs ${JSON.stringify(atCut.applied)}; page showed ${atCut.done}/8 done; server run was ${server_.body.status}`);
  assert.deepEqual(atCut.applied, [1, 2, 3], 'the page had seen only the start of the run when its socket was cut');

  await page.waitForFunction(() => document.querySelectorAll('.track > li[data-status="completed"]').length === 8, null, { timeout: 45_000 });
  await waitLive(page);
  const insp = await api('GET', `/admin/actors/run/${runId}`, undefined, server.adminToken);
  const lastSeq = insp.body.events.last_seq;
  const applied = await page.evaluate((t) => window.__actorline.applied(t), topic);
  assert.deepEqual(applied, Array.from({ length: lastSeq }, (_, i) => i + 1), 'applied seqs are dense 1..N');
  const stats = await page.evaluate(() => window.__actorline.stats());
  log('live stats', JSON.stringify(stats));
  assert.ok(stats.drops >= 1 && stats.connects >= 2, 'dropped and reconnected');
  const stages = await page.$$eval('.track > li[data-stage]', (els) => els.map((e) => [e.dataset.stage, e.dataset.status]));
  assert.deepEqual(stages, STAGES.map((s) => [s, 'completed']));

  // An expired or refused session token is replaced by a new session.
  await page.evaluate(() => {
    const s = JSON.parse(sessionStorage.getItem('actorline.session'));
    s.token = `1000.${s.token.slice(s.token.indexOf('.') + 1)}`;
    sessionStorage.setItem('actorline.session', JSON.stringify(s));
    window.__actorline.live.session = s;
    window.__actorline.dropSocket();
  });
  await waitLive(page);
  const after2 = await page.evaluate(() => ({ stats: window.__actorline.stats(), s: JSON.parse(sessionStorage.getItem('actorline.session')) }));
  assert.ok(!after2.s.token.startsWith('1000.'), 'a fresh session replaced the refused token');
  log('after a refused token', JSON.stringify(after2.stats));
  assertClean(page);
});

test('the content view shows the artifacts and follows a new version live', { timeout: 90_000 }, async () => {
  assert.ok(doc.contentId, 'needs the first test');
  const page = await newPage();
  await page.goto(`${server.base}/#/content/${doc.contentId}`);
  await page.waitForSelector('#content-status [data-status="indexed"]', { timeout: 20_000 });
  await waitLive(page);
  assert.equal(await page.textContent('#content-title'), doc.title);
  assert.ok((await page.textContent('.summary')).length > 20, 'summary shown');
  assert.ok(await page.locator('.kw-list li').count() > 0, 'keywords shown');
  assert.match(await page.textContent('section[aria-labelledby="analysis-title"]'), /Reading time/);
  assert.equal(await page.getAttribute(`a[href="#/runs/${doc.runId}"]`, 'href'), `#/runs/${doc.runId}`);
  await shot(page, 'content');

  // A new version from elsewhere: the page follows content:<id> to version 2, indexed.
  const put = await api('PUT', `/api/content/${doc.contentId}`, {
    title: `${doc.title}, updated`, category: doc.category, tags: ['aurora', 'night sky'],
    body: `${proseBody(doc.word)} Update: a second season of observations starts in October, with a new camera on Senja.`,
  });
  assert.equal(put.status, 202);
  await page.waitForFunction(() => document.querySelectorAll('.updates li').length >= 2, null, { timeout: 30_000 });
  await page.waitForFunction((t) => document.querySelector('#content-title')?.textContent === t
    && document.querySelector('#content-status [data-status="indexed"]'), `${doc.title}, updated`, { timeout: 30_000 });
  assert.equal(await page.locator(`a[href="#/runs/${put.body.run_id}"]`).count() >= 1, true, 'the new run is linked');
  doc.title = `${doc.title}, updated`;
  assertClean(page);
});

test('a content view whose item is deleted elsewhere keeps nothing of it on screen', { timeout: 90_000 }, async () => {
  const page = await newPage();
  const made = await api('POST', '/api/content', { title: 'Soon gone: the lighthouse ledger', body: proseBody('ledger') });
  assert.equal(made.status, 202);
  const id = made.body.content_id;
  await page.goto(`${server.base}/#/content/${id}`);
  await page.waitForSelector('#content-status [data-status="indexed"]', { timeout: 30_000 });
  await waitLive(page);
  assert.equal((await api('DELETE', `/api/content/${id}`)).status, 204);
  await page.waitForSelector('.notice-area [role=alert]', { timeout: 30_000 });
  assert.match(await page.textContent('.notice-area'), /does not exist/);
  assert.equal(await page.locator('#content-status').count(), 0, 'no status badge of a deleted item');
  assert.equal(await page.locator('.doc-body').count(), 0, 'no body of a deleted item');
  assert.doesNotMatch(await page.textContent('#content-title'), /ledger/, 'no title of a deleted item');
  assertClean(page);
});

test('search finds the document, highlights terms, filters by category, and the feed shows new content', { timeout: 90_000 }, async () => {
  assert.ok(doc.word, 'needs the first test');
  const page = await newPage();
  await page.goto(`${server.base}/#/search`);
  await waitLive(page);
  await page.fill('#q', `${doc.word} auroras`);
  await page.click('form[role=search] button[type=submit]');
  const hit = page.locator(`.result[data-content-id="${doc.contentId}"]`);
  await hit.waitFor({ timeout: 15_000 });
  assert.equal(await hit.locator('h3 a').textContent(), doc.title);
  const marks = await hit.locator('mark').allTextContents();
  assert.ok(marks.some((m) => m.toLowerCase() === doc.word), `the query term is highlighted (${marks.join(', ')})`);
  assert.match(await page.textContent('.results-status'), /result/);
  assert.match(page.url(), new RegExp(`#/search\\?q=${doc.word}`), 'the query is in the URL');

  // Category filter: the right category keeps it, another one drops it.
  await page.fill('#category', doc.category);
  await page.click('form[role=search] button[type=submit]');
  await hit.waitFor({ timeout: 15_000 });
  await page.fill('#category', 'gardening');
  await page.click('form[role=search] button[type=submit]');
  await page.waitForFunction((id) => !document.querySelector(`.result[data-content-id="${id}"]`)
    && /result/.test(document.querySelector('.results-status').textContent), doc.contentId, { timeout: 15_000 });
  await page.fill('#category', '');
  await page.click('form[role=search] button[type=submit]');
  await hit.waitFor({ timeout: 15_000 });

  // The live feed: content submitted elsewhere appears once indexed.
  const fresh = await api('POST', '/api/content', { title: 'Night-sky tourism grows in Lofoten', body: documentBody('lofoten', 1500), category: 'travel' });
  assert.equal(fresh.status, 202);
  await page.locator(`.feed-item.fresh[data-content-id="${fresh.body.content_id}"][data-event="${EVENTS.CONTENT_INDEXED}"]`).waitFor({ timeout: 30_000 });
  await shot(page, 'search');
  assertClean(page);
});

test('the inspector refuses without a token, then shows the run journal, events, metrics and actions', { timeout: 90_000 }, async () => {
  assert.ok(doc.runId, 'needs the first test');
  const page = await newPage();
  await page.goto(`${server.base}/#/inspector`);
  const refusal = page.locator('.notice.error[data-status="401"]').first();
  await refusal.waitFor({ timeout: 15_000 });
  assert.match(await refusal.textContent(), /401 unauthorized/);

  // A wrong token is a bad credential: 401, never a fall-back to anonymous.
  await page.fill('#admin-token', 'not-the-token');
  await page.click('text=Use token');
  await page.locator('.notice.error[data-status="401"]', { hasText: 'not an admin token' }).first().waitFor({ timeout: 15_000 });
  await page.click('text=Forget token');
  // A tenant's key is a good credential, but not the operator's: 403.
  await page.fill('#admin-token', server.apiKey);
  await page.click('text=Use token');
  await page.locator('.notice.error[data-status="403"]').first().waitFor({ timeout: 15_000 });
  await page.click('text=Forget token');

  await page.fill('#admin-token', server.adminToken);
  await page.click('text=Use token');
  await page.waitForSelector('.stat-cards', { timeout: 15_000 });
  assert.equal(await page.locator('.lat-chart .lat-bar').count(), 24, 'p50/p95/p99 bars for 8 stages');
  await page.waitForSelector(`table.actors tr[data-id="${doc.runId}"]`, { timeout: 15_000 }).catch(() => {});
  assert.ok(await page.locator('table.actors tbody tr').count() > 0, 'actors listed');
  // The token lives in sessionStorage only: never in the markup or the URL.
  const html = await page.content();
  assert.ok(!html.includes(server.adminToken) && !page.url().includes(server.adminToken), 'token not in page source or URL');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('actorline.admin_token')), server.adminToken);
  await shot(page, 'inspector');

  // Filters: runs only.
  await page.selectOption('#f-kind', 'run');
  await page.click('.filters button[type=submit]');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('table.actors tbody tr')];
    return rows.length > 0 && rows.every((r) => r.dataset.kind === 'run');
  }, null, { timeout: 15_000 });

  // The run's journal, events and actions.
  await page.goto(`${server.base}/#/inspector/run/${doc.runId}`);
  await page.waitForSelector('table.journal tbody tr', { timeout: 15_000 });
  const journal = await page.$$eval('table.journal tbody tr', (rows) => rows.map((r) => [r.dataset.stage, r.dataset.status]));
  assert.deepEqual(journal, STAGES.map((s) => [s, 'completed']));
  assert.ok(await page.locator('table.events tbody tr').count() >= 17, 'event log tail shown');
  assert.match(await page.textContent('#inspect-alarm'), /none armed/);
  await page.click('button:has-text("Fire alarm")');
  await page.waitForSelector('.notice.ok', { timeout: 15_000 });
  assert.match(await page.textContent('.notice.ok'), /Fire alarm: done/);
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.focus), 'alarm', 'the rebuilt view keeps the keyboard on Fire alarm');
  assert.equal(await page.isDisabled('button:has-text("Retry run")'), true, 'a completed run cannot be retried');
  assert.equal(await page.isDisabled('button:has-text("Cancel run")'), true, 'a completed run cannot be cancelled');
  await shot(page, 'inspector-run');

  // Dead letters: nothing fails in this server, so the list is stubbed to check the retry button.
  const dead = '0f0f0f0f-1111-4222-8333-444444444444';
  let retried = null;
  await page.route('**/admin/dead-letters', (route) => route.fulfill({
    json: { items: [{ run_id: dead, content_id: doc.contentId, version: 1, stage: 'embed', error_class: 'transient',
      error: 'embedder unavailable', attempts: 5, failed_at: new Date().toISOString() }] },
  }));
  await page.route(`**/api/runs/${dead}/retry`, (route) => {
    retried = route.request().method();
    return route.fulfill({ json: { id: dead, status: 'queued', stages: [] } });
  });
  let dismissed = null;
  await page.route(`**/api/runs/${dead}/cancel`, (route) => {
    dismissed = route.request().method();
    return route.fulfill({ json: { id: dead, status: 'cancelled', stages: [] } });
  });
  await page.goto(`${server.base}/#/inspector`);
  const said = (pattern) => page.waitForFunction((p) => new RegExp(p).test(
    document.querySelector('section[aria-labelledby="dead-title"] [role=status]').textContent), pattern, { timeout: 15_000 });
  await page.click(`tr[data-run-id="${dead}"] button:has-text("Retry")`);
  await said('re-queued');
  assert.equal(retried, 'POST');
  // The list reloaded (the stub still lists the run): focus is back on its Retry, named for what it does.
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-label')?.startsWith('Retry run '), null, { timeout: 5_000 });
  assert.equal(await page.getAttribute(`tr[data-run-id="${dead}"] button:has-text("Dismiss")`, 'aria-label'), 'Dismiss run 0f0f0f0f');
  // A dead letter is dismissed by cancelling its run.
  await page.click(`tr[data-run-id="${dead}"] button:has-text("Dismiss")`);
  await said('cancelled');
  assert.equal(dismissed, 'POST');
  assertClean(page);
});

test('a retrying stage shows its next attempt; duplicates are skipped; resume sends after=<last seq>; resync replaces state (stubbed socket)', { timeout: 60_000 }, async () => {
  const page = await newPage();
  const runId = '7e57a11e-0000-4000-8000-000000000001';
  const contentId = '7e57a11e-0000-4000-8000-000000000002';
  const topic = `run:${runId}`;
  const now = Date.now();
  const iso = (ms) => new Date(ms).toISOString();
  const stages = (status) => STAGES.map((name) => ({ name, status, attempts: status === 'pending' ? 0 : 1 }));
  await page.route(`**/api/runs/${runId}`, (route) => route.fulfill({
    json: { id: runId, content_id: contentId, version: 1, status: 'queued', stages: stages('pending'), created_at: iso(now) },
  }));
  const ev = (seq, event, data) => JSON.stringify({ type: 'event', topic, seq, event, data: { run_id: runId, content_id: contentId, ...data }, ts: iso(now + seq * 10) });
  const nextAt = iso(now + 45_000);
  const subscribes = [];
  let connection = 0;
  await page.routeWebSocket(/\/api\/sessions\/[^/]+\/ws/, (ws) => {
    const n = ++connection;
    ws.onMessage((text) => {
      const f = JSON.parse(text);
      if (f.type !== 'subscribe' || f.topic !== topic) return;
      subscribes.push({ connection: n, after: f.after });
      if (n === 1) {
        ws.send(JSON.stringify({ type: 'subscribed', topic, seq: 5 }));
        ws.send(ev(1, EVENTS.RUN_QUEUED, { version: 1 }));
        ws.send(ev(2, EVENTS.STAGE_STARTED, { stage: 'validate', attempt: 1 }));
        ws.send(ev(3, EVENTS.STAGE_COMPLETED, { stage: 'validate', attempt: 1, duration_ms: 12 }));
        ws.send(ev(3, EVENTS.STAGE_COMPLETED, { stage: 'validate', attempt: 1, duration_ms: 12 }));
        ws.send(ev(4, EVENTS.STAGE_STARTED, { stage: 'chunk', attempt: 1 }));
        ws.send(ev(5, EVENTS.STAGE_RETRYING, { stage: 'chunk', attempt: 1, next_at: nextAt, backoff_ms: 45_000, error: 'analyzer timed out after 5000 ms', class: 'transient' }));
        ws.send(JSON.stringify({ type: 'ready', topic }));
      } else {
        // Resuming from a cursor older than retention: a snapshot instead of events.
        const snapshot = { id: runId, content_id: contentId, version: 1, status: 'completed', stages: stages('completed'), created_at: iso(now), finished_at: iso(now + 60_000) };
        ws.send(JSON.stringify({ type: 'subscribed', topic, seq: 19 }));
        ws.send(JSON.stringify({ type: 'resync_required', topic, snapshot }));
        ws.send(JSON.stringify({ type: 'ready', topic }));
      }
    });
    if (n === 1) page.closeFirstSocket = () => ws.close({ code: 1011, reason: 'test' });
  });
  await page.goto(`${server.base}/#/runs/${runId}`);
  const chunk = page.locator('.track > li[data-stage="chunk"]');
  await page.waitForSelector('.track > li[data-stage="chunk"][data-status="retrying"]', { timeout: 15_000 });
  const text = await chunk.textContent();
  assert.match(text, /Attempt 2 at/);
  assert.match(text, /\(in 4\d s\)/);
  assert.match(text, /analyzer timed out after 5000 ms/);
  assert.equal(await page.getAttribute('.track > li[data-stage="validate"]', 'data-status'), 'completed');
  assert.deepEqual(await page.evaluate((t) => window.__actorline.applied(t), topic), [1, 2, 3, 4, 5]);
  assert.equal((await page.evaluate(() => window.__actorline.stats())).duplicates, 1, 'seq 3 twice is applied once');
  await waitLive(page);
  await shot(page, 'run-retrying');

  // The keyboard is on Cancel run when the run ends: the button goes, and focus goes to the status.
  await page.focus('button:has-text("Cancel run")');
  page.closeFirstSocket();
  await page.waitForSelector('.track > li[data-stage="publish"][data-status="completed"]', { timeout: 15_000 });
  await page.waitForFunction(() => document.activeElement?.id === 'run-status', null, { timeout: 5_000 });
  await waitLive(page);
  assert.deepEqual(subscribes.map((x) => x.after), [0, 5], 'resubscribed after the last seq seen');
  assert.equal(await page.locator('.track > li[data-status="completed"]').count(), 8);
  assert.equal(await page.getAttribute('#run-status .badge', 'data-status'), 'completed');
  assert.equal((await page.evaluate(() => window.__actorline.stats())).resyncs, 1);
  assertClean(page);
});

test('a run that is started late (its first GETs are 404) is waited for, then followed (stubbed socket)', { timeout: 60_000 }, async () => {
  const page = await newPage();
  const runId = '7e57a11e-0000-4000-8000-000000000011';
  const contentId = '7e57a11e-0000-4000-8000-000000000012';
  const topic = `run:${runId}`;
  let gets = 0;
  await page.route(`**/api/runs/${runId}`, (route) => {
    gets += 1;
    if (gets <= 2) return route.fulfill({ status: 404, json: { error: { code: 'not_found', message: 'run not found' } } });
    const stages = STAGES.map((name) => ({ name, status: 'completed', attempts: 1 }));
    return route.fulfill({ json: { id: runId, content_id: contentId, version: 1, status: 'completed', stages, created_at: new Date().toISOString() } });
  });
  await page.routeWebSocket(/\/api\/sessions\/[^/]+\/ws/, (ws) => {
    ws.onMessage((text) => {
      const f = JSON.parse(text);
      if (f.type !== 'subscribe' || f.topic !== topic) return;
      ws.send(JSON.stringify({ type: 'subscribed', topic, seq: 0 }));
      ws.send(JSON.stringify({ type: 'ready', topic }));
    });
  });
  await page.goto(`${server.base}/#/runs/${runId}`);
  await page.getByText('Waiting for the run to start…').waitFor({ timeout: 10_000 });
  await page.waitForSelector('.track > li[data-stage="publish"][data-status="completed"]', { timeout: 15_000 });
  assert.equal(await page.getByText('No run with this id.').count(), 0);
  assert.equal(await page.getByText('Waiting for the run to start…').count(), 0, 'the wait notice is cleared');
  assert.ok(gets >= 3);
  assertClean(page);
});

test('an import view takes its counts from a resync snapshot, not the last event before the gap (stubbed socket)', { timeout: 60_000 }, async () => {
  const page = await newPage();
  const batchId = '7e57a11e-0000-4000-8000-0000000000b1';
  const topic = `batch:${batchId}`;
  const view = { id: batchId, status: 'completed', total: 10, spawned: 10, completed: 10, failed: 0, in_flight: 0,
    max_in_flight: 32, max_in_flight_observed: 4, items: [], created_at: new Date().toISOString() };
  await page.route(`**/api/batches/${batchId}`, (route) => route.fulfill({ json: view }));
  await page.routeWebSocket(/\/api\/sessions\/[^/]+\/ws/, (ws) => {
    ws.onMessage((text) => {
      const f = JSON.parse(text);
      if (f.type !== 'subscribe' || f.topic !== topic) return;
      ws.send(JSON.stringify({ type: 'subscribed', topic, seq: 1 }));
      ws.send(JSON.stringify({ type: 'event', topic, seq: 1, event: EVENTS.BATCH_PROGRESS, ts: new Date().toISOString(),
        data: { batch_id: batchId, counts: { total: 10, spawned: 2, completed: 1, failed: 0, in_flight: 1 } } }));
      ws.send(JSON.stringify({ type: 'ready', topic }));
      // Later, a poll finds the log trimmed past the cursor: the rest comes as a snapshot.
      setTimeout(() => ws.send(JSON.stringify({ type: 'resync_required', topic, snapshot: view })), 500);
    });
  });
  await page.goto(`${server.base}/#/import/${batchId}`);
  await page.waitForFunction(() => /^1 of 10/.test(document.querySelector('#batch-counts')?.textContent || ''), null, { timeout: 15_000 });
  await page.waitForFunction(() => /^10 of 10 settled/.test(document.querySelector('#batch-counts')?.textContent || ''), null, { timeout: 15_000 });
  assertClean(page);
});

test('the feed panel shows what a resync snapshot holds, and a refused subscribe does not leave the badge resyncing (stubbed sockets)', { timeout: 60_000 }, async () => {
  const page = await newPage();
  const contentId = '7d3c1e2a-4b5f-4c6d-8e9f-0a1b2c3d4e5f';
  await page.routeWebSocket(/\/api\/topics\/feed\/ws/, (ws) => {
    ws.onMessage((text) => {
      const f = JSON.parse(text);
      if (f.type !== 'subscribe' || f.topic !== 'feed') return;
      // The feed's log was trimmed past the cursor: its latest events instead.
      const recent = [{ seq: 49, event: EVENTS.CONTENT_INDEXED, data: { content_id: contentId, title: 'Missed while trimmed' }, ts: new Date().toISOString() }];
      ws.send(JSON.stringify({ type: 'subscribed', topic: 'feed', seq: 50 }));
      ws.send(JSON.stringify({ type: 'resync_required', topic: 'feed', snapshot: { topic: 'feed', last_seq: 50, recent } }));
      ws.send(JSON.stringify({ type: 'ready', topic: 'feed' }));
    });
  });
  await page.goto(`${server.base}/#/search`);
  await page.waitForSelector(`.feed-item[data-content-id="${contentId}"]`, { timeout: 15_000 });
  await waitLive(page);

  // A run topic the server refuses with a message that does not name it.
  const runId = '0e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b';
  await page.routeWebSocket(/\/api\/sessions\/[^/]+\/ws/, (ws) => {
    ws.onMessage((text) => {
      const f = JSON.parse(text);
      if (f.type !== 'subscribe') return;
      ws.send(JSON.stringify({ type: 'error', code: 'too_many_followers', message: "this principal's sessions follow this topic at most 16 times", topic: f.topic }));
    });
  });
  await page.route(`**/api/runs/${runId}`, (route) => route.fulfill({
    json: { id: runId, content_id: contentId, version: 1, status: 'running', stages: STAGES.map((name) => ({ name, status: 'pending', attempts: 0 })), created_at: new Date().toISOString() },
  }));
  await page.goto(`${server.base}/#/runs/${runId}`);
  await page.waitForFunction(() => ['live', 'idle'].includes(document.querySelector('#conn')?.dataset.state), null, { timeout: 15_000 });
  await page.close();
});

test('keyboard: skip link and navigation are reachable and focus is visible', { timeout: 30_000 }, async () => {
  const page = await newPage();
  await page.goto(`${server.base}/#/submit`);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip-link');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'focused controls show an outline');
  // Every form control has a label.
  const unlabeled = await page.$$eval('input, textarea, select', (els) => els.filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id || e.name));
  assert.deepEqual(unlabeled, []);
  assert.equal(await page.locator('main, nav, header, footer').count(), 4, 'landmarks');
  assertClean(page);
});

test('a newcomer signs in with the key make dev printed, sees the tenant, and submits privately', { timeout: 90_000 }, async () => {
  const page = await newPage(DESKTOP, { signedIn: false });
  await page.goto(`${server.base}/#/submit`);
  await page.waitForSelector('#credential');
  assert.match(await page.textContent('#who'), /Anonymous/);
  await page.fill('#credential', server.apiKey);
  await page.click('.signin-form button[type=submit]');
  await page.waitForFunction(() => /local/.test(document.querySelector('#who')?.textContent || ''), null, { timeout: 15_000 });
  // The key is kept for the tab only: not in the markup, not in the URL.
  const html = await page.content();
  assert.ok(!html.includes(server.apiKey) && !page.url().includes(server.apiKey));
  assert.equal(await page.evaluate(() => sessionStorage.getItem('actorline.credential')), server.apiKey);
  await page.fill('#title', 'A private note');
  await page.fill('#body', 'Only its owner and the tenant managers may read this private note about tide tables.');
  await page.selectOption('#visibility', 'private');
  await page.click('button[type=submit].primary');
  await page.waitForFunction(() => location.hash.startsWith('#/runs/'), null, { timeout: 15_000 });
  const runId = await page.evaluate(() => location.hash.split('/')[2]);
  const run = await api('GET', `/api/runs/${runId}`);
  const item = await api('GET', `/api/content/${run.body.content_id}`);
  assert.equal(item.body.visibility, 'private');
  assert.equal(item.body.tenant, 'local');
  // Anonymous callers cannot see it.
  assert.equal((await api('GET', `/api/content/${run.body.content_id}`, undefined, '')).status, 404);
  // A bad credential is refused, never treated as anonymous.
  await page.click('#signout');
  await page.waitForSelector('#credential');
  await page.fill('#credential', 'alk_not_a_real_key');
  await page.click('.signin-form button[type=submit]');
  await page.waitForFunction(() => /refused/.test(document.querySelector('#who')?.textContent || ''), null, { timeout: 15_000 });
  assertClean(page);
});

test('ask: the answer streams with cited sources linked to the content, and resumes after a dropped socket', { timeout: 90_000 }, async () => {
  const word = `quill${Date.now().toString(36)}`;
  const created = await api('POST', '/api/content', {
    title: `The ${word} observatory`,
    body: `The ${word} observatory sits on a ridge above the fjord. The ${word} observatory measured a record aurora brightness in February. Its staff publish an hourly outlook for photographers.`,
  });
  assert.equal(created.status, 202);
  const { content_id: contentId, run_id: runId } = created.body;
  for (const until = Date.now() + 45_000; ; await new Promise((r) => setTimeout(r, 200))) {
    const run = await api('GET', `/api/runs/${runId}`);
    if (run.body.status === 'completed') break;
    assert.ok(Date.now() < until, `run ${runId} did not complete: ${run.body.status}`);
  }
  const page = await newPage();
  await page.goto(`${server.base}/#/ask`);
  await waitLive(page);
  assert.equal(await page.getAttribute('a[data-nav="ask"]', 'aria-current'), 'page');
  // An empty question is refused inline.
  await page.click('form[aria-label="Ask a question"] button[type=submit]');
  assert.match(await page.textContent('#question-error'), /Type a question/);
  // Cut the socket after two applied answer events and stay down a second.
  await page.evaluate(() => window.__actorline.dropSocket({ afterEvents: 2, topic: 'answer:', holdMs: 1000 }));
  await page.fill('#question', `When did the ${word} observatory measure a record aurora brightness?`);
  await page.click('form[aria-label="Ask a question"] button[type=submit]');
  await page.waitForURL(new RegExp(`#/ask/${UUID}$`), { timeout: 15_000 });
  const answerId = page.url().split('/').pop();
  await page.waitForSelector('#answer-text[data-status="completed"]', { timeout: 30_000 });
  await waitLive(page);
  const view = await page.evaluate(() => window.__actorline.view());
  const stored = await api('GET', `/api/answers/${answerId}`);
  assert.equal(stored.status, 200);
  assert.equal(view.text, stored.body.text, 'the page shows the stored answer, no delta lost or doubled');
  assert.deepEqual(view.seqs, Array.from({ length: view.seqs.length }, (_, i) => i + 1), 'applied seqs are dense 1..N');
  assert.match(stored.body.text, /record aurora brightness/);
  const stats = await page.evaluate(() => window.__actorline.stats());
  assert.ok(stats.drops >= 1 && stats.connects >= 2, `dropped and reconnected: ${JSON.stringify(stats)}`);
  // Citations link to the content they cite, in the text and in the list.
  const cited = stored.body.citations.find((c) => c.content_id === contentId);
  assert.ok(cited, JSON.stringify(stored.body.citations));
  assert.equal(await page.getAttribute(`#answer-text a.cite[href="#/content/${contentId}"]`, 'title'), `Source ${cited.n}`);
  assert.ok(await page.$(`.citations li[data-content-id="${contentId}"] a[href="#/content/${contentId}"]`));
  await shot(page, 'ask');
  // A reload rebuilds the same answer from its topic.
  await page.reload();
  await page.waitForSelector('#answer-text[data-status="completed"]', { timeout: 20_000 });
  assert.equal((await page.evaluate(() => window.__actorline.view())).text, stored.body.text);
  assertClean(page);
});
