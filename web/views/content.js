// #/content/<id>: a content item's derived artifacts, versions and runs, from
// GET /api/content/<id>, refreshed whenever the `content:<id>` topic reports
// a change (content.updated / content.indexed / content.deleted).

import { ApiError, get, sourceFile, UPLOAD_TYPES } from '../api.js';
import { api, EVENTS, isUuid, topics } from '../protocol.js';
import { badge, fmtDateTime, fmtTime, h, replace, shortId, time } from '../dom.js';

let debugState = null;
export function debug() {
  return debugState ? debugState() : null;
}

const pct = (x) => `${Math.round(x * 100)}%`;
const num = (x, d = 1) => (typeof x === 'number' ? x.toFixed(d) : '—');

function section(id, title, ...body) {
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...body);
}

function meter(value, { min = 0, max = 1, label }) {
  return h('meter', { min: String(min), max: String(max), value: String(value), 'aria-label': label }, String(value));
}

function keywordsBlock(kws) {
  if (!kws || kws.length === 0) return h('p', { class: 'muted' }, 'None yet.');
  const top = Math.max(...kws.map((k) => k.score), 1e-9);
  return h('ul', { class: 'kw-list' }, kws.map((k) =>
    h('li', null,
      h('span', { class: 'kw-term' }, k.term),
      h('span', { class: 'kw-bar', 'aria-hidden': 'true' }, h('span', { class: 'kw-fill', dataset: { w: String(Math.round((k.score / top) * 100)) } })),
      h('span', { class: 'kw-score' }, num(k.score, 2)))));
}

function entitiesBlock(ents) {
  if (!ents || ents.length === 0) return h('p', { class: 'muted' }, 'No named entities found.');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
    h('caption', { class: 'visually-hidden' }, 'Entities'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Entity'), h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col', class: 'num' }, 'Count'))),
    h('tbody', null, ents.map((e) => h('tr', null, h('td', null, e.text), h('td', null, h('span', { class: 'chip' }, e.kind)), h('td', { class: 'num' }, String(e.count)))))));
}

function sentimentBlock(s) {
  if (!s) return h('p', { class: 'muted' }, 'Not analysed yet.');
  return h('div', { class: 'sentiment' },
    h('p', null, h('span', { class: ['chip', `sent-${s.label}`] }, s.label), ` score ${num(s.score, 2)} (from −1 to +1)`),
    meter(s.score, { min: -1, max: 1, label: 'Sentiment score' }));
}

function nearDup(d) {
  if (d && typeof d === 'object') {
    const id = d.content_id || d.id;
    const sim = d.similarity ?? d.score;
    return h('li', null,
      id ? h('a', { href: `#/content/${id}` }, d.title || shortId(id)) : JSON.stringify(d),
      sim !== undefined ? ` · similarity ${num(sim, 2)}` : '');
  }
  return h('li', null, String(d));
}

function analysisBlock(a) {
  if (!a) return h('p', { class: 'muted' }, 'The analyzer has not reported yet (or the stage was skipped).');
  const r = a.readability || {};
  const lang = a.language || {};
  const rt = a.reading_time_seconds;
  const facts = [
    ['Language', lang.code ? `${lang.code}${lang.confidence !== undefined ? ` (${pct(lang.confidence)} confident)` : ''}` : '—'],
    ['Reading time', rt !== undefined ? (rt < 60 ? `${rt} s` : `${Math.round(rt / 60)} min`) : '—'],
    ['Reading ease', r.flesch_reading_ease !== undefined ? `${num(r.flesch_reading_ease)} (Flesch)` : '—'],
    ['Grade level', r.flesch_kincaid_grade !== undefined ? num(r.flesch_kincaid_grade) : '—'],
    ['Words · sentences', r.words !== undefined ? `${r.words} · ${r.sentences}` : '—'],
  ];
  const kp = a.keyphrases || [];
  const nd = a.near_duplicates || [];
  return [
    h('dl', { class: 'facts compact' }, facts.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v)))),
    h('h3', null, 'Keyphrases'),
    kp.length ? h('ul', { class: 'chips' }, kp.map((p) => h('li', { class: 'chip' }, p.phrase ?? String(p)))) : h('p', { class: 'muted' }, 'None.'),
    h('h3', null, 'Near duplicates'),
    nd.length ? h('ul', null, nd.map(nearDup)) : h('p', { class: 'muted' }, 'None found.'),
  ];
}

/**
 * "Source": downloads the uploaded original of the current version. It is
 * fetched with the signed-in credential, then saved from a Blob URL.
 */
function sourceLink(id, v) {
  const kb = Math.max(1, Math.round(v.source.bytes / 1024));
  const link = h('a', { href: '#', class: 'source-link' }, `Source (${v.source.content_type.split(';')[0]}, ${kb} KB)`);
  link.addEventListener('click', async (e) => {
    e.preventDefault();
    try {
      const blob = await sourceFile(id, v.version);
      const url = URL.createObjectURL(blob);
      const found = Object.entries(UPLOAD_TYPES).find(([, type]) => type === blob.type.split(';')[0]);
      const ext = found ? `.${found[0]}` : '';
      const a = h('a', { href: url, download: `${v.title || id}${ext}` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      link.textContent = `Source unavailable (${err instanceof ApiError ? err.describe() : err})`;
    }
  });
  return link;
}

/** Live updates a content view lists, newest first. */
const UPDATES_KEEP = 200;

export function mount(root, { id }, ctx) {
  ctx.setTitle(`Content ${shortId(id)}`);
  const controller = new AbortController();
  let view = null;
  let unsubscribe = null;
  let timer = null;
  const updates = [];

  const body = h('div', { class: 'content-body' });
  const notice = h('div', { class: 'notice-area' });
  // Apart from `notice`, which every reload clears: a refused subscription stays said.
  const liveNotice = h('div', { class: 'notice-area' });
  // Not a live region: each update is announced once, by ctx.announce.
  const updatesList = h('ol', { class: 'updates' });
  const titleEl = h('h1', { id: 'content-title' }, 'Content ', h('code', { class: 'id' }, shortId(id)));

  replace(root,
    h('article', { class: 'view', 'aria-labelledby': 'content-title' },
      titleEl, notice, body,
      section('updates-title', 'Live updates', liveNotice, updatesList)));

  if (!isUuid(id)) {
    replace(notice, h('p', { class: 'notice error', role: 'alert' }, `“${id}” is not a content id.`));
    return () => {};
  }

  function render() {
    if (!view) return;
    const v = view;
    ctx.setTitle(v.title);
    replace(titleEl, v.title);
    root.querySelector('.view').dataset.status = v.status;
    replace(body,
      h('dl', { class: 'facts' },
        h('div', null, h('dt', null, 'Status'), h('dd', { id: 'content-status' }, badge(v.status))),
        h('div', null, h('dt', null, 'Version'), h('dd', null, String(v.version))),
        h('div', null, h('dt', null, 'Category'), h('dd', null, v.category || '—')),
        h('div', null, h('dt', null, 'Tags'), h('dd', null, v.tags && v.tags.length ? h('ul', { class: 'chips' }, v.tags.map((t) => h('li', { class: 'chip' }, t))) : '—')),
        v.author ? h('div', null, h('dt', null, 'Author'), h('dd', null, v.author)) : null,
        h('div', null, h('dt', null, 'Updated'), h('dd', null, time(v.updated_at, fmtDateTime))),
        v.chunks !== undefined ? h('div', null, h('dt', null, 'Chunks'), h('dd', null, String(v.chunks))) : null,
        v.source ? h('div', null, h('dt', null, 'Source'), h('dd', null, sourceLink(id, v))) : null),
      h('div', { class: 'grid-2' },
        section('summary-title', 'Summary', v.summary ? h('p', { class: 'summary' }, v.summary) : h('p', { class: 'muted' }, 'Not summarised yet.')),
        section('sentiment-title', 'Sentiment', sentimentBlock(v.sentiment)),
        section('keywords-title', 'Keywords', keywordsBlock(v.keywords)),
        section('entities-title', 'Entities', entitiesBlock(v.entities))),
      section('analysis-title', 'Analysis', analysisBlock(v.analysis)),
      section('versions-title', 'Versions and runs',
        h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
          h('caption', { class: 'visually-hidden' }, 'Version history'),
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Version'), h('th', { scope: 'col' }, 'Title'),
            h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Run'))),
          h('tbody', null, (v.versions || []).slice().reverse().map((ver) => h('tr', null,
            h('td', { class: 'num' }, String(ver.version)), h('td', null, ver.title), h('td', null, time(ver.created_at, fmtDateTime)),
            h('td', null, badge(ver.status)),
            h('td', null, h('a', { href: `#/runs/${ver.run_id}` }, h('code', null, shortId(ver.run_id)))))))))),
      h('details', { class: 'card' }, h('summary', null, h('h2', { class: 'inline' }, 'Body')),
        h('div', { class: 'doc-body' }, v.body)));
    for (const el of body.querySelectorAll('.kw-fill')) el.style.width = `${el.dataset.w}%`;
  }

  // Reloads can overlap (an event's, then the next one's): only the one
  // started last may paint, so the view never ends older than an event.
  let loads = 0;
  async function load() {
    const mine = ++loads;
    try {
      const got = await get(api.contentItem(id), { signal: controller.signal });
      if (mine !== loads) return;
      view = got;
      replace(notice);
      render();
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      if (mine !== loads) return;
      const msg = err instanceof ApiError && err.status === 404
        ? 'This content does not exist (or was deleted).'
        : `Could not load the content: ${err.describe ? err.describe() : err}`;
      replace(notice, h('p', { class: 'notice error', role: 'alert' }, msg));
      if (err instanceof ApiError && err.status === 404 && view) {
        // Deleted, or no longer readable: nothing it said stays on screen.
        view = null;
        replace(body);
        replace(titleEl, 'Content ', h('code', { class: 'id' }, shortId(id)));
        root.querySelector('.view').dataset.status = 'deleted';
      }
    }
  }

  function reloadSoon() {
    clearTimeout(timer);
    timer = setTimeout(load, 150);
  }

  function onEvent(f) {
    const d = f.data || {};
    const text = f.event === EVENTS.CONTENT_INDEXED ? `version ${d.version} indexed`
      : f.event === EVENTS.CONTENT_UPDATED ? `version ${d.version} ${d.status}${d.reason ? `: ${d.reason}` : ''}`
        : f.event === EVENTS.CONTENT_DELETED ? 'deleted' : f.event;
    updates.push({ seq: f.seq, event: f.event });
    // A tab left open on an item that changes all day keeps the latest only.
    if (updates.length > UPDATES_KEEP) {
      updates.shift();
      updatesList.lastElementChild?.remove();
    }
    updatesList.prepend(h('li', null, time(f.ts, fmtTime), ' ', h('code', null, f.event), ' ', text,
      d.run_id ? [' · ', h('a', { href: `#/runs/${d.run_id}` }, 'run')] : null));
    ctx.announce(`Content ${text}`);
    reloadSoon();
  }

  unsubscribe = ctx.live.subscribe(topics.content(id), {
    onEvent,
    onReady: () => {
      replace(liveNotice);
      reloadSoon();
    },
    onResync: reloadSoon,
    onError: (e) => {
      replace(liveNotice, h('p', { class: 'notice error', role: 'alert' }, `Live updates unavailable: ${e.message}`));
      // Refused: perhaps no longer readable (made private, or deleted).
      // The reload then clears what the view showed of it.
      reloadSoon();
    },
  });
  load();
  debugState = () => ({ view, updates: updates.slice() });

  return () => {
    controller.abort();
    clearTimeout(timer);
    debugState = null;
    unsubscribe();
  };
}
