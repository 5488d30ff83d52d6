// DevTools network tracing of the Worker, through wrangler's inspector proxy.
// wrangler dev enables the inspector's Network domain, so every internal actor
// call, D1 query and fetch is reported to wrangler's node process through its
// proxy: that costs the dev server several times the Worker's own CPU
// (docs/benchmarks.md), and in wrangler 4.86 each report leaves a socket in
// CLOSE-WAIT, so a long run slows down and finally fails requests.
// `make dev` (dev_ready.mjs) and the test harness turn it off; `make bench`
// does the same from Rust.
//
//   node scripts/network_tracing.mjs <inspector-port> off|on
//
// `ws` (pinned in package.json, the version wrangler itself uses) can send the
// `Origin` header wrangler's inspector proxy requires, which Node's own
// WebSocket cannot.
import WebSocket from 'ws';
import { fileURLToPath } from 'node:url';

/** Sends `Network.disable` (or `enable`) to the Worker's isolate. */
export async function setNetworkTracing(inspectorPort, on) {
  const list = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  const target = list.find((t) => /actorline/.test(`${t.title} ${t.url}`)) || list[0];
  if (!target?.webSocketDebuggerUrl) throw new Error('no inspector target');
  const url = target.webSocketDebuggerUrl.replace(/^(?!ws)/, 'ws://').replace('localhost', '127.0.0.1');
  const method = on ? 'Network.enable' : 'Network.disable';
  await new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { origin: 'http://127.0.0.1' } });
    const timer = setTimeout(() => reject(new Error('inspector did not answer')), 5000);
    ws.onopen = () => ws.send(JSON.stringify({ id: 1, method, params: {} }));
    ws.onmessage = (m) => {
      if (JSON.parse(String(m.data)).id === 1) {
        clearTimeout(timer);
        // Not close(): the inspector proxy never answers the closing
        // handshake, and `ws` would hold the process for its 30 s close timeout.
        ws.terminate();
        resolve();
      }
    };
    ws.onerror = () => reject(new Error('inspector connection failed'));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [port, state] = process.argv.slice(2);
  if (!port || !['on', 'off'].includes(state)) {
    console.error('usage: node scripts/network_tracing.mjs <inspector-port> off|on');
    process.exit(2);
  }
  await setNetworkTracing(port, state === 'on');
}
