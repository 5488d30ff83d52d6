// Starts Actorline for the browser tests: `bash scripts/dev.sh` (build, the
// analyzer and wrangler dev) on free ports over a fresh state dir, in its own
// process group. dev.sh starts the analyzer and wrangler in process groups of
// their own (setsid) and stops them from its EXIT/TERM trap; we also record
// those groups so that teardown never depends on that trap alone.
//
// Teardown paths:
//  * stop(): SIGTERM to every group, wait, then SIGKILL what is left;
//  * exit, SIGINT, SIGTERM, uncaught exception: SIGTERM at once, and
//  * a watchdog `sh` (its own group) that reads our pipe: when this process
//    dies for any reason, even SIGKILL, the pipe closes and it sends SIGTERM,
//    then SIGKILL after a few seconds, to every group we told it about.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const KILL_GRACE_MS = 6000;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

function signalGroup(pgid, sig) {
  try {
    process.kill(-pgid, sig);
  } catch {
    /* gone already */
  }
}

/** Process groups of the direct children of `pid` (the analyzer and wrangler of dev.sh). */
function childGroups(pid) {
  const groups = new Set();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp …; comm may contain spaces, so split after ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(fields[1]);
    const pgrp = Number(fields[2]);
    if (ppid === pid && pgrp !== pid) groups.add(pgrp);
  }
  return [...groups];
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Refuses to run when npm would reinstall node_modules under the running tests. */
function checkBootstrapped() {
  const lock = fs.readFileSync(path.join(ROOT, 'package-lock.json'));
  const sum = createHash('sha256').update(lock).digest('hex');
  let marker = '';
  try {
    marker = fs.readFileSync(path.join(ROOT, 'node_modules/.actorline-lock'), 'utf8').trim();
  } catch {
    /* not bootstrapped */
  }
  if (marker !== sum) {
    throw new Error("node_modules is not in sync with package-lock.json: run `bash -c 'source scripts/lib.sh && bootstrap'` first");
  }
}

/** How long a run's state dir (its log and screenshots) is kept for a look
 * after it: older ones are removed as the next run starts, so runs do not
 * pile up in /tmp while a recent failure can still be read. */
const KEEP_STATE_MS = 6 * 3600 * 1000;

function removeOldStateDirs() {
  for (const name of fs.readdirSync(os.tmpdir())) {
    if (!name.startsWith('actorline-browser-')) continue;
    const dir = path.join(os.tmpdir(), name);
    try {
      if (Date.now() - fs.statSync(dir).mtimeMs > KEEP_STATE_MS) fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* gone meanwhile, or not ours to remove */
    }
  }
}

export async function startServer({ timeoutMs = 420_000 } = {}) {
  checkBootstrapped();
  removeOldStateDirs();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'actorline-browser-'));
  const port = await freePort();
  let analyzerPort = await freePort();
  while (analyzerPort === port) analyzerPort = await freePort();
  let inspectorPort = await freePort();
  while (inspectorPort === port || inspectorPort === analyzerPort) inspectorPort = await freePort();
  const logFile = path.join(dir, 'dev.log');
  const log = fs.openSync(logFile, 'a');
  const base = `http://127.0.0.1:${port}`;

  const child = spawn('bash', ['scripts/dev.sh'], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', log, log],
    env: {
      ...process.env,
      PORT: String(port),
      ANALYZER_PORT: String(analyzerPort),
      INSPECTOR_PORT: String(inspectorPort),
      STATE_DIR: path.join(dir, 'state'),
      NO_COLOR: '1',
    },
  });
  fs.closeSync(log);
  const groups = new Set([child.pid]);
  let exited = null;
  child.on('exit', (code, sig) => {
    exited = { code, sig };
  });

  const watchdog = spawn('sh', ['-c',
    'gs=""; while read -r g; do gs="$gs $g"; done; ' +
    'for g in $gs; do kill -TERM -- "-$g" 2>/dev/null; done; sleep 5; ' +
    'for g in $gs; do kill -KILL -- "-$g" 2>/dev/null; done'], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.stdin.on('error', () => {});
  watchdog.stdin.write(`${child.pid}\n`);
  watchdog.unref();
  watchdog.stdin.unref?.();

  let stopped = false;
  const killNow = () => {
    if (stopped) return;
    for (const g of groups) signalGroup(g, 'SIGTERM');
  };
  const onSignal = (sig) => {
    killNow();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  const onUncaught = (err) => {
    console.error(err);
    killNow();
    process.exit(1);
  };
  process.on('exit', killNow);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('uncaughtException', onUncaught);

  async function stop() {
    if (stopped) return;
    for (const g of childGroups(child.pid)) groups.add(g);
    for (const g of groups) signalGroup(g, 'SIGTERM');
    const deadline = Date.now() + KILL_GRACE_MS;
    while (Date.now() < deadline && [...groups].some(groupAlive)) await sleep(100);
    for (const g of groups) if (groupAlive(g)) signalGroup(g, 'SIGKILL');
    stopped = true;
    process.off('exit', killNow);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('uncaughtException', onUncaught);
    try {
      watchdog.kill('SIGKILL');
    } catch {
      /* already gone */
    }
    watchdog.stdin.destroy();
  }

  // Wait for /healthz; the first build can take minutes.
  const started = Date.now();
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`scripts/dev.sh exited (${JSON.stringify(exited)}) before /healthz answered; log tail:\n${tail(logFile)}`);
    }
    if (Date.now() - started > timeoutMs) {
      await stop();
      throw new Error(`/healthz did not answer within ${timeoutMs} ms; log tail:\n${tail(logFile)}`);
    }
    try {
      const r = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) break;
    } catch {
      /* not up yet */
    }
    await sleep(250);
  }
  for (const g of childGroups(child.pid)) {
    if (!groups.has(g)) {
      groups.add(g);
      watchdog.stdin.write(`${g}\n`);
    }
  }

  const vars = fs.readFileSync(path.join(ROOT, '.dev.vars'), 'utf8');
  const adminToken = (vars.match(/^ADMIN_TOKEN=(.*)$/m) || [])[1]?.trim();
  if (!adminToken) {
    await stop();
    throw new Error('ADMIN_TOKEN missing from .dev.vars');
  }
  // dev.sh creates the local tenant's key once the server answers: the key a
  // newcomer pastes into "Sign in".
  const keyFile = path.join(dir, 'state', 'dev-api-key');
  let apiKey = '';
  for (const until = Date.now() + 60_000; !apiKey && Date.now() < until; await sleep(200)) {
    try {
      apiKey = fs.readFileSync(keyFile, 'utf8').trim();
    } catch {
      /* not yet */
    }
  }
  if (!apiKey) {
    await stop();
    throw new Error(`dev.sh did not create ${keyFile}; log tail:\n${tail(logFile)}`);
  }
  return { base, dir, logFile, adminToken, apiKey, stop, startupMs: Date.now() - started };
}
