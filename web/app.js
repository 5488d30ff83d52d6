// Actorline web client: hash routing, the shared live connection, and the
// connection indicator. Views live in views/*.js and mount into <main>.

import { Hub } from './live.js';
import { credential, setCredential, whoAmI } from './api.js';
import { h, replace } from './dom.js';
import * as submitView from './views/submit.js';
import * as runView from './views/run.js';
import * as contentView from './views/content.js';
import * as searchView from './views/search.js';
import * as askView from './views/ask.js';
import * as importView from './views/import.js';
import * as inspectorView from './views/inspector.js';

const live = new Hub();
const main = document.getElementById('main');
let current = null;
let firstRoute = true;

// ---------------------------------------------------------------- announcer

const announcer = document.getElementById('announcer');
let announceTimer = null;
/** Polite screen-reader announcement of a live update. */
function announce(text) {
  clearTimeout(announceTimer);
  announcer.textContent = '';
  announceTimer = setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

// ---------------------------------------------------------- connection badge

const conn = document.getElementById('conn');
const connText = conn.querySelector('.conn-text');
let connTick = null;

function renderConn(detail) {
  clearInterval(connTick);
  conn.dataset.state = detail.state;
  const label = {
    idle: 'Idle',
    connecting: 'Connecting…',
    resyncing: 'Resyncing…',
    live: 'Live',
  };
  if (detail.state === 'reconnecting' && detail.retryAt) {
    // The countdown is hidden from assistive technology: #conn is a live
    // region, and a change every second would be read out every second.
    const count = h('span', { 'aria-hidden': 'true' });
    replace(connText, 'Reconnecting', count);
    const tick = () => {
      const s = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
      count.textContent = s > 0 ? ` in ${s} s…` : '…';
    };
    tick();
    connTick = setInterval(tick, 1000);
  } else if (detail.state === 'reconnecting') {
    connText.textContent = 'Reconnecting…';
  } else {
    connText.textContent = label[detail.state] || detail.state;
  }
  conn.title = detail.reason ? `Last disconnect: ${detail.reason}` : '';
}
live.addEventListener('status', (e) => renderConn(e.detail));

// ------------------------------------------------------------------ sign-in

// The credential (API key or JWT) is asked for once and kept for the tab. A
// change of principal starts a new live session, since sessions are bound to
// the principal that created them.
const signin = document.getElementById('signin');

function switchPrincipal(token) {
  setCredential(token);
  try {
    sessionStorage.removeItem('actorline.session');
  } catch {
    /* nothing kept */
  }
  location.reload();
}

async function renderSignin() {
  if (!credential()) {
    const input = h('input', { id: 'credential', type: 'password', autocomplete: 'off', placeholder: 'API key or JWT', 'aria-label': 'API key or JWT' });
    const form = h('form', { class: 'signin-form' }, input, h('button', { type: 'submit', class: 'btn' }, 'Sign in'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (input.value.trim()) switchPrincipal(input.value.trim());
    });
    replace(signin, form, h('span', { class: 'who', id: 'who' }, 'Anonymous: public items only'));
    return;
  }
  try {
    const me = await whoAmI();
    const label = me.tenant ? `${me.tenant} · ${me.kind.replace('_', ' ')}` : me.kind;
    replace(signin,
      h('span', { class: 'who', id: 'who', title: (me.scopes || []).join(' ') }, label),
      h('button', { type: 'button', class: 'btn', id: 'signout', onclick: () => switchPrincipal('') }, 'Sign out'));
  } catch (err) {
    // A bad, expired or revoked credential is refused (401), never anonymous.
    replace(signin,
      h('span', { class: 'who error', id: 'who', role: 'alert' }, `Sign-in refused: ${err.describe ? err.describe() : err}`),
      h('button', { type: 'button', class: 'btn', id: 'signout', onclick: () => switchPrincipal('') }, 'Sign out'));
  }
}
renderSignin();

// -------------------------------------------------------------------- router

const ROUTES = [
  { re: /^\/submit$/, view: submitView, nav: 'submit', params: () => ({}) },
  { re: /^\/runs\/([^/]+)$/, view: runView, nav: null, params: (m) => ({ id: m[1] }) },
  { re: /^\/content\/([^/]+)$/, view: contentView, nav: null, params: (m) => ({ id: m[1] }) },
  { re: /^\/search$/, view: searchView, nav: 'search', params: () => ({}) },
  { re: /^\/ask$/, view: askView, nav: 'ask', params: () => ({}) },
  { re: /^\/ask\/([^/]+)$/, view: askView, nav: 'ask', params: (m) => ({ id: m[1] }) },
  { re: /^\/import$/, view: importView, nav: 'import', params: () => ({}) },
  { re: /^\/import\/([^/]+)$/, view: importView, nav: 'import', params: (m) => ({ id: m[1] }) },
  { re: /^\/inspector$/, view: inspectorView, nav: 'inspector', params: () => ({}) },
  { re: /^\/inspector\/([^/]+)\/([^/]+)$/, view: inspectorView, nav: 'inspector', params: (m) => ({ kind: m[1], id: m[2] }) },
];

/** `#/search?q=x` → { path: '/search', query: URLSearchParams } */
export function parseHash(hash) {
  const raw = (hash || '').replace(/^#/, '') || '/submit';
  const [path, qs = ''] = raw.split('?');
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    /* keep raw */
  }
  return { path: decoded.replace(/\/+$/, '') || '/submit', query: new URLSearchParams(qs) };
}

function notFound(root, path) {
  replace(root,
    h('section', { class: 'view', 'aria-labelledby': 'nf-title' },
      h('h1', { id: 'nf-title' }, 'Page not found'),
      h('p', null, `Nothing lives at “${path}”. `, h('a', { href: '#/submit' }, 'Submit a document'), ' or ',
        h('a', { href: '#/search' }, 'search'), '.')));
  return () => {};
}

function route() {
  // In-page anchors (the skip link's #main) are not routes.
  if (location.hash && !location.hash.startsWith('#/') && location.hash !== '#' && current) return;
  const { path, query } = parseHash(location.hash.startsWith('#/') ? location.hash : '');
  if (!location.hash.startsWith('#/') || location.hash === '#/') {
    history.replaceState(null, '', '#/submit');
  }
  if (current && current.cleanup) {
    try {
      current.cleanup();
    } catch (e) {
      console.error(e);
    }
  }
  current = null;
  let match = null;
  let r = null;
  for (const candidate of ROUTES) {
    match = path.match(candidate.re);
    if (match) {
      r = candidate;
      break;
    }
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (r && a.dataset.nav === r.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const root = h('div', { class: 'view-root' });
  replace(main, root);
  const ctx = { live, announce, query, setTitle: (t) => (document.title = t ? `${t} · Actorline` : 'Actorline') };
  if (!r) {
    ctx.setTitle('Not found');
    current = { cleanup: notFound(root, path) };
  } else {
    const cleanup = r.view.mount(root, r.params(match), ctx);
    current = { view: r.view, cleanup };
  }
  if (!firstRoute) {
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  firstRoute = false;
}

window.addEventListener('hashchange', route);
document.querySelector('.skip-link')?.addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
  main.scrollIntoView();
});

// Debug and test hooks (no secrets here).
window.__actorline = {
  live,
  /** Cut the socket now, or after `afterEvents` applied events; stay down `holdMs`. */
  dropSocket: (opts) => live.dropSocket(opts),
  applied: (topic) => live.applied(topic),
  lastSeq: (topic) => live.lastSeq(topic),
  connection: () => live.state,
  stats: () => ({ ...live.stats }),
  view: () => (current && current.view && current.view.debug ? current.view.debug() : null),
};

live.ensure();
route();
