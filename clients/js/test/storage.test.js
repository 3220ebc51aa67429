// The `storage` option: a session kept in a (fake) sessionStorage survives a "reload" — a
// second client made over the same storage resumes it, resends what was unacknowledged and
// delivers nothing twice; a refused resume reports the kept messages as dead letters; a
// damaged entry is dropped. Virtual time and fake sockets only: no sleeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReliableClient, encodeEnvelope, decodeEnvelope, fromBase64url, WelcomeStatus } from '../sockeye.js';

/** What `sessionStorage` offers, over a Map; counts writes. */
class FakeStorage {
  constructor() { this.map = new Map(); this.writes = 0; }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.writes++; this.map.set(k, String(v)); }
  removeItem(k) { this.map.delete(k); }
}

const utf8 = new TextEncoder(), utf8d = new TextDecoder();
const tick = async () => { for (let i = 0; i < 5; i++) await Promise.resolve(); };
const ID = Uint8Array.from({ length: 16 }, (_, i) => i + 1), TOKEN = Uint8Array.from({ length: 16 }, (_, i) => 100 + i);

/** One page's worth of client: fake sockets (each records what the client sent), fake timers. */
function page(storage, options = {}) {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocol) {
      assert.equal(protocol, 'sockeye.v1');
      this.url = new URL(url); this.readyState = 1; this.sent = [];
      sockets.push(this);
    }
    send(bytes) { this.sent.push(decodeEnvelope(Uint8Array.from(bytes))); }
    close() { this.readyState = 3; }
    // The server's side of this socket:
    deliver(env) { this.onmessage({ data: encodeEnvelope(env).buffer }); }
    data() { return this.sent.filter((e) => e.kind === 'data').map((e) => [e.seq, utf8d.decode(e.payload)]); }
    resume() { const v = this.url.searchParams.get('sockeye_resume'); return v && decodeEnvelope(fromBase64url(v)); }
  }
  let now = 1000;
  const client = new ReliableClient('ws://test/ws', {
    WebSocket: FakeWebSocket, storage, clock: { now: () => now },
    setTimeout: () => 0, clearTimeout: () => {}, random: () => 0, ...options,
  });
  const events = { message: [], acked: [], deadletter: [], state: [] };
  client.on('message', (p, seq) => events.message.push([seq, p]));
  client.on('acked', ({ seq }) => events.acked.push(seq));
  client.on('deadletter', (d) => events.deadletter.push([d.seq, d.reason, d.possiblyDelivered, d.payload]));
  client.on('state', (s) => events.state.push(s));
  return { client, sockets, events };
}

const welcome = (status, lastDelivered = 0, id = ID) => ({ kind: 'welcome', status, sessionId: id, token: TOKEN, lastDelivered, expirySecs: 120 });
const data = (seq, text, ack = 0) => ({ kind: 'data', text: true, void: false, seq, ack, payload: utf8.encode(text) });

test('a reload resumes the kept session: unacked messages resent, nothing delivered twice', async () => {
  const storage = new FakeStorage();
  const before = page(storage, { storageKey: 'chat' });
  await tick();
  const [ws] = before.sockets;
  assert.equal(ws.resume(), null, 'nothing kept yet: a new session');
  ws.deliver(welcome(WelcomeStatus.NEW));
  ws.deliver(data(1, 's1'));
  ws.deliver(data(2, 's2'));
  const sends = ['c1', 'c2', 'c3'].map((t) => before.client.send(t));
  assert.deepEqual(sends.map((p) => p.seq), [1, 2, 3], 'each promise names its seq');
  ws.deliver({ kind: 'ack', ack: 1 });
  assert.deepEqual(before.events.acked, [1]);
  assert.equal(storage.getItem('sockeye.session'), null, 'only the key given is used');
  assert.equal(storage.writes, 0, 'not written while the task runs');
  await tick();
  assert.equal(storage.writes, 1, 'one write for all the changes of a task');
  // The page goes away here; the next one is made over the same storage.

  const after = page(storage, { storageKey: 'chat' });
  await tick();
  const [ws2] = after.sockets;
  const r = ws2.resume();
  assert.deepEqual([r.sessionId, r.token, r.lastDelivered], [ID, TOKEN, 2], 'resumes the kept session at s2');
  assert.deepEqual(after.events.state, ['resuming']);
  // The server had c2 (its ACK was lost), not c3; it resends s2 (our ACK was lost) and sends s3.
  ws2.deliver(welcome(WelcomeStatus.RESUMED, 2));
  assert.deepEqual(after.events.acked, [2], 'c2 acknowledged by the resume');
  assert.deepEqual(ws2.data(), [[3, 'c3']], 'only c3 is resent, under its own seq');
  ws2.deliver(data(2, 's2', 2));
  ws2.deliver(data(3, 's3', 3));
  assert.deepEqual(after.events.message, [[3, 's3']], 's2 is not delivered again');
  assert.deepEqual(after.events.acked, [2, 3]);
  assert.deepEqual(after.events.state, ['resuming', 'connected', 'resumed']);
  assert.equal(after.client.send('c4').seq, 4, 'numbering goes on');
  assert.deepEqual(after.client.inFlight, { messages: 1, bytes: 2 });
  await tick();

  // A third page resumes from where the second left off.
  const third = page(storage, { storageKey: 'chat' });
  await tick();
  assert.equal(third.sockets[0].resume().lastDelivered, 3);
  third.sockets[0].deliver(welcome(WelcomeStatus.RESUMED, 3));
  assert.deepEqual(third.sockets[0].data(), [[4, 'c4']]);
  before.client.close(); after.client.close(); third.client.close();
});

test('messages sent before the first WELCOME are kept too', async () => {
  const storage = new FakeStorage();
  const before = page(storage);
  await tick();
  before.client.send('early'); // the connection is not established yet
  await tick();
  const after = page(storage);
  await tick();
  assert.equal(after.sockets[0].resume(), null, 'no session to resume yet');
  after.sockets[0].deliver(welcome(WelcomeStatus.NEW));
  assert.deepEqual(after.sockets[0].data(), [[1, 'early']]);
  before.client.close(); after.client.close();
});

test('a refused resume reports the kept messages as dead letters', async () => {
  const storage = new FakeStorage();
  const before = page(storage);
  await tick();
  before.sockets[0].deliver(welcome(WelcomeStatus.NEW));
  before.client.send('sent once'); // transmitted: the server may have it
  before.sockets[0].close(); before.sockets[0].onclose({ code: 1006 });
  before.client.send('never sent'); // queued while disconnected
  await tick();

  const after = page(storage);
  await tick();
  const other = Uint8Array.from({ length: 16 }, () => 7);
  after.sockets[0].deliver(welcome(WelcomeStatus.REFUSED_UNKNOWN, 0, other)); // e.g. the server restarted
  assert.deepEqual(after.events.deadletter, [[1, 'SessionLost', true, 'sent once'], [2, 'SessionLost', false, 'never sent']]);
  assert.deepEqual(after.events.state, ['resuming', 'refused', 'connected']);
  assert.deepEqual(after.client.inFlight, { messages: 0, bytes: 0 });
  await tick();
  const kept = JSON.parse(storage.getItem('sockeye.session'));
  assert.deepEqual(fromBase64url(kept[0]), other, 'the new session is kept');
  assert.deepEqual(kept[4], [], 'and nothing of the old one');
  before.client.close(); after.client.close();
});

test('a damaged entry is dropped; without storage nothing is written', async () => {
  const storage = new FakeStorage();
  storage.setItem('sockeye.session', '{"not":"ours"');
  const p = page(storage);
  await tick();
  assert.equal(p.sockets[0].resume(), null, 'a new session');
  assert.equal(storage.getItem('sockeye.session'), null, 'the damaged entry is gone');
  p.client.close();

  const none = page(undefined);
  await tick();
  none.sockets[0].deliver(welcome(WelcomeStatus.NEW));
  none.client.send('x');
  await tick();
  assert.equal(none.client.send('y').seq, 2);
  none.client.close();
});
