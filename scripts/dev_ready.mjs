// `make dev`, once the server answers:
//  1. Turns off DevTools network tracing of the Worker (unless DEV_TRACE_NETWORK=1):
//     see network_tracing.mjs for why.
//  2. Makes sure the local tenant has an API key, and prints how to use it.
//     The key is created once through `POST /admin/keys` (with the operator's
//     ADMIN_TOKEN from .dev.vars) and kept in the state dir, so later runs
//     print the same key; a key that no longer works is replaced.
import fs from 'node:fs';
import path from 'node:path';
import { setNetworkTracing } from './network_tracing.mjs';

const [base, stateDir, adminToken, inspectorPort, wranglerPid] = process.argv.slice(2);
const file = path.join(stateDir, 'dev-api-key');
const TENANT = 'local';

async function call(method, url, token, body) {
  const resp = await fetch(base + url, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: resp.status, body: await resp.json().catch(() => null) };
}

/** Whether wrangler (this script's sibling) is still running. */
function wranglerAlive() {
  if (!wranglerPid) return true;
  try {
    process.kill(Number(wranglerPid), 0);
    return true;
  } catch {
    return false;
  }
}

async function waitReady() {
  for (let i = 0; i < 600; i++) {
    // A wrangler that exited at startup (a port taken, a bad config) has said
    // why above; waiting out the 150 s would only hide it.
    if (!wranglerAlive()) throw new Error('wrangler dev exited before it answered (see its output above)');
    try {
      const r = await fetch(base + '/healthz');
      if (r.ok) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`Actorline did not answer on ${base}`);
}

try {
  await waitReady();
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
let tracing = 'on (DEV_TRACE_NETWORK=1)';
if (process.env.DEV_TRACE_NETWORK !== '1' && inspectorPort) {
  tracing = await setNetworkTracing(inspectorPort, false).then(() => 'off (DEV_TRACE_NETWORK=1 keeps it)', (e) => `still on: ${e.message}`);
}
let key = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : '';
if (key && (await call('GET', '/api/me', key)).status !== 200) key = '';
if (!key) {
  const r = await call('POST', '/admin/keys', adminToken, { tenant: TENANT, name: 'make dev', scopes: ['content:manage'] });
  if (r.status !== 201) throw new Error(`could not create the dev key: ${r.status} ${JSON.stringify(r.body)}`);
  key = r.body.key;
  fs.writeFileSync(file, key + '\n', { mode: 0o600 });
}
console.log(`
  Actorline is running on ${base}
  Local tenant "${TENANT}", API key (content:manage), kept in ${file}:

    ${key}

  Web UI: open ${base}/ and paste the key into "Sign in".
  curl:   curl -H "Authorization: Bearer ${key}" ${base}/api/content
  Admin:  the operator's token is ADMIN_TOKEN in .dev.vars.
  DevTools network tracing of internal calls: ${tracing}.
`);
