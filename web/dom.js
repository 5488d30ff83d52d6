// A tiny DOM builder and formatters. Text always goes in as text nodes, so
// user content (titles, snippets, errors) can never become markup.

export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value' && 'value' in el) el.value = v;
      else if (k === 'checked' || k === 'selected' || k === 'disabled') el[k] = Boolean(v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/**
 * Runs `rebuild` (which replaces what `container` holds) without losing the
 * keyboard's place: if focus was on a control inside it with a
 * `data-focus` key, the rebuilt control with that key gets it back; if
 * none is left (or it is disabled now), `fallback()` does (an element with
 * tabindex=-1 that says what happened). A screen reader user who pressed
 * Retry is not sent back to the top of the page.
 */
export function keepFocus(container, rebuild, fallback) {
  const active = document.activeElement;
  const key = active && active !== document.body && container.contains(active) ? active.dataset.focus : undefined;
  rebuild();
  if (key === undefined) return;
  const again = [...container.querySelectorAll('[data-focus]')].find((el) => el.dataset.focus === key && !el.disabled);
  const target = again || (fallback && fallback());
  // Where the reader scrolled stays: only the keyboard's place is kept.
  if (target) target.focus({ preventScroll: true });
}

// ------------------------------------------------------------------ formatting

export function fmtMs(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

export function fmtDateTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
  });
}

/** "in 3 s" / "2 min ago" relative to now. */
export function fmtRelative(iso, now = Date.now()) {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return '';
  const diff = t - now;
  const abs = Math.abs(diff);
  const s = abs < 60_000 ? `${Math.max(0, Math.round(abs / 1000))} s` : `${Math.round(abs / 60_000)} min`;
  return diff >= 0 ? `in ${s}` : `${s} ago`;
}

export const shortId = (id) => (typeof id === 'string' && id.length > 8 ? id.slice(0, 8) : String(id ?? ''));

export function time(iso, fmt = fmtDateTime) {
  return h('time', { datetime: iso || undefined, title: iso || undefined }, fmt(iso));
}

/** A status word with a shape as well as a colour (never colour alone). */
const ICONS = {
  pending: '○', queued: '○', running: '◐', retrying: '↻', completed: '✓', indexed: '✓',
  skipped: '⤼', failed: '✕', cancelled: '⊘', processing: '◐', active: '●',
};

export function badge(status) {
  const s = String(status || 'unknown');
  return h('span', { class: ['badge', `st-${s}`], dataset: { status: s } },
    h('span', { class: 'badge-icon', 'aria-hidden': 'true' }, ICONS[s] || '•'), ' ', s);
}

export function jsonBlock(value, label) {
  return h('pre', { class: 'json', tabindex: '0', 'aria-label': label || 'JSON' },
    JSON.stringify(value, null, 2));
}
