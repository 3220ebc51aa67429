// 10,000 messages each way between this client and the Rust examples, through a TCP
// proxy that cuts every connection at 20 seeded byte offsets: none lost, none doubled, in
// order. Then the .mjs examples against the Rust ones (their command-line contract).
// No clock in any assert: each step waits for the exact output it expects; the test
// timeout is only a hang guard. SOCKEYE_SEED=<n> replays a seed.
//
// The Rust examples come from `cargo build -p sockeye-std --examples` (debug; a no-op
// when scripts/test.sh already built them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { WebSocket } from 'ws';
import { ReliableClient } from '../sockeye.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const MESSAGES = 10_000, CUTS = 20;
const seed = Number(process.env.SOCKEYE_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`proxy.test.js: SOCKEYE_SEED=${seed}`);

function rng(s) { // mulberry32
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let examplesDir;
function examples() {
  if (!examplesDir) {
    execFileSync('cargo', ['build', '--quiet', '-p', 'sockeye-std', '--example', 'reliable_sink', '--example', 'reliable_source'], { cwd: root, stdio: 'inherit' });
    const meta = JSON.parse(execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26 }));
    examplesDir = path.join(meta.target_directory, 'debug', 'examples');
  }
  return examplesDir;
}

/** A child process whose stdout and stderr lines can be awaited. */
class Peer {
  constructor(cmd, args) {
    this.p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.lines = []; this.err = []; this.waiters = [];
    createInterface({ input: this.p.stdout }).on('line', (l) => { this.lines.push(l); this._wake(); });
    createInterface({ input: this.p.stderr }).on('line', (l) => { this.err.push(l); this._wake(); });
    this.exit = new Promise((res) => this.p.on('exit', (code, signal) => { this.code = code; res(code ?? signal); this._wake(); }));
    this.stdoutDone = new Promise((res) => this.p.stdout.on('close', res));
  }
  _wake() { for (const w of this.waiters.splice(0)) w(); }
  /** Resolves once `pred()` holds (checked on every line and at exit). */
  async until(pred, what) {
    while (!pred()) {
      if (this.code !== undefined) throw new Error(`${what}: exited ${this.code}; stderr: ${this.err.slice(-5).join(' | ')}`);
      await new Promise((r) => this.waiters.push(r));
    }
  }
  async listening() {
    await this.until(() => this.err.some((l) => / listening on ws:\/\//.test(l)), 'listening');
    return Number(this.err.find((l) => / listening on ws:\/\//.test(l)).match(/:(\d+)\s*$/)[1]);
  }
  kill() { if (this.code === undefined) this.p.kill(); }
}

/** Forwards to 127.0.0.1:upstream; at each offset of the bytes forwarded (both directions, all connections) it cuts every connection. */
function cuttingProxy(upstream, cuts) {
  const st = { forwarded: 0, cuts: [...cuts].sort((a, b) => a - b), cutsDone: 0, connections: 0, sockets: new Set() };
  const cutAll = () => { st.cuts.shift(); st.cutsDone++; for (const s of st.sockets) s.destroy(); st.sockets.clear(); };
  const pump = (from, to) => from.on('data', (chunk) => {
    if (to.destroyed) return;
    const at = st.cuts[0];
    if (at !== undefined && st.forwarded + chunk.length >= at) {
      const keep = Math.max(0, at - st.forwarded);
      st.forwarded += keep;
      to.write(chunk.subarray(0, keep)); // bytes in flight vanish with the cut
      cutAll();
    } else { st.forwarded += chunk.length; to.write(chunk); }
  });
  st.server = net.createServer((client) => {
    st.connections++;
    const up = net.connect(upstream, '127.0.0.1');
    for (const s of [client, up]) { s.setNoDelay(true); s.on('error', () => {}); s.on('close', () => { client.destroy(); up.destroy(); st.sockets.delete(s); }); st.sockets.add(s); }
    pump(client, up); pump(up, client);
  });
  return new Promise((res) => st.server.listen(0, '127.0.0.1', () => { st.port = st.server.address().port; res(st); }));
}

/** CUTS seeded offsets within the bytes a run certainly forwards (each message once, frame and envelope headers at least 6 bytes). */
function cutOffsets(r, n, count) {
  let floor = 0;
  for (let i = 0; i < n; i++) floor += String(i).length + 6;
  return Array.from({ length: count }, () => 500 + Math.floor(r() * floor * 0.9));
}

// Quick reconnects, and more tries than cuts: this is about cuts, not giving up (PROTOCOL.md §7).
const clientOptions = { WebSocket, reconnectInitialDelay: 2, reconnectMaxDelay: 50, resendMaxTries: 2 * CUTS + 2 };
const expected = (n) => Array.from({ length: n }, (_, i) => String(i));

test('JS → Rust: 10,000 messages through 20 cuts, none lost, none doubled, in order', { timeout: 300_000 }, async () => {
  const sink = new Peer(path.join(examples(), 'reliable_sink'), ['127.0.0.1:0']);
  try {
    const proxy = await cuttingProxy(await sink.listening(), cutOffsets(rng(seed), MESSAGES, CUTS));
    const client = new ReliableClient(`ws://127.0.0.1:${proxy.port}/`, clientOptions);
    const dead = [];
    client.on('deadletter', (d) => dead.push(d));
    const acked = [];
    for (let i = 0; i < MESSAGES; i++) {
      for (;;) {
        try { acked.push(client.send(String(i))); break; } catch (e) {
          if (e.reason !== 'Full') throw e;
          await acked[acked.length - client.inFlight.messages]; // the oldest held: the window moves
        }
      }
    }
    await Promise.all(acked);
    client.close();
    await sink.until(() => sink.lines.length >= MESSAGES, `sink printed ${sink.lines.length} lines`);
    sink.kill();
    await sink.stdoutDone; // everything it ever printed
    assert.deepEqual(dead, []);
    assert.equal(sink.lines.length, MESSAGES, 'no line doubled');
    assert.deepEqual(sink.lines, expected(MESSAGES), 'in order');
    assert.equal(proxy.cutsDone, CUTS, 'every cut happened');
    console.log(`JS → Rust: ${MESSAGES} messages, ${proxy.connections} connections, ${proxy.cutsDone} cuts`);
    proxy.server.close();
  } finally { sink.kill(); }
});

test('Rust → JS: 10,000 messages through 20 cuts, none lost, none doubled, in order', { timeout: 300_000 }, async () => {
  const source = new Peer(path.join(examples(), 'reliable_source'), ['127.0.0.1:0', String(MESSAGES), String(2 * CUTS + 2)]);
  try {
    const proxy = await cuttingProxy(await source.listening(), cutOffsets(rng(seed + 1), MESSAGES, CUTS));
    const client = new ReliableClient(`ws://127.0.0.1:${proxy.port}/`, clientOptions);
    const got = [];
    client.on('message', (m) => got.push(m));
    const code = await source.exit; // exits once the client acknowledged all (or listed dead letters)
    client.close();
    assert.equal(code, 0, `reliable_source failed: ${source.err.slice(-5).join(' | ')}`);
    assert.equal(got.length, MESSAGES, 'none lost, none doubled');
    assert.deepEqual(got, expected(MESSAGES), 'in order');
    assert.equal(proxy.cutsDone, CUTS, 'every cut happened');
    console.log(`Rust → JS: ${MESSAGES} messages, ${proxy.connections} connections, ${proxy.cutsDone} cuts`);
    proxy.server.close();
  } finally { source.kill(); }
});

test('examples: reliable_send.mjs → Rust reliable_sink, Rust reliable_source → reliable_sink.mjs, through 4 cuts', { timeout: 300_000 }, async () => {
  const N = 2000, r = rng(seed + 2);
  const ex = path.join(here, '..', 'examples');
  const sink = new Peer(path.join(examples(), 'reliable_sink'), ['127.0.0.1:0']);
  const source = new Peer(path.join(examples(), 'reliable_source'), ['127.0.0.1:0', String(N)]);
  const peers = [sink, source];
  try {
    // Few cuts, so the examples' default resend_max_tries (8) is never reached.
    const p1 = await cuttingProxy(await sink.listening(), cutOffsets(r, N, 4));
    const send = new Peer(process.execPath, [path.join(ex, 'reliable_send.mjs'), `ws://127.0.0.1:${p1.port}`, String(N)]);
    peers.push(send);
    assert.equal(await send.exit, 0, `reliable_send.mjs failed: ${send.err.slice(-5).join(' | ')}`);
    await sink.until(() => sink.lines.length >= N, 'reliable_sink lines');
    sink.kill(); await sink.stdoutDone;
    assert.deepEqual(sink.lines, expected(N));
    assert.equal(p1.cutsDone, 4);

    const p2 = await cuttingProxy(await source.listening(), cutOffsets(r, N, 4));
    const jsink = new Peer(process.execPath, [path.join(ex, 'reliable_sink.mjs'), `ws://127.0.0.1:${p2.port}`]);
    peers.push(jsink);
    assert.equal(await source.exit, 0, `reliable_source failed: ${source.err.slice(-5).join(' | ')}`);
    // Acknowledged means delivered, so every line is printed or about to be.
    await jsink.until(() => jsink.lines.length >= N, 'reliable_sink.mjs lines');
    jsink.kill(); await jsink.stdoutDone;
    assert.deepEqual(jsink.lines, expected(N));
    assert.equal(p2.cutsDone, 4);
    p1.server.close(); p2.server.close();
  } finally { for (const p of peers) p.kill(); }
});

let sockeyeBin;
/** The `sockeye` server binary (debug; a no-op after `scripts/test.sh`'s cargo tests). */
function sockeye() {
  if (!sockeyeBin) {
    execFileSync('cargo', ['build', '--quiet', '-p', 'sockeye'], { cwd: root, stdio: 'inherit' });
    const meta = JSON.parse(execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 26 }));
    sockeyeBin = path.join(meta.target_directory, 'debug', 'sockeye');
  }
  return sockeyeBin;
}

test('examples with a ROOM against the sockeye server: reliable_send.mjs → room → reliable_sink.mjs, both cut 4 times', { timeout: 300_000 }, async () => {
  // Fewer than the server's session window (1,024): a sink cut off while the sender goes
  // on is never a slow consumer.
  const N = 1000, r = rng(seed + 3);
  const ex = path.join(here, '..', 'examples');
  const server = new Peer(sockeye(), ['--listen', '127.0.0.1:0']);
  const peers = [server];
  try {
    await server.until(() => server.err.some((l) => /listening on \d/.test(l)), 'listening');
    const port = Number(server.err.find((l) => /listening on \d/.test(l)).match(/listening on [\d.]+:(\d+)/)[1]);
    const ps = await cuttingProxy(port, cutOffsets(r, N, 4));
    const pr = await cuttingProxy(port, cutOffsets(r, N, 4));
    const sink = new Peer(process.execPath, [path.join(ex, 'reliable_sink.mjs'), `ws://127.0.0.1:${pr.port}/ws?user=sink`, 'lobby']);
    peers.push(sink);
    await sink.until(() => sink.err.includes('joined lobby'), 'the sink joins');
    const send = new Peer(process.execPath, [path.join(ex, 'reliable_send.mjs'), `ws://127.0.0.1:${ps.port}/ws?user=sender`, String(N), 'lobby']);
    peers.push(send);
    assert.equal(await send.exit, 0, `reliable_send.mjs failed: ${send.err.slice(-5).join(' | ')}`);
    // Acknowledged means published to every member, the sink's session included.
    await sink.until(() => sink.lines.length >= N && pr.cutsDone === 4, 'reliable_sink.mjs lines and cuts');
    sink.kill(); await sink.stdoutDone;
    assert.deepEqual(sink.lines, expected(N));
    assert.equal(ps.cutsDone, 4);
    ps.server.close(); pr.server.close();
  } finally { for (const p of peers) p.kill(); }
});
