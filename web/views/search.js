// #/search?q=&category=&mode=: hybrid search with highlighted snippets, and a
// live `feed` panel of newly indexed content.

import { get } from '../api.js';
import { api, EVENTS, highlightSegments, termSegments, topics } from '../protocol.js';
import { fmtTime, h, replace, time } from '../dom.js';

const FEED_KEEP = 30;
let debugState = null;
export function debug() {
  return debugState ? debugState() : null;
}

function snippetNode(r, query) {
  const segs = Array.isArray(r.highlights) && r.highlights.length
    ? highlightSegments(r.snippet, r.highlights)
    : termSegments(r.snippet, query);
  return h('p', { class: 'snippet' }, segs.map((s) => (s.mark ? h('mark', null, s.text) : s.text)));
}

export function mount(root, _params, ctx) {
  ctx.setTitle('Search');
  const controller = new AbortController();
  let inflight = null;
  let lastResults = null;
  const feed = [];

  const q = h('input', { type: 'search', id: 'q', name: 'q', autocomplete: 'off', maxlength: '500', placeholder: 'e.g. tidal energy harbors' });
  const category = h('input', { type: 'text', id: 'category', name: 'category', autocomplete: 'off', list: 'search-categories', placeholder: 'any' });
  const categories = h('datalist', { id: 'search-categories' });
  const mode = h('select', { id: 'mode', name: 'mode' },
    h('option', { value: 'hybrid' }, 'Hybrid'),
    h('option', { value: 'vector' }, 'Vector'),
    h('option', { value: 'keyword' }, 'Keyword'));
  const qError = h('p', { class: 'field-error', id: 'q-error', hidden: true });
  q.setAttribute('aria-describedby', 'q-error');

  const form = h('form', { class: 'card search-form', role: 'search', 'aria-label': 'Search content' },
    h('div', { class: 'field grow' }, h('label', { for: 'q' }, 'Query'), q, qError),
    h('div', { class: 'field' }, h('label', { for: 'category' }, 'Category'), category, categories),
    h('div', { class: 'field' }, h('label', { for: 'mode' }, 'Mode'), mode),
    h('div', { class: 'field submit' }, h('button', { type: 'submit', class: 'btn primary' }, 'Search')));

  const status = h('p', { class: 'results-status', role: 'status', 'aria-live': 'polite' });
  const results = h('ol', { class: 'results' });
  const feedList = h('ol', { class: 'feed-list' });
  const feedLive = h('p', { class: 'visually-hidden', 'aria-live': 'polite' });
  const feedNotice = h('div', { class: 'notice-area' });

  replace(root,
    h('section', { class: 'view', 'aria-labelledby': 'search-title' },
      h('h1', { id: 'search-title' }, 'Search'),
      form,
      h('div', { class: 'split search-split' },
        h('section', { class: 'results-box', 'aria-labelledby': 'results-title' },
          h('h2', { id: 'results-title', class: 'visually-hidden' }, 'Results'),
          status, results),
        h('aside', { class: 'card feed', 'aria-labelledby': 'feed-title' },
          h('h2', { id: 'feed-title' }, h('span', { class: 'pulse', 'aria-hidden': 'true' }), 'Live feed'),
          h('p', { class: 'hint' }, 'Newly indexed content appears here as it is published.'),
          feedNotice, feedList, feedLive))));

  function setQueryInHash() {
    const p = new URLSearchParams();
    if (q.value.trim()) p.set('q', q.value.trim());
    if (category.value.trim()) p.set('category', category.value.trim());
    if (mode.value !== 'hybrid') p.set('mode', mode.value);
    const qs = p.toString();
    // replaceState: no hashchange, so the view (and its feed) stays mounted.
    history.replaceState(null, '', `#/search${qs ? `?${qs}` : ''}`);
  }

  async function run() {
    const text = q.value.trim();
    qError.hidden = true;
    q.removeAttribute('aria-invalid');
    // A search still in flight is for a query no longer asked.
    if (inflight) inflight.abort();
    if (!text) {
      replace(results);
      status.textContent = 'Type a query to search.';
      return;
    }
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const signal = inflight.signal;
    controller.signal.addEventListener('abort', () => inflight && inflight.abort(), { once: true });
    status.textContent = 'Searching…';
    root.querySelector('.results-box').setAttribute('aria-busy', 'true');
    try {
      const res = await get(api.search(), { query: { q: text, category: category.value.trim(), mode: mode.value }, signal });
      lastResults = res;
      const n = res.results.length;
      status.textContent = `${n} result${n === 1 ? '' : 's'} for “${res.query}” in ${res.took_ms} ms (${res.mode}).`
        + (res.degraded ? ` Vector search was unavailable: keyword results only.` : '');
      replace(results, n === 0
        ? h('li', { class: 'muted empty' }, 'Nothing matched. Try fewer or different words, or clear the category.')
        : res.results.map((r, i) => h('li', { class: 'result card', dataset: { contentId: r.content_id } },
          h('div', { class: 'result-head' },
            h('h3', null, h('a', { href: `#/content/${r.content_id}` }, r.title)),
            h('span', { class: 'score', title: 'Fused relevance score (reciprocal rank fusion)' }, `#${i + 1} · score ${Number(r.score).toFixed(4)}`)),
          snippetNode(r, res.query),
          r.sources ? h('p', { class: 'sources' },
            r.sources.vector ? h('span', { class: 'chip' }, 'vector') : null,
            r.sources.keyword ? h('span', { class: 'chip' }, 'keyword') : null) : null)));
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      if (err.field === 'q') {
        replace(qError, err.message.replace(/^q:\s*/, 'Query ')); qError.hidden = false;
        q.setAttribute('aria-invalid', 'true');
        status.textContent = '';
      } else {
        status.textContent = `Search failed: ${err.describe ? err.describe() : err}`;
      }
      replace(results);
    } finally {
      root.querySelector('.results-box').removeAttribute('aria-busy');
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    setQueryInHash();
    run();
  });

  function feedItem(item) {
    return h('li', { class: ['feed-item', item.fresh ? 'fresh' : null], dataset: { contentId: item.content_id, event: item.event } },
      h('div', { class: 'feed-head' },
        h('a', { href: `#/content/${item.content_id}` }, item.title || item.content_id),
        h('span', { class: ['chip', `ev-${item.event.replace('.', '-')}`] }, item.event.replace('content.', ''))),
      item.summary ? h('p', { class: 'feed-summary' }, item.summary) : null,
      h('p', { class: 'feed-meta' }, item.category ? `${item.category} · ` : '', time(item.ts, fmtTime)));
  }

  function renderFeed() {
    if (feed.length === 0) {
      replace(feedList, h('li', { class: 'muted' }, 'Waiting for new content…'));
      return;
    }
    replace(feedList, feed.map(feedItem));
  }

  // One line per document: its latest event.
  function apply(f, fresh) {
    const d = f.data || {};
    for (let i = feed.length - 1; i >= 0; i--) if (feed[i].content_id === d.content_id) feed.splice(i, 1);
    feed.unshift({ seq: f.seq, event: f.event, content_id: d.content_id, title: d.title, summary: d.summary, category: d.category, ts: f.ts, fresh });
    if (feed.length > FEED_KEEP) feed.pop();
  }

  const unsubscribe = ctx.live.subscribe(topics.feed(), {
    onEvent: (f) => {
      apply(f, true);
      renderFeed();
      if (f.event === EVENTS.CONTENT_INDEXED) feedLive.textContent = `Newly indexed: ${(f.data || {}).title}`;
    },
    // The events missed while the log was trimmed: its latest ones, oldest
    // first. None (a "from now" asked again): the catalog's latest instead.
    onResync: (snapshot) => {
      if (!snapshot) return seed();
      for (const f of snapshot.recent || []) apply(f, false);
      renderFeed();
    },
    onReady: () => replace(feedNotice),
    onError: (e) => replace(feedNotice, h('p', { class: 'notice error', role: 'alert' }, `The live feed is unavailable: ${e.message}`)),
  });

  // Seed the panel with the latest indexed items and the category list.
  async function seed() {
    try {
      const list = await get(api.content(), { query: { limit: 50 }, signal: controller.signal });
      const items = list.items || [];
      replace(categories, [...new Set(items.map((i) => i.category).filter(Boolean))].map((c) => h('option', { value: c })));
      const seeded = items.filter((i) => i.status === 'indexed').slice(0, 5)
        .filter((i) => !feed.some((f) => f.content_id === i.id))
        .map((i) => ({ event: EVENTS.CONTENT_INDEXED, content_id: i.id, title: i.title, summary: i.summary, category: i.category, ts: i.updated_at, fresh: false }));
      feed.push(...seeded);
      feed.splice(FEED_KEEP);
      renderFeed();
    } catch {
      renderFeed();
    }
  }
  seed();

  // Restore a query from the URL (#/search?q=…).
  q.value = ctx.query.get('q') || '';
  category.value = ctx.query.get('category') || '';
  if (['vector', 'keyword'].includes(ctx.query.get('mode'))) mode.value = ctx.query.get('mode');
  renderFeed();
  if (q.value) run();
  else status.textContent = 'Type a query to search.';

  debugState = () => ({ results: lastResults, feed: feed.map((f) => ({ ...f })) });

  return () => {
    controller.abort();
    if (inflight) inflight.abort();
    debugState = null;
    unsubscribe();
  };
}
