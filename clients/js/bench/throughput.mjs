// Messages/s of this client in Node, reliable against plain, over 127.0.0.1.
//   reliable: ReliableClient → Rust `reliable_sink` (release), until every message is acknowledged
//   plain:    a plain `ws` client → Rust `echo_server` (release), until every echo is back
// (this client has no plain mode; `ws` is what it runs on in Node). Prints each run, the
// medians of RUNS runs and the ratio.   node bench/throughput.mjs [N] [RUNS]
// Builds the examples with `cargo build --release -p sockeye-std` first. Not part of npm test.
// SOCKEYE_JS=FILE measures that copy of the client instead of ../sockeye.js.
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import { WebSocket } from 'ws';

const { ReliableClient } = await import(process.env.SOCKEYE_JS ? pathToFileURL(path.resolve(process.env.SOCKEYE_JS)).href : '../sockeye.js');

const N = Number(process.argv[2] ?? 50_000), RUNS = Number(process.argv[3] ?? 3);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
execFileSync('cargo', ['build', '--quiet', '--release', '-p', 'sockeye-std', '--example', 'reliable_sink', '--example', 'echo_server'], { cwd: root, stdio: 'inherit' });
const meta = JSON.parse(execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26 }));
const bin = (name) => path.join(meta.target_directory, 'release', 'examples', name);
const payload = (i) => `message ${String(i).padStart(6, '0')}`;

/** Starts an example on an ephemeral port; resolves with [child, port] once it says where it listens. */
/** `out`: the stream that says so (reliable_sink's stdout, one line a message, goes to /dev/null, not to this process). */
function start(name, out) {
  const child = spawn(bin(name), ['127.0.0.1:0'], { stdio: ['ignore', out === 'stdout' ? 'pipe' : 'ignore', out === 'stderr' ? 'pipe' : 'inherit'] });
  return new Promise((resolve, reject) => {
    for (const s of [child[out]]) {
      createInterface({ input: s }).on('line', (l) => {
        const m = l.match(/listening on ws:\/\/[\d.]+:(\d+)/);
        if (m) resolve([child, Number(m[1])]);
      });
    }
    child.on('exit', (c) => reject(new Error(`${name} exited ${c}`)));
  });
}

async function reliable(port) {
  const client = new ReliableClient(`ws://127.0.0.1:${port}/`, { WebSocket });
  await new Promise((r) => client.on('connected', r));
  const t0 = performance.now();
  const acked = [];
  for (let i = 0; i < N; i++) {
    for (;;) {
      try { acked.push(client.send(payload(i))); break; } catch (e) {
        if (e.reason !== 'Full') throw e;
        await acked[acked.length - client.inFlight.messages]; // the window moves
      }
    }
  }
  await Promise.all(acked);
  const s = (performance.now() - t0) / 1000;
  client.close();
  return N / s;
}

async function plain(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  await new Promise((r) => ws.once('open', r));
  let got = 0, done;
  const all = new Promise((r) => { done = r; });
  ws.on('message', () => { if (++got === N) done(); });
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    ws.send(payload(i));
    // Same bound as the reliable window: no more than 1024 messages or 1 MiB queued unanswered.
    while (i + 1 - got >= 1024) await new Promise((r) => ws.once('message', () => setImmediate(r)));
  }
  await all;
  const s = (performance.now() - t0) / 1000;
  ws.close();
  return N / s;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const [sink, sinkPort] = await start('reliable_sink', 'stderr');
const [echo, echoPort] = await start('echo_server', 'stdout');
const r = [], p = [];
for (let k = 0; k < RUNS; k++) {
  r.push(await reliable(sinkPort));
  p.push(await plain(echoPort));
  console.log(`run ${k + 1}: reliable ${r[k].toFixed(0)} msg/s, plain ${p[k].toFixed(0)} msg/s`);
}
sink.kill(); echo.kill();
const mr = median(r), mp = median(p);
console.log(`${N} messages of ${payload(0).length} bytes, median of ${RUNS}: reliable ${mr.toFixed(0)} msg/s, plain ${mp.toFixed(0)} msg/s, ratio ${(mr / mp).toFixed(2)}`);
