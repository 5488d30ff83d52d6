// Live updates for a tab: the session WebSocket, shared by every view for
// run, content and answer topics, and the feed actor's own socket for `feed`
// (the feed broadcasts to its sockets directly; see `Hub` at the end).
//
// * The session ({session_id, token, expires_at}) is kept in sessionStorage and
//   replaced when it expires or the server refuses its token.
// * Each subscription keeps the last seq it applied. Events at or below it are
//   duplicates and skipped, so applying is idempotent by seq.
// * On any drop it reconnects with exponential backoff and jitter and
//   resubscribes with `after=<last seq>`; the server replays exactly what was
//   missed, then `ready`. `resync_required` hands the view a snapshot instead.

import { api, CLOSE_CODES, frames, RETRYABLE_CODES, SERVER_FRAMES } from './protocol.js';
import { credential } from './api.js';

const SESSION_KEY = 'actorline.session';
const PING_EVERY_MS = 25_000;
const SILENCE_LIMIT_MS = 65_000;
const CONNECT_TIMEOUT_MS = 10_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15_000;
/** After the server refused the credential (a revoked key, an expired JWT):
 * asking again every few seconds cannot help; a new sign-in can. */
const REFUSED_HOLD_MS = 5 * 60_000;
/** After a close for flooding (1008): not back at once with a fresh socket. */
const FLOOD_HOLD_MS = 30_000;
const APPLIED_KEEP = 2000;
/** How often a subscribe refused for now is asked again (about a minute with backoff). */
const RESUBSCRIBE_TRIES = 6;
/** A socket open this long (or one that sent `ready`) is healthy: the backoff
 * starts over. Not at the open itself, or a server that accepts and closes
 * at once would be asked again every half second. */
const HEALTHY_AFTER_MS = 5_000;
/** A subscribe the server has gone silent on before its `ready` (its
 * session actor was reset mid-subscribe: no `subscribed`, or events it
 * stopped sending) is asked again from the cursor after this long. */
const SUBSCRIBE_STALL_MS = 30_000;

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && s.session_id && s.token && s.expires_at) return s;
  } catch {
    /* unreadable: make a new one */
  }
  return null;
}

function saveSession(s) {
  try {
    if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    /* storage disabled: the session lives as long as the page */
  }
}

/** Backoff before reconnect attempt `n` (0-based): 0.5 s, 1 s, 2 s … 15 s, with jitter. */
export function backoffMs(n, rand = Math.random) {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(n, 10));
  return Math.round(cap / 2 + (rand() * cap) / 2);
}

export class Live extends EventTarget {
  /**
   * `socketPath(session)`: the socket to open (the session socket unless
   * given). `sessions`: another Live whose session this one shares.
   */
  constructor({ socketPath, sessions } = {}) {
    super();
    this.socketPath = socketPath ?? ((s) => api.sessionSocket(s.session_id, s.token));
    this.sessions = sessions ?? null;
    this.subs = new Map();
    this.ws = null;
    this.session = sessions ? null : loadSession();
    this.state = 'idle';
    this.attempt = 0;
    this.failedOpens = 0;
    this.timer = null;
    this.connecting = false;
    this.sessionAsked = null;
    this.pinger = null;
    this.lastFrameAt = 0;
    this.retryAt = 0;
    this.holdUntil = 0;
    this.dropPlan = null;
    this.stats = { connects: 0, drops: 0, sessions: 0, duplicates: 0, gaps: 0, resyncs: 0, stalls: 0 };
    if (typeof window !== 'undefined') {
      window.addEventListener('online', () => this.reconnectNow());
      document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'visible') this.reconnectNow();
      });
    }
  }

  // ------------------------------------------------------------ subscriptions

  /**
   * Subscribes `topic`. `after: 0` replays the whole log; `after` omitted starts
   * from now. Handlers: onEvent(frame), onResync(snapshot), onReady(), onError(err).
   * onResync says what the view holds may be stale: the log was trimmed past
   * its cursor (a snapshot), or a "from now" was asked again before the server
   * named its seq (null).
   * Returns a function that unsubscribes.
   */
  subscribe(topic, { after, onEvent, onResync, onReady, onError } = {}) {
    const sub = {
      topic,
      lastSeq: after === undefined || after === null ? null : after,
      subscribedSeq: null,
      ready: false,
      applied: [],
      handlers: { onEvent, onResync, onReady, onError },
    };
    this.subs.set(topic, sub);
    if (this.isOpen()) {
      this.sendSubscribe(sub);
      this.setState('resyncing');
    } else {
      this.ensure();
    }
    return () => this.unsubscribe(topic, sub);
  }

  unsubscribe(topic, sub) {
    if (this.subs.get(topic) !== sub) return;
    clearTimeout(sub.retryTimer);
    clearTimeout(sub.stallTimer);
    this.subs.delete(topic);
    if (this.isOpen()) this.send(frames.unsubscribe(topic));
    this.updateReadiness();
  }

  sendSubscribe(sub) {
    clearTimeout(sub.retryTimer);
    sub.retryTimer = null;
    sub.ready = false;
    sub.subscribedSeq = null;
    // "From now" asked again (the socket dropped, or the topic refused for
    // now, before `subscribed` named the seq): the new now is later, and
    // what happened in between is told as a resync.
    if (sub.lastSeq === null && sub.askedFromNow) sub.missedFromNow = true;
    sub.askedFromNow = sub.lastSeq === null;
    this.send(frames.subscribe(sub.topic, sub.lastSeq ?? undefined));
    this.watchStall(sub);
  }

  /**
   * (Re)starts the wait for `sub`'s next frame before its `ready`: each of
   * its frames restarts it, `ready` or an error ends it. Silence means the
   * server lost the subscribe (events it sent without `subscribed` were
   * dropped here, so the cursor did not move): asked again from the cursor.
   */
  watchStall(sub) {
    clearTimeout(sub.stallTimer);
    const ws = this.ws;
    sub.stallTimer = setTimeout(() => {
      sub.stallTimer = null;
      if (this.subs.get(sub.topic) === sub && this.ws === ws && this.isOpen() && !sub.ready && !sub.retryTimer) {
        this.stats.stalls += 1;
        this.sendSubscribe(sub);
      }
    }, SUBSCRIBE_STALL_MS);
    // Node (the protocol tests) need not wait for it.
    sub.stallTimer?.unref?.();
  }

  /** Seqs applied on `topic`, in the order they were applied. */
  applied(topic) {
    return [...(this.subs.get(topic)?.applied ?? [])];
  }

  lastSeq(topic) {
    return this.subs.get(topic)?.lastSeq ?? null;
  }

  // --------------------------------------------------------------- connection

  isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: { state, attempt: this.attempt, ...extra } }));
  }

  ensure() {
    if (this.ws || this.timer || this.connecting) return;
    this.connect();
  }

  reconnectNow() {
    if (this.ws || this.connecting || Date.now() < this.holdUntil || this.subs.size === 0) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.connect();
  }

  async getSession() {
    if (this.sessions) return this.sessions.getSession();
    const s = this.session;
    if (s && new Date(s.expires_at).getTime() - Date.now() > 60_000) return s;
    // The session socket and the feed's ask at once on a cold load: one
    // session for both, not two from the creation quota.
    if (!this.sessionAsked) {
      this.sessionAsked = this.newSession().finally(() => {
        this.sessionAsked = null;
      });
    }
    return this.sessionAsked;
  }

  async newSession() {
    const headers = { 'content-type': 'application/json', accept: 'application/json' };
    const cred = credential();
    // The session is bound to this principal: its topics and feed follow it.
    if (cred) headers.authorization = `Bearer ${cred}`;
    const resp = await fetch(api.sessions(), {
      method: 'POST',
      headers,
      body: '{}',
      cache: 'no-store',
    });
    if (!resp.ok) {
      const err = new Error(resp.status === 401 ? 'the credential was refused: sign in again' : `session refused: ${resp.status}`);
      err.status = resp.status;
      throw err;
    }
    const fresh = await resp.json();
    this.session = fresh;
    this.stats.sessions += 1;
    saveSession(fresh);
    return fresh;
  }

  dropSession() {
    if (this.sessions) {
      this.sessions.dropSession();
      return;
    }
    this.session = null;
    saveSession(null);
  }

  async connect() {
    this.timer = null;
    // A socket opened meanwhile (a visibility change, a view's subscribe)
    // is the connection: no second one, and no "reconnecting" over it.
    if (this.ws) return;
    this.connecting = true;
    this.setState(this.stats.connects === 0 && this.attempt === 0 ? 'connecting' : 'reconnecting', { now: true });
    let session;
    try {
      session = await this.getSession();
    } catch (e) {
      this.connecting = false;
      if (e && e.status === 401) this.holdUntil = Date.now() + REFUSED_HOLD_MS;
      this.scheduleReconnect(String(e && e.message ? e.message : e));
      return;
    }
    this.connecting = false;
    if (this.ws) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${proto}//${location.host}${this.socketPath(session)}`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.scheduleReconnect(String(e));
      return;
    }
    this.ws = ws;
    let opened = false;
    const openTimer = setTimeout(() => {
      if (!opened) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      opened = true;
      clearTimeout(openTimer);
      clearTimeout(this.healthyTimer);
      this.healthyTimer = setTimeout(() => {
        if (this.ws === ws) this.attempt = 0;
      }, HEALTHY_AFTER_MS);
      this.failedOpens = 0;
      this.stats.connects += 1;
      this.lastFrameAt = Date.now();
      this.startPinger();
      if (this.subs.size === 0) this.setState('live');
      else {
        this.setState('resyncing');
        for (const sub of this.subs.values()) this.sendSubscribe(sub);
      }
    };
    ws.onmessage = (m) => this.onMessage(m);
    ws.onclose = (ev) => {
      clearTimeout(openTimer);
      this.onClosed(ws, opened, session, ev.code);
    };
    ws.onerror = () => {
      /* onclose follows and decides */
    };
  }

  async onClosed(ws, opened, session, code) {
    if (this.ws !== ws) return;
    this.ws = null;
    clearTimeout(this.healthyTimer);
    this.stopPinger();
    for (const sub of this.subs.values()) {
      sub.ready = false;
      sub.refused = null;
      sub.retries = 0;
    }
    if (!opened) {
      this.failedOpens += 1;
      // Browsers hide the status of a refused upgrade; ask again without the
      // upgrade: the token is checked first, so 401/403 means "new session".
      const refused = await this.tokenRefused(session);
      // Another socket opened while this asked: it stands, with its session.
      if (this.ws) return;
      if (refused || this.failedOpens >= 3) {
        this.dropSession();
        this.failedOpens = 0;
      }
    } else if (code === CLOSE_CODES.TOKEN_ENDED) {
      this.dropSession();
    } else if (code === CLOSE_CODES.RATE_LIMITED) {
      // Too many frames: the session still stands, only not at once.
      this.holdUntil = Date.now() + FLOOD_HOLD_MS;
    }
    this.scheduleReconnect(opened ? `closed (${code})` : 'could not connect');
  }

  async tokenRefused(session) {
    try {
      const r = await fetch(this.socketPath(session), { cache: 'no-store' });
      return r.status === 401 || r.status === 403 || r.status === 404;
    } catch {
      return false;
    }
  }

  scheduleReconnect(reason) {
    if (this.timer) return;
    const delay = Math.max(backoffMs(this.attempt), this.holdUntil - Date.now());
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.setState('reconnecting', { retryInMs: delay, retryAt: this.retryAt, reason });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  startPinger() {
    this.stopPinger();
    this.pinger = setInterval(() => {
      if (!this.isOpen()) return;
      if (Date.now() - this.lastFrameAt > SILENCE_LIMIT_MS) {
        this.drop();
        return;
      }
      this.send(frames.ping());
    }, PING_EVERY_MS);
  }

  stopPinger() {
    clearInterval(this.pinger);
    this.pinger = null;
  }

  send(frame) {
    if (this.isOpen()) this.ws.send(JSON.stringify(frame));
  }

  /** Cuts the socket as a network failure would: nothing more is read from it. */
  drop(holdMs = 0) {
    const ws = this.ws;
    if (!ws) return false;
    this.stats.drops += 1;
    this.holdUntil = Date.now() + holdMs;
    ws.onmessage = null;
    ws.onclose = null;
    try {
      ws.close(4000, 'dropped');
    } catch {
      /* already closing */
    }
    this.onClosed(ws, true, this.session, 4000);
    return true;
  }

  /**
   * Debug hook: drop now, or once `afterEvents` events have been applied on a
   * topic starting with `topic` (any topic if omitted); stay down for `holdMs`.
   */
  dropSocket({ afterEvents, topic, holdMs = 0 } = {}) {
    if (afterEvents === undefined) return this.drop(holdMs);
    this.dropPlan = { afterEvents, topic, holdMs };
    return true;
  }

  // ------------------------------------------------------------------ frames

  onMessage(m) {
    this.lastFrameAt = Date.now();
    let f;
    try {
      f = JSON.parse(m.data);
    } catch {
      return;
    }
    const sub = f.topic ? this.subs.get(f.topic) : null;
    switch (f.type) {
      case SERVER_FRAMES.SUBSCRIBED:
        if (!sub) return;
        sub.subscribedSeq = f.seq;
        if (sub.lastSeq === null) sub.lastSeq = f.seq;
        this.watchStall(sub);
        if (sub.missedFromNow) {
          sub.missedFromNow = false;
          this.stats.resyncs += 1;
          sub.handlers.onResync?.(null);
        }
        break;
      case SERVER_FRAMES.EVENT:
        // The server answers a subscribe with `subscribed` before any of its
        // events: one before it is left from an earlier subscription to the
        // topic (its unsubscribe still on its way), and would move the new
        // cursor past the replay it asked for.
        if (sub && sub.subscribedSeq !== null) {
          if (!sub.ready) this.watchStall(sub);
          this.onEvent(sub, f);
        }
        break;
      case SERVER_FRAMES.READY:
        // As for events: one before `subscribed` ends an earlier subscription.
        if (!sub || sub.subscribedSeq === null) return;
        this.attempt = 0;
        sub.ready = true;
        sub.retries = 0;
        clearTimeout(sub.stallTimer);
        sub.handlers.onReady?.();
        this.updateReadiness();
        break;
      case SERVER_FRAMES.RESYNC_REQUIRED:
        if (!sub || sub.subscribedSeq === null) return;
        this.stats.resyncs += 1;
        // At a subscribe the server goes on from the seq `subscribed` named;
        // mid-stream (a poll found the log trimmed) from later still, so the
        // cursor never moves back to it.
        sub.lastSeq = Math.max(sub.lastSeq ?? sub.subscribedSeq, sub.subscribedSeq);
        sub.handlers.onResync?.(f.snapshot);
        this.dispatchEvent(new CustomEvent('resync', { detail: { topic: sub.topic } }));
        break;
      case SERVER_FRAMES.UNSUBSCRIBED:
      case SERVER_FRAMES.PONG:
        break;
      case SERVER_FRAMES.ERROR: {
        // A refused subscribe names its topic (a server before that field,
        // only in its message).
        const target = sub ?? [...this.subs.values()].find((s) => f.message && f.message.includes(s.topic));
        const err = { code: f.code, message: f.message, topic: target?.topic };
        if (target) clearTimeout(target.stallTimer);
        if (target && !target.ready && RETRYABLE_CODES.includes(f.code) && (target.retries ?? 0) < RESUBSCRIBE_TRIES) {
          // Refused for now (the topic's actor or the catalog failed): the
          // subscription stays and is asked for again from its cursor, so a
          // view open on a healthy socket does not stop updating for good.
          // After RESUBSCRIBE_TRIES the view is told, as for a refusal.
          this.resubscribeLater(target);
        } else if (target) {
          if (!target.ready) {
            // The server dropped it: the connection no longer waits for its
            // `ready` (a reconnect asks again).
            target.ready = true;
            target.refused = err;
            this.updateReadiness();
          }
          target.handlers.onError?.(err);
        }
        this.dispatchEvent(new CustomEvent('frame-error', { detail: err }));
        break;
      }
      default:
        break;
    }
  }

  /** Asks for `sub` again after a backoff, if it is still wanted on this socket. */
  resubscribeLater(sub) {
    const ws = this.ws;
    const delay = backoffMs(sub.retries ?? 0);
    sub.retries = (sub.retries ?? 0) + 1;
    clearTimeout(sub.retryTimer);
    sub.retryTimer = setTimeout(() => {
      sub.retryTimer = null;
      // A reconnect asks for every subscription itself.
      if (this.subs.get(sub.topic) === sub && this.ws === ws && this.isOpen() && !sub.ready) this.sendSubscribe(sub);
    }, delay);
  }

  onEvent(sub, f) {
    if (sub.lastSeq !== null && f.seq <= sub.lastSeq) {
      this.stats.duplicates += 1;
      return;
    }
    if (sub.lastSeq !== null && f.seq !== sub.lastSeq + 1) this.stats.gaps += 1;
    sub.lastSeq = f.seq;
    sub.applied.push(f.seq);
    if (sub.applied.length > APPLIED_KEEP) sub.applied.splice(0, sub.applied.length - APPLIED_KEEP);
    sub.handlers.onEvent?.(f);
    const plan = this.dropPlan;
    if (plan && (!plan.topic || sub.topic.startsWith(plan.topic)) && sub.applied.length >= plan.afterEvents) {
      this.dropPlan = null;
      this.drop(plan.holdMs);
    }
  }

  updateReadiness() {
    if (!this.isOpen()) return;
    const all = [...this.subs.values()].every((s) => s.ready);
    if (all && this.state !== 'live') this.setState('live');
  }
}

const STATE_RANK = { reconnecting: 4, connecting: 3, resyncing: 2, idle: 1, live: 0 };

/**
 * What the views use: `feed` goes over the feed actor's socket, every other
 * topic over the session socket; both share one session. The connection
 * status shown is the worse of the two (the feed socket counts only while it
 * has a subscription).
 */
export class Hub extends EventTarget {
  constructor() {
    super();
    this.main = new Live();
    this.feed = new Live({ socketPath: (s) => api.feedSocket(s.session_id, s.token), sessions: this.main });
    this.state = this.main.state;
    for (const child of [this.main, this.feed]) {
      child.addEventListener('status', (e) => this.onStatus(child, e.detail));
      for (const name of ['resync', 'frame-error']) {
        child.addEventListener(name, (e) => this.dispatchEvent(new CustomEvent(name, { detail: e.detail })));
      }
    }
  }

  onStatus(child, detail) {
    const feedCounts = this.feed.subs.size > 0 || this.feed.ws !== null;
    const states = [this.main.state, feedCounts ? this.feed.state : 'live'];
    const worst = states.reduce((a, b) => ((STATE_RANK[b] ?? 0) > (STATE_RANK[a] ?? 0) ? b : a));
    const shown = worst === child.state ? detail : { state: worst };
    this.state = worst;
    this.dispatchEvent(new CustomEvent('status', { detail: { ...shown, state: worst } }));
  }

  channel(topic) {
    return topic === 'feed' ? this.feed : this.main;
  }

  subscribe(topic, opts) {
    return this.channel(topic).subscribe(topic, opts);
  }

  applied(topic) {
    return this.channel(topic).applied(topic);
  }

  lastSeq(topic) {
    return this.channel(topic).lastSeq(topic);
  }

  get session() {
    return this.main.session;
  }

  set session(s) {
    this.main.session = s;
  }

  get stats() {
    const a = this.main.stats;
    const b = this.feed.stats;
    return Object.fromEntries(Object.keys(a).map((k) => [k, a[k] + (b[k] ?? 0)]));
  }

  ensure() {
    this.main.ensure();
  }

  /** Debug hook: drops the socket carrying `topic` (the session socket when none is named). */
  dropSocket(opts = {}) {
    return this.channel(opts.topic).dropSocket(opts);
  }
}
