// REST client: JSON in and out, and the contract's error shape
// `{"error":{"code","message","field?"}}` turned into one ApiError type.

import { api } from './protocol.js';

const ADMIN_KEY = 'actorline.admin_token';
const CREDENTIAL_KEY = 'actorline.credential';

export class ApiError extends Error {
  constructor(status, code, message, field, retryAfter) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }

  /** "401 unauthorized: admin routes need …" */
  describe() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }
}

async function parse(resp) {
  const text = await resp.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * `request('GET', '/api/runs/x')` resolves with the parsed body of a 2xx and
 * rejects with an ApiError otherwise (also for network failures, status 0).
 */
export async function request(method, path, { body, file, query, admin = false, signal, blob = false } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
    }
    const qs = q.toString();
    if (qs) url += (url.includes('?') ? '&' : '?') + qs;
  }
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (file) Object.assign(headers, fileHeaders(file));
  const token = admin ? adminToken() : credential();
  if (token) headers.authorization = `Bearer ${token}`;
  let resp;
  try {
    resp = await fetch(url, {
      method,
      headers,
      body: file || (body === undefined ? undefined : JSON.stringify(body)),
      signal,
      cache: 'no-store',
      credentials: 'same-origin',
    });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `network error: ${e && e.message ? e.message : e}`);
  }
  // `blob`: a 2xx body is returned as a Blob (a file), not parsed.
  if (resp.ok) return blob ? resp.blob() : parse(resp);
  const data = await parse(resp);
  const err = data && typeof data === 'object' && data.error ? data.error : {};
  throw new ApiError(
    resp.status,
    err.code || `http_${resp.status}`,
    err.message || (typeof data === 'string' && data) || resp.statusText || 'request failed',
    err.field,
    resp.headers.get('retry-after'),
  );
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, body, opts) => request('POST', path, { ...opts, body });

// Secrets live in this tab's sessionStorage only: never in the page source,
// never in a URL, never in localStorage. Storage may be disabled; then a
// secret simply is not kept.
function stored(key) {
  try {
    return sessionStorage.getItem(key) || '';
  } catch {
    return '';
  }
}

function store(key, value) {
  try {
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
  } catch {
    /* storage disabled */
  }
}

/** The operator's token, for the inspector. */
export const adminToken = () => stored(ADMIN_KEY);
export const setAdminToken = (token) => store(ADMIN_KEY, token);

// The signed-in credential (an API key or a JWT): every non-admin request and
// the live session carry it; without it the client is anonymous (public reads).
export const credential = () => stored(CREDENTIAL_KEY);
export const setCredential = (token) => store(CREDENTIAL_KEY, token);

/** The caller's principal, `{kind, tenant?, subject, scopes}`. */
export const whoAmI = () => get(api.me());

export const endpoints = api;

// The upload types the API accepts, by file extension when the browser
// gives a file no (or a generic) type, as it often does for Markdown. The
// first extension of a type is the one a downloaded source gets.
export const UPLOAD_TYPES = { md: 'text/markdown', markdown: 'text/markdown', html: 'text/html', htm: 'text/html', pdf: 'application/pdf', txt: 'text/plain' };

function fileHeaders(file) {
  const ext = (file.name || '').split('.').pop().toLowerCase();
  const type = UPLOAD_TYPES[ext] || file.type || 'application/octet-stream';
  const headers = { 'content-type': type };
  // Header values must be ASCII; a name that is not is simply not sent.
  if (file.name && /^[\x20-\x7e]+$/.test(file.name) && !file.name.includes('"')) {
    headers['content-disposition'] = `attachment; filename="${file.name}"`;
  }
  return headers;
}

/**
 * Uploads a file as a new item (`{title?, category?, visibility?}` in the
 * query): `{content_id, version, run_id, links}`, like a submission.
 */
export const upload = (file, query, opts) => request('POST', api.uploads(), { ...opts, query, file });

/**
 * The original file of an item's version, fetched with the credential (a
 * plain link would not carry it): a Blob with the file's type.
 */
export const sourceFile = (id, version) => get(api.contentSource(id, version), { blob: true });

/** Asks a question: `{answer_id, topic, links}`; the answer streams on `topic`. */
export const ask = (question, opts) => post(api.answers(), { question }, opts);
