// #/inspector and #/inspector/<kind>/<id>: the admin inspector. Every call
// carries `Authorization: Bearer <token>`; the token is entered once and kept
// in this tab's sessionStorage (never in the page source or a URL).

import { adminToken, request, setAdminToken } from '../api.js';
import { ACTOR_KINDS, api, STAGES, topics } from '../protocol.js';
import { badge, fmtDateTime, fmtMs, fmtRelative, fmtTime, h, jsonBlock, keepFocus, replace, shortId, time } from '../dom.js';

/** How often an inspected run or item is re-read when its topic refuses this tab. */
const POLL_MS = 5_000;
const STATUS_FILTERS = ['', 'active', 'queued', 'running', 'completed', 'failed', 'cancelled', 'processing', 'indexed'];

let debugState = null;
export function debug() {
  return debugState ? debugState() : null;
}

const adminGet = (path, query, signal) => request('GET', path, { admin: true, query, signal });
// The operator's actions, run retries and cancels included: the admin token
// acts on any tenant's run, where the signed-in credential may not.
const adminPost = (path, signal) => request('POST', path, { admin: true, signal });

function errorBox(err) {
  const auth = err && (err.status === 401 || err.status === 403);
  return h('div', { class: 'notice error', role: 'alert', dataset: { status: String(err.status ?? '') } },
    h('p', null, h('strong', null, err.describe ? err.describe() : String(err))),
    auth ? h('p', null, 'Enter the admin token (ADMIN_TOKEN, in .dev.vars locally) above.') : null);
}

// ---------------------------------------------------------------- token panel

function tokenPanel(onChange) {
  const has = Boolean(adminToken());
  if (has) {
    return h('section', { class: 'card token-panel', 'aria-label': 'Admin token' },
      h('p', null, h('span', { class: 'badge st-completed' }, h('span', { 'aria-hidden': 'true' }, '✓'), ' token set'),
        ' Admin token kept for this tab only.'),
      h('button', { type: 'button', class: 'btn', onclick: () => { setAdminToken(''); onChange(); } }, 'Forget token'));
  }
  const input = h('input', { type: 'password', id: 'admin-token', name: 'admin-token', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'admin-token-hint' });
  const form = h('form', { class: 'card token-panel', 'aria-label': 'Admin token' },
    h('div', { class: 'field grow' },
      h('label', { for: 'admin-token' }, 'Admin token'),
      h('p', { class: 'hint', id: 'admin-token-hint' }, 'Sent as Authorization: Bearer. Kept in this tab’s session storage only.'),
      input),
    h('div', { class: 'field submit' }, h('button', { type: 'submit', class: 'btn primary' }, 'Use token')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) {
      input.focus();
      return;
    }
    setAdminToken(t);
    onChange();
  });
  return form;
}

// ------------------------------------------------------------------- metrics

function latencyChart(stageLatency) {
  const rows = STAGES.map((s) => ({ stage: s, ...(stageLatency?.[s] || {}) }));
  const max = Math.max(1, ...rows.flatMap((r) => [r.p50_ms, r.p95_ms, r.p99_ms].filter((x) => typeof x === 'number')));
  const series = [['p50_ms', 'p50'], ['p95_ms', 'p95'], ['p99_ms', 'p99']];
  // CSS bars: they reflow from 360 px to desktop with text at its normal size.
  const chart = h('div', {
    class: 'lat-chart', role: 'img',
    'aria-label': `Stage latency. ${rows.map((r) => `${r.stage}: p50 ${fmtMs(r.p50_ms)}, p95 ${fmtMs(r.p95_ms)}, p99 ${fmtMs(r.p99_ms)}`).join('; ')}`,
  }, rows.map((r) => h('div', { class: 'lat-row', dataset: { stage: r.stage } },
    h('span', { class: 'lat-label' }, r.stage),
    h('span', { class: 'lat-bars' }, series.map(([key, name]) => {
      const v = r[key];
      const bar = h('span', { class: `lat-bar bar-${name}`, title: `${r.stage} ${name}: ${fmtMs(v)}` });
      bar.style.width = typeof v === 'number' ? `${Math.max(0.5, (v / max) * 100).toFixed(1)}%` : '0';
      return bar;
    })),
    h('span', { class: 'lat-value' }, typeof r.p95_ms === 'number' ? `p95 ${fmtMs(r.p95_ms)}` : 'no data'))));
  const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' },
    series.map(([, name]) => h('li', null, h('span', { class: `swatch bar-${name}` }), name)));
  const table = h('details', { class: 'chart-table' },
    h('summary', null, 'Show as a table'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
      h('caption', { class: 'visually-hidden' }, 'Stage latency percentiles'),
      h('thead', null, h('tr', null, ['Stage', 'Samples', 'p50', 'p95', 'p99'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, rows.map((r) => h('tr', null, h('th', { scope: 'row' }, r.stage), h('td', { class: 'num' }, String(r.count ?? 0)),
        h('td', { class: 'num' }, fmtMs(r.p50_ms)), h('td', { class: 'num' }, fmtMs(r.p95_ms)), h('td', { class: 'num' }, fmtMs(r.p99_ms))))))));
  return h('figure', { class: 'chart-figure' }, chart, h('figcaption', null, legend, ' Bars are scaled to the slowest p99 (', fmtMs(max), ').'), table);
}

function metricsView(m) {
  const runs = m.runs || {};
  const cards = [
    ['Runs completed', runs.completed], ['Runs failed', runs.failed], ['Cancelled', runs.cancelled],
    ['In flight', runs.in_flight], ['Retries', m.retries], ['Dead letters', m.dead_letters], ['Sessions', m.sessions],
  ];
  const actors = m.actors || {};
  return [
    h('ul', { class: 'stat-cards' }, cards.map(([k, v]) => h('li', { class: 'stat' }, h('span', { class: 'stat-value' }, String(v ?? 0)), h('span', { class: 'stat-label' }, k)))),
    h('div', { class: 'grid-2 metrics-grid' },
      h('div', null, h('h3', null, 'Stage latency'), latencyChart(m.stage_latency)),
      h('div', null, h('h3', null, 'Actors by kind and status'),
        h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
          h('caption', { class: 'visually-hidden' }, 'Actor counts'),
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'num' }, 'Count'))),
          h('tbody', null, Object.entries(actors).flatMap(([kind, byStatus]) =>
            Object.entries(byStatus).map(([st, n]) => h('tr', null, h('td', null, kind), h('td', null, badge(st)), h('td', { class: 'num' }, String(n))))))),
        ),
        h('p', { class: 'hint' }, `Latency window: ${m.window?.stage_samples ?? 0} stage samples.`))),
  ];
}

// --------------------------------------------------------------- actor list

function actorsSection(signal) {
  const kind = h('select', { id: 'f-kind', name: 'kind' }, h('option', { value: '' }, 'All kinds'), ACTOR_KINDS.map((k) => h('option', { value: k }, k)));
  const status = h('select', { id: 'f-status', name: 'status' }, STATUS_FILTERS.map((s) => h('option', { value: s }, s || 'Any status')));
  const limit = h('select', { id: 'f-limit', name: 'limit' }, ['20', '50', '100'].map((n) => h('option', { value: n }, n)));
  const tbody = h('tbody');
  const out = h('div', { class: 'actors-out' });
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more');
  let cursor = null;
  // The filters the shown pages were asked with: "Load more" pages on
  // them, not on what the form says now (a cursor is the query's own).
  let applied = null;
  let loading = false;
  let generation = 0;

  const form = h('form', { class: 'filters', 'aria-label': 'Filter actors' },
    h('div', { class: 'field' }, h('label', { for: 'f-kind' }, 'Kind'), kind),
    h('div', { class: 'field' }, h('label', { for: 'f-status' }, 'Status'), status),
    h('div', { class: 'field' }, h('label', { for: 'f-limit' }, 'Per page'), limit),
    h('div', { class: 'field submit' }, h('button', { type: 'submit', class: 'btn' }, 'Apply')));

  async function load(append) {
    if (append && (loading || !applied)) return;
    if (!append) {
      applied = { kind: kind.value, status: status.value, limit: limit.value };
      generation += 1;
    }
    const asked = generation;
    const query = { ...applied, cursor: append ? cursor : undefined };
    loading = true;
    more.disabled = true;
    try {
      const res = await adminGet(api.adminActors(), query, signal);
      // An Apply since: its answer is the one shown.
      if (asked !== generation) return;
      cursor = res.next_cursor || null;
      more.hidden = !cursor;
      const rows = (res.items || []).map((a) => h('tr', { dataset: { kind: a.kind, id: a.id } },
        h('td', null, a.kind),
        h('td', null, h('a', { href: `#/inspector/${a.kind}/${a.id}` }, h('code', null, a.id))),
        h('td', null, badge(a.status)),
        h('td', null, time(a.updated_at, fmtDateTime))));
      if (!append) replace(tbody);
      tbody.append(...rows);
      replace(out, tbody.children.length === 0
        ? h('p', { class: 'muted' }, 'No actors match.')
        : h('div', { class: 'table-wrap' }, h('table', { class: 'data actors' },
          h('caption', { class: 'visually-hidden' }, 'Actors'),
          h('thead', null, h('tr', null, ['Kind', 'Id', 'Status', 'Updated'].map((c) => h('th', { scope: 'col' }, c)))),
          tbody)));
    } catch (err) {
      // An Apply since: its answer (or its own error) is the one shown.
      if ((err && err.name === 'AbortError') || asked !== generation) return;
      more.hidden = true;
      replace(out, errorBox(err));
    } finally {
      if (asked === generation) {
        loading = false;
        more.disabled = false;
      }
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    load(false);
  });
  more.addEventListener('click', () => load(true));
  load(false);
  return h('section', { class: 'card', 'aria-labelledby': 'actors-title' },
    h('h2', { id: 'actors-title' }, 'Actors'), form, out, more);
}

// ------------------------------------------------------------- dead letters

function deadLettersSection(signal, announce) {
  const out = h('div');
  const msg = h('p', { class: 'form-status', role: 'status', tabindex: '-1' });
  // A dead letter is retried, or dismissed by cancelling its run (DESIGN:
  // the operator retries or cancels it); either way the list reloads.
  const action = (d, label, url, said) => h('button', {
    type: 'button', class: 'btn small', 'aria-label': `${label} run ${shortId(d.run_id)}`, dataset: { focus: `${label}:${d.run_id}` },
    onclick: async (e) => {
      // Marked busy, not disabled: a disabled button drops the keyboard's focus.
      const button = e.currentTarget;
      if (button.getAttribute('aria-disabled') === 'true') return;
      button.setAttribute('aria-disabled', 'true');
      try {
        await adminPost(url(d.run_id));
        msg.textContent = `Run ${shortId(d.run_id)} ${said}.`;
        announce(msg.textContent);
      } catch (err) {
        msg.textContent = `${label} failed: ${err.describe ? err.describe() : err}`;
      }
      load();
    },
  }, label);
  async function load() {
    try {
      const res = await adminGet(api.deadLetters(), undefined, signal);
      const items = res.items || [];
      // A row that left the list takes its buttons along: focus goes to what was said.
      keepFocus(out, () => replace(out, items.length === 0
        ? h('p', { class: 'muted' }, 'No dead letters. Every run either completed or is still going.')
        : h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
          h('caption', { class: 'visually-hidden' }, 'Failed runs'),
          h('thead', null, h('tr', null, ['Run', 'Stage', 'Error', 'Attempts', 'Failed', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', null, items.map((d) => h('tr', { dataset: { runId: d.run_id } },
            h('td', null, h('a', { href: `#/inspector/run/${d.run_id}` }, h('code', null, shortId(d.run_id)))),
            h('td', null, d.stage || '—'),
            h('td', null, d.error_class ? h('span', { class: 'err-class' }, d.error_class) : null, ' ', d.error || ''),
            h('td', { class: 'num' }, String(d.attempts ?? '—')),
            h('td', null, time(d.failed_at, fmtDateTime)),
            h('td', { class: 'actions' },
              action(d, 'Retry', api.runRetry, 're-queued'),
              action(d, 'Dismiss', api.runCancel, 'cancelled: it left the list')))))))), () => msg);
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      replace(out, errorBox(err));
    }
  }
  load();
  return h('section', { class: 'card', 'aria-labelledby': 'dead-title' },
    h('h2', { id: 'dead-title' }, 'Dead letters'), msg, out);
}

// -------------------------------------------------------------- actor detail

function journalTable(stages) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data journal' },
    h('caption', { class: 'visually-hidden' }, 'Stage journal'),
    h('thead', null, h('tr', null, ['Stage', 'Status', 'Attempts', 'Duration', 'Started', 'Finished', 'Error / next']
      .map((c) => h('th', { scope: 'col', class: c === 'Attempts' || c === 'Duration' ? 'num' : null }, c)))),
    h('tbody', null, stages.map((s) => h('tr', { dataset: { stage: s.name, status: s.status } },
      h('th', { scope: 'row' }, s.name),
      h('td', null, badge(s.status)),
      h('td', { class: 'num' }, String(s.attempts ?? 0)),
      h('td', { class: 'num' }, fmtMs(s.duration_ms)),
      h('td', null, s.started_at ? time(s.started_at, fmtTime) : '—'),
      h('td', null, s.finished_at ? time(s.finished_at, fmtTime) : '—'),
      h('td', null,
        s.error ? [h('span', { class: 'err-class' }, s.error.class), ' ', s.error.message] : null,
        s.next_at ? [' next ', time(s.next_at, fmtTime)] : null,
        s.reason ? s.reason : null))))));
}

function eventsTable(tail) {
  if (!tail || tail.length === 0) return h('p', { class: 'muted' }, 'No events logged.');
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data events' },
    h('caption', { class: 'visually-hidden' }, 'Event log tail'),
    h('thead', null, h('tr', null, ['Seq', 'Time', 'Event', 'Data'].map((c) => h('th', { scope: 'col', class: c === 'Seq' ? 'num' : null }, c)))),
    h('tbody', null, tail.slice().reverse().map((e) => h('tr', { dataset: { seq: String(e.seq) } },
      h('td', { class: 'num' }, String(e.seq)),
      h('td', null, time(e.ts, fmtTime)),
      h('td', null, h('code', null, e.event)),
      h('td', null, h('code', { class: 'data-cell' }, compact(e.data))))))));
}

function compact(data) {
  if (!data || typeof data !== 'object') return String(data ?? '');
  const { run_id: _r, content_id: _c, ...rest } = data;
  return JSON.stringify(rest);
}

function storageTable(storage) {
  if (!storage || typeof storage !== 'object') return jsonBlock(storage, 'Storage');
  const tables = Object.entries(storage).filter(([, v]) => v && typeof v === 'object' && 'rows' in v);
  const scalars = Object.entries(storage).filter(([, v]) => typeof v !== 'object');
  return [
    scalars.length ? h('dl', { class: 'facts compact' }, scalars.map(([k, v]) => h('div', null, h('dt', null, k.replace(/_/g, ' ')), h('dd', null, k.endsWith('size') ? `${Number(v).toLocaleString()} bytes` : String(v))))) : null,
    h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
      h('caption', { class: 'visually-hidden' }, 'SQLite tables'),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Table'), h('th', { scope: 'col', class: 'num' }, 'Rows'))),
      h('tbody', null, tables.map(([name, v]) => h('tr', null, h('td', null, h('code', null, name)), h('td', { class: 'num' }, String(v.rows))))))),
  ];
}

function detailView(root, kind, id, ctx, signal) {
  const notice = h('div', { class: 'notice-area', 'aria-live': 'polite', tabindex: '-1' });
  const out = h('div', { class: 'detail-out' });
  const title = h('h2', { id: 'detail-title' }, `${kind} `, h('code', { class: 'id wrap' }, id));
  let data = null;
  let unsubscribe = null;
  let timer = null;
  // Whether the reader opened the state's JSON: a refresh keeps it open.
  let stateOpen = false;

  async function act(label, fn) {
    replace(notice, h('p', { class: 'notice info' }, `${label}…`));
    try {
      const res = await fn();
      replace(notice, h('p', { class: 'notice ok', role: 'status' }, `${label}: done.`));
      ctx.announce(`${label}: done`);
      if (res && res.kind) {
        data = res;
        render();
      } else {
        load();
      }
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      replace(notice, errorBox(err));
    }
  }

  function render() {
    const d = data;
    const state = d.state || {};
    const stages = Array.isArray(state.stages) ? state.stages : null;
    const alarm = d.alarm_at
      ? [time(d.alarm_at, fmtDateTime), ` (${fmtRelative(d.alarm_at)})`]
      : 'none armed';
    keepFocus(out, () => replace(out,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn', dataset: { focus: 'alarm' }, onclick: () => act('Fire alarm', () => adminPost(api.adminAlarm(kind, id), signal)) }, 'Fire alarm'),
        kind === 'run' ? h('button', {
          type: 'button', class: 'btn', dataset: { focus: 'retry' }, disabled: !['failed', 'cancelled'].includes(state.status),
          title: 'Only a failed or cancelled run can be retried',
          onclick: () => act('Retry run', () => adminPost(api.runRetry(id), signal)),
        }, 'Retry run') : null,
        kind === 'run' ? h('button', {
          type: 'button', class: 'btn danger', dataset: { focus: 'cancel' }, disabled: ['completed', 'cancelled'].includes(state.status),
          title: 'A queued or running run stops; a failed one leaves the dead-letter list (it can still be retried)',
          onclick: () => act('Cancel run', () => adminPost(api.runCancel(id), signal)),
        }, 'Cancel run') : null,
        h('button', { type: 'button', class: 'btn', dataset: { focus: 'refresh' }, onclick: () => act('Refresh', () => adminGet(api.adminActor(kind, id), undefined, signal)) }, 'Refresh'),
        kind === 'run' ? h('a', { class: 'btn link', href: `#/runs/${id}` }, 'Open live run view') : null,
        kind === 'content' ? h('a', { class: 'btn link', href: `#/content/${id}` }, 'Open content view') : null,
        kind === 'run' && state.content_id ? h('a', { class: 'btn link', href: `#/inspector/content/${state.content_id}` }, 'Inspect its content') : null),
      h('dl', { class: 'facts' },
        stages ? h('div', null, h('dt', null, 'Run status'), h('dd', { id: 'inspect-status' }, badge(state.status))) : null,
        h('div', null, h('dt', null, 'Alarm'), h('dd', { id: 'inspect-alarm' }, alarm)),
        h('div', null, h('dt', null, 'WebSockets'), h('dd', null, String(d.websockets?.count ?? 0))),
        h('div', null, h('dt', null, 'Last event seq'), h('dd', null, String(d.events?.last_seq ?? 0)))),
      stages ? h('section', { class: 'card', 'aria-labelledby': 'journal-title' },
        h('h3', { id: 'journal-title' }, 'Stage journal'), journalTable(stages),
        state.reason ? h('p', { class: 'notice info' }, state.reason) : null) : null,
      h('section', { class: 'card', 'aria-labelledby': 'events-title' },
        h('h3', { id: 'events-title' }, `Event log (last ${d.events?.tail?.length ?? 0} of ${d.events?.last_seq ?? 0})`),
        eventsTable(d.events?.tail)),
      h('div', { class: 'grid-2' },
        h('section', { class: 'card', 'aria-labelledby': 'sockets-title' },
          h('h3', { id: 'sockets-title' }, 'Sockets'),
          (d.websockets?.sockets || []).length
            ? h('ul', null, d.websockets.sockets.map((s) => h('li', null, h('code', null, (s.tags || []).join(', ') || 'socket'))))
            : h('p', { class: 'muted' }, 'No hibernating WebSockets on this actor.')),
        h('section', { class: 'card', 'aria-labelledby': 'storage-title' },
          h('h3', { id: 'storage-title' }, 'Storage'), storageTable(d.storage))),
      h('details', { class: 'card', open: stateOpen, ontoggle: (e) => { stateOpen = e.currentTarget.open; } },
        h('summary', null, h('h3', { class: 'inline' }, 'Full state (JSON)')), jsonBlock(state, 'Actor state'))),
    // A pressed action that is disabled now (Cancel on a cancelled run): the notice says what happened.
    () => notice);
  }

  let loading = false;
  let stale = false;
  async function load() {
    // A poll does not start while the last read is still out; a reload asked
    // for meanwhile (an event after that read began) runs once it is back,
    // so the view never ends on a state older than the last event.
    if (loading) {
      stale = true;
      return;
    }
    loading = true;
    stale = false;
    try {
      data = await adminGet(api.adminActor(kind, id), undefined, signal);
      render();
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      replace(out, errorBox(err));
    } finally {
      loading = false;
      if (stale && !signal.aborted) load();
    }
  }

  // Runs and content items refresh live when their topic moves. The tab's
  // session is the signed-in credential's, not the admin token's: a topic
  // it may not read is refused, and the view polls instead.
  let poller = null;
  if (kind === 'run' || kind === 'content') {
    unsubscribe = ctx.live.subscribe(kind === 'run' ? topics.run(id) : topics.content(id), {
      onEvent: () => {
        clearTimeout(timer);
        timer = setTimeout(load, 200);
      },
      onError: () => {
        if (poller) return;
        replace(notice, h('p', { class: 'notice info', role: 'status' }, 'Live updates are not available to this tab; refreshing every 5 s.'));
        poller = setInterval(load, POLL_MS);
      },
      // The log was trimmed past this tab's cursor: what it shows is stale.
      onResync: () => load(),
      // Live again (a reconnect's subscribe was taken): no more polling.
      onReady: () => {
        if (!poller) return;
        clearInterval(poller);
        poller = null;
        replace(notice);
      },
    });
  }
  load();
  root.append(
    h('p', null, h('a', { href: '#/inspector' }, '← All actors')),
    h('section', { class: 'detail', 'aria-labelledby': 'detail-title' }, title, notice, out));
  debugState = () => ({ kind, id, data });
  return () => {
    clearTimeout(timer);
    clearInterval(poller);
    if (unsubscribe) unsubscribe();
  };
}

// --------------------------------------------------------------------- mount

export function mount(root, params, ctx) {
  ctx.setTitle('Inspector');
  let controller = null;
  let cleanupDetail = null;

  function build() {
    if (controller) controller.abort();
    if (cleanupDetail) cleanupDetail();
    cleanupDetail = null;
    controller = new AbortController();
    const signal = controller.signal;
    const body = h('div', { class: 'inspector-body' });
    replace(root,
      h('section', { class: 'view', 'aria-labelledby': 'inspector-title' },
        h('h1', { id: 'inspector-title' }, 'Inspector'),
        tokenPanel(() => {
          build();
          document.getElementById(adminToken() ? 'inspector-title' : 'admin-token')?.focus?.();
        }),
        body));
    if (params.kind && params.id) {
      ctx.setTitle(`Inspect ${params.kind} ${shortId(params.id)}`);
      cleanupDetail = detailView(body, params.kind, params.id, ctx, signal);
      return;
    }
    const metricsOut = h('div', { class: 'metrics-out' }, h('p', { class: 'muted' }, 'Loading metrics…'));
    body.append(
      h('section', { class: 'card', 'aria-labelledby': 'metrics-title' }, h('h2', { id: 'metrics-title' }, 'Metrics'), metricsOut),
      actorsSection(signal),
      deadLettersSection(signal, ctx.announce));
    adminGet(api.metrics(), undefined, signal)
      .then((m) => replace(metricsOut, metricsView(m)))
      .catch((err) => {
        if (err && err.name === 'AbortError') return;
        replace(metricsOut, errorBox(err));
      });
    debugState = () => ({ overview: true });
  }

  build();
  return () => {
    if (controller) controller.abort();
    if (cleanupDetail) cleanupDetail();
    debugState = null;
  };
}

