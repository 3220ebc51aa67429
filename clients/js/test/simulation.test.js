// A seeded, deterministic simulation: the client against an in-process fake sockeye.v1
// server over fake sockets, with cuts (loss), resends (duplicates), refused connections,
// reconnects and server restarts (refused resumes). Virtual time only: no sleeps.
// After every step: each message delivered at most once and in order, both directions,
// never delivered after a certain dead letter, acked only once delivered, windows held.
// At the end: every message acknowledged or dead-lettered, every server message delivered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReliableClient, SendError, encodeEnvelope, decodeEnvelope, fromBase64url, WelcomeStatus } from '../sockeye.js';

function rng(seed) { // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class VirtualTime {
  constructor() { this.t = 0; this.timers = new Map(); this.nextId = 1; }
  now() { return this.t; }
  setTimeout(fn, ms) { const id = this.nextId++; this.timers.set(id, { at: this.t + Math.max(0, ms), fn, id }); return id; }
  clearTimeout(id) { this.timers.delete(id); }
  advance(ms) {
    const end = this.t + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 10000) throw new Error(`timer storm at ${this.t}: ${[...this.timers.values()].map((x) => x.fn.toString().slice(0, 60))}`);
      let due = null;
      for (const x of this.timers.values()) if (x.at <= end && (!due || x.at < due.at || (x.at === due.at && x.id < due.id))) due = x;
      if (!due) break;
      this.timers.delete(due.id);
      this.t = due.at;
      due.fn();
    }
    this.t = end;
  }
}

const hex = (b) => Buffer.from(b).toString('hex');
const utf8 = new TextEncoder(), utf8d = new TextDecoder();

function makeWorld(seed) {
  const r = rng(seed);
  const time = new VirtualTime();
  const w = { r, time, pending: [], conn: null, sessions: new Map(), serverGot: [], clientGot: [], sent: 0, serverSent: 0, lostServer: new Set(), failures: [], reasons: {} };

  class FakeWebSocket {
    constructor(url, protocol) {
      assert.equal(protocol, 'sockeye.v1');
      this.url = new URL(url); this.readyState = 0; this.binaryType = 'blob';
      this.c2s = []; this.s2c = []; this.server = null;
      w.pending.push(this);
    }
    send(bytes) { assert.equal(this.readyState, 1, 'send on an open socket only'); this.c2s.push(Uint8Array.from(bytes)); }
    close() { this.readyState = 3; if (w.conn === this) w.conn = null; }
  }
  w.FakeWebSocket = FakeWebSocket;

  const ssend = (ws, env) => ws.s2c.push(encodeEnvelope(env));

  w.accept = () => {
    const ws = w.pending.shift();
    if (ws.readyState === 3) return;
    if (w.r() < 0.15) { ws.readyState = 3; ws.onclose?.({ code: 1006, reason: '503' }); return; } // refused upgrade
    assert.equal(ws.binaryType, 'arraybuffer');
    if (w.conn) { w.conn.readyState = 3; w.conn.onclose?.({ code: 1001 }); }
    const resume = ws.url.searchParams.get('sockeye_resume');
    let s = null, status = WelcomeStatus.NEW;
    if (resume) {
      const r = decodeEnvelope(fromBase64url(resume));
      assert.equal(r.kind, 'resume');
      const known = w.sessions.get(hex(r.sessionId));
      if (known && hex(known.token) === hex(r.token)) {
        s = known; status = WelcomeStatus.RESUMED;
        assert.ok(r.lastDelivered <= s.outNext - 1, 'client claims no more than we sent');
        s.out = s.out.filter((m) => m.seq > r.lastDelivered);
      } else status = WelcomeStatus.REFUSED_UNKNOWN;
    }
    if (!s) {
      const id = Uint8Array.from({ length: 16 }, () => Math.floor(w.r() * 256));
      const token = Uint8Array.from({ length: 16 }, () => Math.floor(w.r() * 256));
      s = { id, token, delivered: 0, outNext: 1, out: [] };
      w.sessions.set(hex(id), s);
    }
    ws.readyState = 1; ws.server = s; w.conn = ws;
    w.reasons['welcome' + status] = (w.reasons['welcome' + status] ?? 0) + 1;
    ssend(ws, { kind: 'welcome', status, sessionId: s.id, token: s.token, lastDelivered: s.delivered, expirySecs: 120 });
    for (const m of s.out) ssend(ws, { kind: 'data', text: true, void: false, seq: m.seq, ack: s.delivered, payload: utf8.encode(m.text) });
    ws.onopen?.({});
  };

  w.serverReceive = () => {
    const ws = w.conn, s = ws.server;
    const e = decodeEnvelope(ws.c2s.shift());
    if (e.kind !== 'data' && e.kind !== 'ack') return w.failures.push(`server got ${e.kind}`);
    if (e.ack > s.outNext - 1) return w.failures.push('client acked the future');
    s.out = s.out.filter((m) => m.seq > e.ack);
    if (e.kind !== 'data') return;
    if (e.seq <= s.delivered) return ssend(ws, { kind: 'ack', ack: s.delivered });
    if (e.seq > s.delivered + 1) return w.failures.push(`gap: ${e.seq} after ${s.delivered}`);
    s.delivered = e.seq;
    if (!e.void) w.serverGot.push(Number(utf8d.decode(e.payload).slice(1)));
    if (w.r() < 0.3) ssend(ws, { kind: 'ack', ack: s.delivered });
  };

  w.serverSend = () => {
    const ws = w.conn, s = ws.server;
    const m = { seq: s.outNext++, text: `s${w.serverSent++}` };
    s.out.push(m);
    ssend(ws, { kind: 'data', text: true, void: false, seq: m.seq, ack: s.delivered, payload: utf8.encode(m.text) });
  };

  w.cut = () => { const ws = w.conn; w.conn = null; ws.readyState = 3; ws.onclose?.({ code: 1006, reason: 'cut' }); };
  w.restart = () => { w.reasons.restart = (w.reasons.restart ?? 0) + 1; // the server forgets every session; their unsent messages are lost
    for (const s of w.sessions.values()) for (const m of s.out) w.lostServer.add(Number(m.text.slice(1)));
    w.sessions.clear();
    if (w.conn) w.cut();
  };
  return w;
}

const OPTS = { windowMessages: 8, windowBytes: 40, ackDelay: 20, ackEveryMessages: 4, rtoMin: 200, rtoInitial: 300,
  resendMaxTries: 4, messageMaxAge: 6000, reconnectInitialDelay: 100, reconnectMaxDelay: 2000, handshakeTimeout: 3000 };

function run(seed, steps) {
  const w = makeWorld(seed);
  const c = new ReliableClient('ws://sim/ws', { ...OPTS, WebSocket: w.FakeWebSocket, clock: w.time,
    setTimeout: (f, ms) => w.time.setTimeout(f, ms), clearTimeout: (id) => w.time.clearTimeout(id), random: w.r, token: 't' });
  const acked = new Set(), dead = new Map(), resolved = new Set(), rejected = new Set();
  c.on('message', (p) => w.clientGot.push(Number(p.slice(1))));
  c.on('deadletter', (d) => {
    const i = Number(d.payload.slice(1));
    assert.ok(!dead.has(i), `dead-lettered twice: ${i}`);
    assert.ok(!acked.has(i), `acked then dead: ${i}`);
    dead.set(i, d); w.reasons[d.reason] = (w.reasons[d.reason] ?? 0) + 1;
  });
  c.on('acked', () => {});
  const check = (where) => {
    assert.deepEqual(w.failures, [], where);
    for (let k = 1; k < w.serverGot.length; k++) {
      // in order, at most once; a later session restarts nothing: payload indices only grow
      assert.ok(w.serverGot[k] > w.serverGot[k - 1], `${where}: server order ${w.serverGot.slice(-5)}`);
    }
    for (let k = 1; k < w.clientGot.length; k++) assert.ok(w.clientGot[k] > w.clientGot[k - 1], `${where}: client order`);
    const got = new Set(w.serverGot);
    for (const [i, d] of dead) if (!d.possiblyDelivered) assert.ok(!got.has(i), `${where}: ${i} delivered and certainly dead`);
    for (const i of resolved) assert.ok(got.has(i), `${where}: ${i} acked but never delivered`);
    const f = c.inFlight;
    assert.ok(f.messages <= OPTS.windowMessages && f.bytes <= OPTS.windowBytes, `${where}: window`);
  };
  const sendOne = () => {
    const i = w.sent;
    try {
      c.send(`c${i}`).then(() => { resolved.add(i); acked.add(i); }, (e) => { rejected.add(i); assert.equal(e.name, 'DeadLetterError'); });
      w.sent++;
    } catch (e) {
      assert.ok(e instanceof SendError && e.reason === 'Full');
      const f = c.inFlight;
      assert.ok(f.messages === OPTS.windowMessages || f.bytes + `c${i}`.length > OPTS.windowBytes, 'Full only when full');
    }
  };
  const microtasks = async () => { for (let k = 0; k < 3; k++) await Promise.resolve(); };
  return (async () => {
    for (let step = 0; step < steps; step++) {
      const x = w.r();
      if (x < 0.2) sendOne();
      else if (x < 0.3 && w.conn) w.serverSend();
      else if (x < 0.5 && w.conn?.c2s.length) w.serverReceive();
      else if (x < 0.7 && w.conn?.s2c.length) c._ws === w.conn && w.conn.onmessage({ data: w.conn.s2c.shift().slice().buffer });
      else if (x < 0.8 && w.pending.length) w.accept();
      else if (x >= 0.8 && x < 0.83 && w.conn) w.cut();
      else if (x >= 0.83 && x < 0.834) w.restart();
      else w.time.advance(Math.floor(w.r() * (w.r() < 0.1 ? 3000 : 150)));
      await microtasks();
      check(`seed ${seed} step ${step}`);
    }
    // Drain: no more faults; deliver everything until all is settled.
    for (let k = 0; k < 2000 && (c.inFlight.messages || (w.conn?.server.out.length ?? 1) || w.pending.length); k++) {
      if (w.conn && c._ws !== w.conn) w.cut(); // a connection the client already left
      if (w.pending.length) { const save = w.r; w.r = () => 0.5; w.accept(); w.r = save; }
      while (w.conn && (w.conn.c2s.length || w.conn.s2c.length)) {
        if (w.conn.c2s.length) w.serverReceive();
        if (w.conn?.s2c.length && c._ws === w.conn) w.conn.onmessage({ data: w.conn.s2c.shift().slice().buffer });
        await microtasks();
        check(`seed ${seed} drain`);
      }
      w.time.advance(100);
      await microtasks();
    }
    check(`seed ${seed} end`);
    assert.equal(c.inFlight.messages, 0, `seed ${seed}: unacked left`);
    for (let i = 0; i < w.sent; i++) {
      assert.ok(resolved.has(i) !== rejected.has(i), `seed ${seed}: message ${i} settled exactly once`);
      assert.ok(resolved.has(i) || dead.has(i), `seed ${seed}: ${i} neither acked nor dead`);
    }
    // Sessions the client never learnt of (their WELCOME was cut) or left behind would expire on
    // the server, which dead-letters their messages: only the client's session must be complete.
    for (const [k, sess] of w.sessions) if (k !== hex(c.session.id)) for (const m of sess.out) w.lostServer.add(Number(m.text.slice(1)));
    const got = new Set(w.clientGot);
    for (let i = 0; i < w.serverSent; i++) if (!w.lostServer.has(i)) assert.ok(got.has(i), `seed ${seed}: server message ${i} never delivered; got ${w.clientGot.slice(-20)} ${JSON.stringify(w.reasons)} sessions ${[...w.sessions.values()].map((s) => JSON.stringify(s.out))}`);
    c.close();
    return { sent: w.sent, dead: dead.size, got: w.serverGot.length, back: w.clientGot.length };
  })();
}

test('seeded simulation: exactly once, in order, or dead-lettered (200 seeds)', async () => {
  const totals = { sent: 0, dead: 0, got: 0, back: 0 };
  for (let seed = Number(process.env.SIM_FIRST ?? 1); seed <= Number(process.env.SIM_SEEDS ?? 200); seed++) {
    const t = await run(seed, Number(process.env.SIM_STEPS ?? 1500));
    for (const k in totals) totals[k] += t[k];
  }
  console.log('simulation totals', JSON.stringify(totals));
  // The simulation must exercise the interesting paths, not pass vacuously.
  assert.ok(totals.got > 10000, `delivered ${totals.got}`);
  assert.ok(totals.back > 3000, `server to client ${totals.back}`);
  assert.ok(totals.dead > 0, 'some dead letters');
});
