// #/import and #/import/<id>: a bulk import. Paste or pick a JSON file (an
// array of items, or {"items": [...]}) or an NDJSON file (one item per line),
// send it as one batch, then follow the batch live: the progress bar is fed by
// the `batch:<id>` topic (coalesced `batch.progress` events, then
// `batch.completed`), and the item table comes from GET /api/batches/<id>.

import { ApiError, endpoints, get, post } from '../api.js';
import { EVENTS, isUuid, topics } from '../protocol.js';
import { badge, h, replace, shortId } from '../dom.js';

/** Most items one batch takes (the server refuses more with a 422). */
export const MAX_ITEMS = 1000;

/** Parses pasted or loaded text into items: JSON array, {items}, or NDJSON. */
export function parseItems(text) {
  const t = (text || '').trim();
  if (!t) throw new Error('Paste or pick some items first.');
  if (t.startsWith('[') || t.startsWith('{')) {
    try {
      const v = JSON.parse(t);
      if (Array.isArray(v)) return v;
      if (v && Array.isArray(v.items)) return v.items;
      if (v && typeof v === 'object' && !Array.isArray(v)) return [v];
    } catch {
      /* not one JSON value: try NDJSON below */
    }
  }
  return t.split('\n').map((line) => line.trim()).filter(Boolean).map((line, i) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`Line ${i + 1} is not JSON.`);
    }
  });
}

let debugState = null;
export function debug() {
  return debugState ? debugState() : null;
}

export function mount(root, { id }, ctx) {
  ctx.setTitle(id ? `Import ${shortId(id)}` : 'Import');
  const text = h('textarea', { id: 'import-items', name: 'items', rows: '8', spellcheck: 'false',
    placeholder: '[{"title": "First", "body": "…"}, {"title": "Second", "body": "…", "visibility": "public"}]' });
  const file = h('input', { type: 'file', id: 'import-file', accept: '.json,.ndjson,.jsonl,application/json,application/x-ndjson' });
  const error = h('p', { class: 'field-error', id: 'import-error', hidden: true, role: 'alert' });
  text.setAttribute('aria-describedby', 'import-error');
  const button = h('button', { type: 'submit', class: 'btn primary' }, 'Import');
  const form = h('form', { class: 'card', 'aria-label': 'Import items' },
    h('div', { class: 'field' }, h('label', { for: 'import-items' }, `Items (JSON array or NDJSON, up to ${MAX_ITEMS})`), text),
    h('div', { class: 'field' }, h('label', { for: 'import-file' }, 'Or pick a file'), file),
    error,
    h('div', { class: 'field submit' }, button));
  const out = h('section', { class: 'batch-box', 'aria-labelledby': 'batch-title' });
  replace(root,
    h('section', { class: 'view', 'aria-labelledby': 'import-title' },
      h('h1', { id: 'import-title' }, 'Import'),
      h('p', { class: 'hint' }, 'Each item is {title, body, category?, tags?, author?, visibility?}, checked like a single submission; one bad item refuses the whole batch.'),
      form, out));

  const showError = (msg) => {
    replace(error, msg);
    error.hidden = false;
    text.setAttribute('aria-invalid', 'true');
  };

  file.addEventListener('change', async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    try {
      text.value = await f.text();
    } catch (err) {
      showError(`The file could not be read: ${err && err.message ? err.message : err}`);
    }
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    text.removeAttribute('aria-invalid');
    let items;
    try {
      items = parseItems(text.value);
    } catch (err) {
      showError(err.message);
      return;
    }
    if (items.length > MAX_ITEMS) {
      showError(`${items.length} items: a batch takes at most ${MAX_ITEMS}.`);
      return;
    }
    button.disabled = true;
    try {
      const r = await post(endpoints.contentBatch(), { items });
      // Only if the user is still here (a large import takes a while).
      if (root.isConnected) location.hash = `#/import/${r.batch_id}`;
    } catch (err) {
      showError(err.describe ? err.describe() : String(err));
    } finally {
      button.disabled = false;
    }
  });

  debugState = null;
  if (!id || !isUuid(id)) {
    if (id) replace(out, h('p', { class: 'notice error', role: 'alert' }, 'This batch id is not valid.'));
    return () => {};
  }

  let counts = null;
  let view = null;
  let done = false;
  let gone = false;

  function render() {
    const c = counts || (view && { total: view.total, completed: view.completed, failed: view.failed, spawned: view.spawned }) || null;
    if (!c) {
      replace(out, h('p', { class: 'hint' }, 'Loading the batch…'));
      return;
    }
    const settled = c.completed + c.failed;
    const failedItems = view ? view.items.filter((i) => i.status === 'failed') : [];
    replace(out,
      h('div', { class: 'result-head' }, h('h2', { id: 'batch-title' }, `Batch ${shortId(id)}`), badge(done ? 'completed' : 'running')),
      h('progress', { id: 'batch-progress', max: String(c.total), value: String(settled), 'aria-label': 'Items settled' }),
      h('p', { id: 'batch-counts', 'aria-live': 'polite' },
        `${settled} of ${c.total} settled: ${c.completed} completed, ${c.failed} failed, ${c.spawned} spawned`),
      view ? h('p', { class: 'hint' }, `At most ${view.max_in_flight} in flight (observed ${view.max_in_flight_observed}).`) : null,
      failedItems.length
        ? h('table', { class: 'batch-failures' },
          h('caption', null, 'Failed items'),
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Index'), h('th', { scope: 'col' }, 'Reason'))),
          h('tbody', null, failedItems.map((i) => h('tr', null, h('td', null, String(i.index)), h('td', null, i.error || '')))))
        : null);
  }

  async function refresh() {
    try {
      view = await get(endpoints.batch(id));
      if (view.status === 'completed') done = true;
      render();
    } catch (err) {
      // Only a refusal ends the view; a failed request leaves the events to
      // go on updating it (the next refresh may work).
      if (err instanceof ApiError && (err.status === 404 || err.status === 403)) gone = true;
      replace(out, h('p', { class: 'notice error', role: 'alert' }, `This batch is not available: ${err.describe ? err.describe() : err}`));
    }
  }

  const unsubscribe = ctx.live.subscribe(topics.batch(id), {
    after: 0,
    onEvent: (f) => {
      if (f.data && f.data.counts) counts = f.data.counts;
      if (f.event === EVENTS.BATCH_COMPLETED) {
        done = true;
        ctx.announce('Import completed');
        refresh();
      }
      if (!gone) render();
    },
    // The snapshot is the batch's view: its counts replace the last event's
    // (the events of the gap, the completion perhaps, are not coming).
    onResync: (snapshot) => {
      if (snapshot && Number.isFinite(snapshot.total)) {
        view = snapshot;
        counts = null;
        if (snapshot.status === 'completed') done = true;
        if (!gone) render();
      }
      refresh();
    },
    onError: (e) => {
      gone = true;
      replace(out, h('p', { class: 'notice error', role: 'alert' }, `This batch is not available: ${e.message}`));
    },
  });
  refresh();
  debugState = () => ({ id, counts, done });
  return () => {
    unsubscribe();
    debugState = null;
  };
}
