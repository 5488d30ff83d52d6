// #/runs/<id>: the live run view. The journal from GET /api/runs/<id> is the
// baseline; then the run topic is subscribed with after=0 and every event is
// applied in seq order (duplicates skipped by seq), so the state converges on
// the run actor's own journal. A reload shows the same state.

import { ApiError, get, post } from '../api.js';
import { api, applyRunEvent, emptyRun, EVENTS, isUuid, STAGES, TERMINAL_RUN_STATUSES, topics } from '../protocol.js';
import { badge, fmtDateTime, fmtMs, fmtRelative, fmtTime, h, keepFocus, replace, shortId, time } from '../dom.js';

/**
 * How long a run that answers 404 is waited for: a submission is accepted
 * (202) before its run is started, and a start that failed is retried by the
 * item's alarm within a few seconds.
 */
const START_WAIT_MS = 10_000;

const LOG_KEEP = 500;
let debugState = null;

export function debug() {
  return debugState ? debugState() : null;
}

function stageDetail(st) {
  const rows = [
    ['Attempts', String(st.attempts ?? 0)],
    ['Duration', st.duration_ms !== undefined && st.duration_ms !== null ? fmtMs(st.duration_ms) : '—'],
  ];
  if (st.finished_at && st.status !== 'running') rows.push(['Done', fmtTime(st.finished_at)]);
  return h('dl', { class: 'stage-facts' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

function stageItem(st, i) {
  const retry = st.status === 'retrying' && st.next_at
    ? h('p', { class: 'stage-retry' },
      `Attempt ${(st.attempts ?? 0) + 1} at `, time(st.next_at, fmtTime), ' ',
      h('span', { class: 'countdown', dataset: { at: st.next_at } }, `(${fmtRelative(st.next_at)})`))
    : null;
  const err = st.error && st.status !== 'completed'
    ? h('p', { class: 'stage-error' }, h('span', { class: 'err-class' }, st.error.class || 'error'), ' ', st.error.message || '')
    : null;
  const reason = st.reason ? h('p', { class: 'stage-reason' }, st.reason) : null;
  return h('li', { class: ['stage', `st-${st.status}`], dataset: { stage: st.name, status: st.status, attempts: String(st.attempts ?? 0) } },
    h('div', { class: 'stage-head' },
      h('span', { class: 'stage-num', 'aria-hidden': 'true' }, String(i + 1)),
      h('h3', { class: 'stage-name' }, st.name)),
    badge(st.status),
    stageDetail(st),
    retry, err, reason);
}

function eventSummary(f) {
  const d = f.data || {};
  switch (f.event) {
    case EVENTS.STAGE_STARTED: return `${d.stage} attempt ${d.attempt}`;
    case EVENTS.STAGE_COMPLETED: return `${d.stage} in ${fmtMs(d.duration_ms)}`;
    case EVENTS.STAGE_RETRYING: return `${d.stage} attempt ${d.attempt} failed (${d.error}); next at ${fmtTime(d.next_at)}`;
    case EVENTS.STAGE_SKIPPED: return `${d.stage}: ${d.reason}`;
    case EVENTS.STAGE_FAILED: return `${d.stage} after ${d.attempts} attempts: ${d.error}`;
    case EVENTS.RUN_QUEUED: return `version ${d.version}${d.retry ? ' (operator retry)' : ''}`;
    case EVENTS.RUN_COMPLETED: return `in ${fmtMs(d.duration_ms)}${d.skipped && d.skipped.length ? `, skipped ${d.skipped.join(', ')}` : ''}`;
    case EVENTS.RUN_FAILED: return `${d.stage}: ${d.error}`;
    case EVENTS.RUN_CANCELLED: return d.reason || '';
    default: return '';
  }
}

export function mount(root, { id }, ctx) {
  ctx.setTitle(`Run ${shortId(id)}`);
  const controller = new AbortController();
  let run = emptyRun(id);
  let loaded = false;
  let synced = false;
  let unsubscribe = null;
  let renderQueued = false;
  let refetching = false;
  const log = [];

  const header = h('div', { class: 'run-header' });
  const progress = h('div', { class: 'run-progress' });
  const track = h('ol', { class: 'track', 'aria-label': 'Pipeline stages' });
  const notice = h('div', { class: 'notice-area' });
  const logBody = h('tbody');
  const logCount = h('span', { class: 'muted' });
  const logBox = h('details', { class: 'card log', open: true },
    h('summary', null, h('h2', { class: 'inline' }, 'Event log'), ' ', logCount),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'data' },
        h('caption', { class: 'visually-hidden' }, 'Events of this run, in sequence order'),
        h('thead', null, h('tr', null, h('th', { scope: 'col', class: 'num' }, 'Seq'), h('th', { scope: 'col' }, 'Time'),
          h('th', { scope: 'col' }, 'Event'), h('th', { scope: 'col' }, 'Detail'))),
        logBody)));

  replace(root,
    h('section', { class: 'view', 'aria-labelledby': 'run-title' },
      h('h1', { id: 'run-title' }, 'Run ', h('code', { class: 'id' }, shortId(id))),
      notice, header, progress,
      h('section', { class: 'card', 'aria-labelledby': 'track-title' },
        h('h2', { id: 'track-title' }, 'Stages'),
        track),
      logBox));

  if (!isUuid(id)) {
    replace(notice, h('p', { class: 'notice error', role: 'alert' }, `“${id}” is not a run id.`));
    return () => {};
  }

  function render() {
    renderQueued = false;
    const done = run.stages.filter((s) => s.status === 'completed' || s.status === 'skipped').length;
    const terminal = TERMINAL_RUN_STATUSES.includes(run.status);
    root.querySelector('.view').dataset.runStatus = run.status;
    keepFocus(header, () => replace(header,
      h('dl', { class: 'facts' },
        h('div', null, h('dt', null, 'Status'), h('dd', { id: 'run-status', tabindex: '-1', dataset: { focus: 'status' } }, badge(run.status))),
        h('div', null, h('dt', null, 'Content'), h('dd', null, run.content_id
          ? h('a', { href: `#/content/${run.content_id}` }, h('code', null, shortId(run.content_id)), run.version ? ` v${run.version}` : '')
          : '—')),
        h('div', null, h('dt', null, 'Created'), h('dd', null, time(run.created_at, fmtDateTime))),
        h('div', null, h('dt', null, 'Finished'), h('dd', null, run.finished_at ? time(run.finished_at, fmtDateTime) : '—')),
        h('div', null, h('dt', null, 'Run id'), h('dd', null, h('code', { class: 'id wrap' }, id)))),
      run.reason ? h('p', { class: ['notice', run.status === 'failed' ? 'error' : 'info'] }, run.reason) : null,
      h('div', { class: 'actions' },
        h('a', { class: 'btn', href: `#/inspector/run/${id}`, dataset: { focus: 'inspect' } }, 'Inspect actor'),
        run.status === 'failed' || run.status === 'cancelled'
          ? h('button', { type: 'button', class: 'btn', dataset: { focus: 'retry' }, onclick: () => action('retry') }, 'Retry run') : null,
        (!terminal || run.status === 'failed') && loaded
          ? h('button', { type: 'button', class: 'btn danger', dataset: { focus: 'cancel' }, onclick: () => action('cancel') }, 'Cancel run') : null)),
    // A pressed action that is gone now (Cancel on a cancelled run): the status says what happened.
    () => header.querySelector('#run-status'));
    replace(progress,
      h('label', { for: 'run-progress-bar' }, `${done} of ${STAGES.length} stages done`),
      h('progress', { id: 'run-progress-bar', max: String(STAGES.length), value: String(done) }));
    replace(track, run.stages.map(stageItem));
    logCount.textContent = `(${log.length})`;
    replace(logBody, log.slice().reverse().map((f) =>
      h('tr', { dataset: { seq: String(f.seq) } },
        h('td', { class: 'num' }, String(f.seq)),
        h('td', null, time(f.ts, fmtTime)),
        h('td', null, h('code', null, f.event)),
        h('td', null, eventSummary(f)))));
  }

  function schedule() {
    if (!synced || renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(render);
  }

  // Countdown for retrying stages.
  const ticker = setInterval(() => {
    for (const el of track.querySelectorAll('.countdown')) el.textContent = `(${fmtRelative(el.dataset.at)})`;
  }, 1000);

  let acting = false;
  async function action(op) {
    // A double click sends one request (a second retry would be a 409).
    if (acting) return;
    acting = true;
    try {
      const view = await post(op === 'retry' ? api.runRetry(id) : api.runCancel(id), {});
      replace(notice);
      ctx.announce(`Run ${op === 'retry' ? 'retry requested' : 'cancelled'}.`);
      if (view && view.stages) {
        run = view;
        render();
      }
    } catch (err) {
      replace(notice, h('p', { class: 'notice error', role: 'alert' }, `Could not ${op} the run: ${err.describe ? err.describe() : err}`));
    } finally {
      acting = false;
    }
  }

  async function refetch() {
    if (refetching) return;
    refetching = true;
    try {
      const fresh = await get(api.run(id), { signal: controller.signal });
      // Only a terminal journal is final; a live one may be older than the events.
      if (TERMINAL_RUN_STATUSES.includes(fresh.status) && fresh.status === run.status) {
        run = fresh;
        schedule();
      }
    } catch {
      /* the event-built state stands */
    } finally {
      refetching = false;
    }
  }

  function onEvent(f) {
    applyRunEvent(run, f);
    log.push(f);
    if (log.length > LOG_KEEP) log.shift();
    if (synced) {
      const d = f.data || {};
      if (f.event === EVENTS.STAGE_COMPLETED) ctx.announce(`${d.stage} completed`);
      else if (f.event === EVENTS.STAGE_RETRYING) ctx.announce(`${d.stage} failed, retrying at ${fmtTime(d.next_at)}`);
      else if (f.event === EVENTS.STAGE_FAILED) ctx.announce(`${d.stage} failed`);
      else if (f.event === EVENTS.STAGE_SKIPPED) ctx.announce(`${d.stage} skipped`);
      else if (f.event === EVENTS.RUN_COMPLETED) ctx.announce('Run completed');
      else if (f.event === EVENTS.RUN_FAILED) ctx.announce('Run failed');
      else if (f.event === EVENTS.RUN_CANCELLED) ctx.announce('Run cancelled');
    }
    if ([EVENTS.RUN_COMPLETED, EVENTS.RUN_FAILED, EVENTS.RUN_CANCELLED].includes(f.event) && synced) refetch();
    schedule();
  }

  /** The run, waiting up to START_WAIT_MS for one not started yet. */
  async function firstLoad() {
    const giveUpAt = Date.now() + START_WAIT_MS;
    for (let wait = 250; ; wait = Math.min(wait * 2, 4000)) {
      try {
        return await get(api.run(id), { signal: controller.signal });
      } catch (err) {
        const left = giveUpAt - Date.now();
        if (!(err instanceof ApiError) || err.status !== 404 || left <= 0) throw err;
        replace(notice, h('p', { class: 'notice', role: 'status' }, 'Waiting for the run to start…'));
        await new Promise((resolve) => setTimeout(resolve, Math.min(wait, left)));
        if (controller.signal.aborted) throw new DOMException('left the view', 'AbortError');
      }
    }
  }

  (async () => {
    try {
      run = await firstLoad();
      replace(notice);
      loaded = true;
      synced = true;
      render();
      synced = false; // the replay below is applied without repainting until `ready`
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      const msg = err instanceof ApiError && err.status === 404 ? 'No run with this id.' : `Could not load the run: ${err.describe ? err.describe() : err}`;
      replace(notice, h('p', { class: 'notice error', role: 'alert' }, msg));
      if (!(err instanceof ApiError) || err.status >= 500 || err.status === 0) synced = true;
      else return;
    }
    unsubscribe = ctx.live.subscribe(topics.run(id), {
      after: 0,
      onEvent,
      onReady: () => {
        const first = !synced;
        synced = true;
        if (first) ctx.announce(`Run ${run.status}`);
        if (TERMINAL_RUN_STATUSES.includes(run.status)) refetch();
        schedule();
      },
      onResync: (snapshot) => {
        if (snapshot && Array.isArray(snapshot.stages)) run = structuredClone(snapshot);
        ctx.announce('Run state resynchronised');
        synced = true;
        schedule();
      },
      onError: (e) => {
        replace(notice, h('p', { class: 'notice error', role: 'alert' }, `Live updates unavailable: ${e.message}`));
      },
    });
  })();

  render();
  debugState = () => ({
    run: structuredClone(run),
    log: log.map((f) => ({ seq: f.seq, event: f.event })),
    applied: ctx.live.applied(topics.run(id)),
  });

  return () => {
    controller.abort();
    clearInterval(ticker);
    debugState = null;
    if (unsubscribe) unsubscribe();
  };
}
