// sockeye.js — a `sockeye.v1` reliable WebSocket client (docs/PROTOCOL.md).
// ES module, no dependencies, no build step. Works in browsers and in Node 20 (with `ws`).

/** The subprotocol this client offers. */
export const PROTOCOL = 'sockeye.v1';

/** Envelope kind bytes (PROTOCOL.md §3). */
// The codec below writes these numbers literally, named in a comment beside each.
export const Kind = Object.freeze({ DATA: 1, ACK: 2, WELCOME: 3, RESUME: 4, ERROR: 5 });

/** WELCOME status bytes (PROTOCOL.md §3.3). */
export const WelcomeStatus = Object.freeze({ NEW: 0, RESUMED: 1, REFUSED_UNKNOWN: 2, REFUSED_EXPIRED: 3 });

const G = globalThis, U8 = Uint8Array;
const U64_MAX = (1n << 64n) - 1n;
const utf8enc = new TextEncoder();
const utf8dec = new TextDecoder('utf-8', { fatal: true });

/** A malformed envelope (ERROR code 1, or 6 for bad UTF-8 text). */
export class MalformedError extends Error {
  /** @param {string} message @param {number} [code] */
  constructor(message, code = 1) { super(message); this.name = 'MalformedError'; this.code = code; }
}

const bad = (message, code) => { throw new MalformedError(message, code); };

/** Thrown by `send` when the flow window is full (`Full`) or a payload can never fit (`TooLarge`). */
export class SendError extends Error {
  /** @param {'Full'|'TooLarge'|'Closed'} reason */
  constructor(reason) { super(reason); this.name = 'SendError'; this.reason = reason; }
}

/** The rejection of a `send` promise whose message was dead-lettered (PROTOCOL.md §6.6, §7). */
export class DeadLetterError extends Error {
  /** @param {'ResendMaxTries'|'MessageMaxAge'|'SessionLost'} reason @param {number} seq @param {boolean} possiblyDelivered @param {string|Uint8Array} payload */
  constructor(reason, seq, possiblyDelivered, payload) {
    super(`dead letter (${reason}${possiblyDelivered ? ', possibly delivered' : ''})`);
    this.name = 'DeadLetterError'; this.reason = reason; this.seq = seq;
    this.possiblyDelivered = possiblyDelivered; this.payload = payload;
  }
}

// ---- varints (PROTOCOL.md §2) ----

/**
 * Encode an unsigned LEB128 varint.
 * @param {number|bigint} value 0 ..= 2^64-1
 * @returns {Uint8Array}
 */
export const encodeVarint = (value) => U8.from(varint(value));

// The bytes of a varint as an array, which `concat` takes as it is.
function varint(value) {
  const out = [];
  if (Number.isSafeInteger(value) && value >= 0) { // every seq and ack a client reaches: no BigInt
    for (; value > 127; value = Math.floor(value / 128)) out.push(value % 128 | 128);
    out.push(value);
  } else {
    let v = BigInt(value);
    if (v < 0n || v > U64_MAX) throw new RangeError('varint out of range');
    for (; v > 127n; v >>= 7n) out.push(Number(v & 127n) | 128);
    out.push(Number(v));
  }
  return out;
}

/**
 * Decode a varint at `offset`, strictly: minimal, at most 10 bytes, fits in a u64.
 * @param {Uint8Array} bytes
 * @param {number} [offset]
 * @returns {{value: number|bigint, next: number}} a number when it is a safe integer, else a bigint
 */
export function decodeVarint(bytes, offset = 0) {
  let n = 0;
  for (let i = 0; i < 10; i++) {
    const p = offset + i, b = bytes[p];
    if (p >= bytes.length) bad('truncated varint');
    if (i === 9 && b > 1) bad('varint overflows u64');
    // Exact while the value is under 2^53; a sum that reaches it is redone in BigInt.
    n += (b & 127) * 2 ** (7 * i);
    if (b < 128) {
      if (i > 0 && b === 0) bad('non-minimal varint');
      if (n < 2 ** 53) return { value: n, next: p + 1 };
      let v = 0n;
      for (let j = p; j >= offset; j--) v = v << 7n | BigInt(bytes[j] & 127);
      return { value: v, next: p + 1 };
    }
  }
  bad('varint longer than 10 bytes');
}

// ---- envelopes (PROTOCOL.md §3) ----

/**
 * @typedef {{kind:'data', text:boolean, void:boolean, seq:number, ack:number, payload:Uint8Array}} DataEnvelope
 * @typedef {{kind:'ack', ack:number}} AckEnvelope
 * @typedef {{kind:'welcome', status:number, sessionId:Uint8Array, token:Uint8Array, lastDelivered:number, expirySecs:number}} WelcomeEnvelope
 * @typedef {{kind:'resume', sessionId:Uint8Array, token:Uint8Array, lastDelivered:number}} ResumeEnvelope
 * @typedef {{kind:'error', code:number, reason:string}} ErrorEnvelope
 * @typedef {DataEnvelope|AckEnvelope|WelcomeEnvelope|ResumeEnvelope|ErrorEnvelope} Envelope
 */

function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new U8(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

const ids = (e) => [e.sessionId, e.token].map((x) => {
  if (x instanceof U8 && x.length === 16) return x;
  throw new TypeError('sessionId and token must be 16 bytes');
});

/**
 * Encode one envelope to the exact bytes of PROTOCOL.md.
 * @param {Envelope} e
 * @returns {Uint8Array}
 */
export function encodeEnvelope(e) {
  switch (e.kind) {
    case 'data': {
      const payload = e.payload ?? new U8(0);
      if (e.void && (e.text || payload.length)) throw new TypeError('void DATA with payload or text');
      const flags = (e.text ? 1 : 0) | (e.void ? 2 : 0);
      return concat([[1 /* DATA */, flags], varint(e.seq), varint(e.ack), payload]);
    }
    case 'ack': return concat([[2 /* ACK */], varint(e.ack)]);
    case 'welcome':
      return concat([[3 /* WELCOME */, e.status], ...ids(e),
        varint(e.lastDelivered), varint(e.expirySecs)]);
    case 'resume':
      return concat([[4 /* RESUME */], ...ids(e), varint(e.lastDelivered)]);
    case 'error': {
      let reason = utf8enc.encode(e.reason ?? '');
      if (reason.length > 123) {
        let n = 123;
        while (n > 0 && (reason[n] & 0xc0) === 0x80) n--; // cut at a char boundary
        reason = reason.subarray(0, n);
      }
      return concat([[5 /* ERROR */, (e.code >> 8) & 0xff, e.code & 0xff], reason]);
    }
    default: throw new TypeError(`unknown envelope kind ${e.kind}`);
  }
}

/**
 * Decode one WebSocket message holding exactly one envelope. Throws `MalformedError`.
 * @param {Uint8Array|ArrayBuffer} input
 * @returns {Envelope}
 */
export function decodeEnvelope(input) {
  const b = input instanceof U8 ? input : new U8(input);
  if (b.length === 0) bad('empty message');
  const need = (n) => b.length < n && bad(`truncated kind ${b[0]}`);
  const end = (p) => { if (p !== b.length) bad('trailing bytes'); };
  switch (b[0]) {
    case 1: { // DATA
      need(2);
      const flags = b[1];
      if (flags & ~3) bad('reserved flags');
      const s = decodeVarint(b, 2);
      const a = decodeVarint(b, s.next);
      if (s.value === 0) bad('seq 0');
      const payload = b.slice(a.next);
      const isVoid = (flags & 2) !== 0, text = (flags & 1) !== 0;
      if (isVoid && (text || payload.length)) bad('void with payload');
      if (text) { try { utf8dec.decode(payload); } catch { bad('text not UTF-8', 6); } }
      return { kind: 'data', text, void: isVoid, seq: s.value, ack: a.value, payload };
    }
    case 2: { // ACK
      const a = decodeVarint(b, 1); end(a.next);
      return { kind: 'ack', ack: a.value };
    }
    case 3: { // WELCOME
      need(34);
      const status = b[1];
      if (status > 3) bad('unknown status');
      const l = decodeVarint(b, 34);
      const x = decodeVarint(b, l.next); end(x.next);
      return { kind: 'welcome', status, sessionId: b.slice(2, 18), token: b.slice(18, 34), lastDelivered: l.value, expirySecs: x.value };
    }
    case 4: { // RESUME
      need(33);
      const l = decodeVarint(b, 33); end(l.next);
      return { kind: 'resume', sessionId: b.slice(1, 17), token: b.slice(17, 33), lastDelivered: l.value };
    }
    case 5: { // ERROR
      need(3);
      let reason;
      try { reason = utf8dec.decode(b.subarray(3)); } catch { bad('reason not UTF-8'); }
      return { kind: 'error', code: (b[1] << 8) | b[2], reason };
    }
    default: bad(`unknown kind ${b[0]}`);
  }
}

// ---- base64url (RFC 4648 §5, unpadded) ----

/** @param {Uint8Array} bytes @returns {string} unpadded base64url */
export function base64url(bytes) {
  return btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join('')).replace(/=+$/, '').replace(/[+/]/g, (c) => c === '+' ? '-' : '_');
}

/** @param {string} s unpadded base64url @returns {Uint8Array} */
export function fromBase64url(s) {
  try {
    if (/[^\w-]/.test(s)) throw 0; // `atob` would skip spaces and take `+`, `/` and `=`
    return U8.from(atob(s.replace(/[-_]/g, (c) => c === '-' ? '+' : '/')), (c) => c.charCodeAt(0));
  } catch { bad('not base64url'); }
}

/** The `Sockeye-Resume` / `sockeye_resume` value for a RESUME. @param {Omit<ResumeEnvelope,'kind'>} r */
export function resumeValue(r) { return base64url(encodeEnvelope({ kind: 'resume', ...r })); }

// ---- the client ----

/**
 * @typedef {Object} ClientOptions
 * @property {any} [WebSocket] WebSocket constructor; default `G.WebSocket`, else `import('ws')`
 * @property {string} [token] user token, sent as the `token=` query parameter
 * @property {number} [windowMessages=1024] unacked messages held (voids included)
 * @property {number} [windowBytes=1048576] unacked payload bytes held
 * @property {number} [ackDelay=20] ms before a delayed ACK
 * @property {number} [ackEveryMessages=32] ACK at once after this many deliveries
 * @property {number} [rtoInitial=1000] @property {number} [rtoMin=200] @property {number} [rtoMax=30000]
 * @property {number} [resendMaxTries=8] @property {number} [messageMaxAge=300000] ms
 * @property {number} [reconnectInitialDelay=100] @property {number} [reconnectMaxDelay=10000]
 * @property {number} [jitterPercent=50] @property {number} [maxAttempts] give up after this many failures in a row
 * @property {number} [handshakeTimeout=10000] ms to wait for the WELCOME
 * @property {{getItem(k:string):string|null, setItem(k:string,v:string):void, removeItem(k:string):void}} [storage]
 *   keeps the session across page reloads (pass `sessionStorage`): its id and token, the position
 *   delivered so far and the unacknowledged messages, written once per task that changed them. A
 *   client made over the same storage and key resumes the session and resends those messages
 *   (their promises are gone: `acked`/`deadletter` report them by `seq`). Off by default.
 * @property {string} [storageKey='sockeye.session'] the key in `storage`: one per session kept
 * @property {{now():number}} [clock] @property {(fn:()=>void, ms:number)=>any} [setTimeout]
 * @property {(id:any)=>void} [clearTimeout] @property {()=>number} [random] in [0, 1)
 * @property {boolean} [autoConnect=true] connect from the constructor
 */

const DEFAULTS = {
  windowMessages: 1024, windowBytes: 1 << 20, ackDelay: 20, ackEveryMessages: 32,
  rtoInitial: 1000, rtoMin: 200, rtoMax: 30000, resendMaxTries: 8, messageMaxAge: 300000,
  reconnectInitialDelay: 100, reconnectMaxDelay: 10000, jitterPercent: 50, // maxAttempts: none
  handshakeTimeout: 10000, storageKey: 'sockeye.session', autoConnect: true,
};



/**
 * A `sockeye.v1` client: reliable, in-order, exactly-once messages across reconnects.
 *
 * Events (`on(type, fn)`): `message` (payload: string | Uint8Array, seq), `acked` ({seq}),
 * `deadletter` ({seq, reason, possiblyDelivered, payload}), `state` (name), and one event per state:
 * `connecting`, `connected`, `resuming`, `resumed`, `refused` ({status, lost}), `disconnected` ({code, reason}),
 * plus `error` (ErrorEnvelope or Error) and `giveup`.
 */
export class ReliableClient {
  /** @type {string} */ state = 'disconnected';
  session = null; // {id: Uint8Array, token: Uint8Array}
  delivered = 0; // last server seq delivered to the application
  _ws = null;
  #q = []; #held = 0; #seq = 1; // outgoing entries in seq order, their payload bytes, our next seq
  #t = {}; #listeners = new Map(); #closed = false; #established = false; #failures = 0; #pendingAcks = 0;
  #srtt = null; #rttvar = 0; #backoff = 0; #clear; #now; #random; #set; #wake; #corked = false; #saving = false;
  /** @param {string} url ws:// or wss:// URL @param {ClientOptions} [options] */
  constructor(url, options = {}) {
    this.url = url;
    const o = this.o = { ...DEFAULTS, ...options };
    this.#now = o.clock ? () => o.clock.now() : () => Date.now();
    this.#set = o.setTimeout ?? ((f, ms) => setTimeout(f, ms));
    this.#clear = o.clearTimeout ?? ((id) => clearTimeout(id));
    this.#random = o.random ?? Math.random;
    this.#restore();
    if (G.document && G.addEventListener) {
      this.#wake = () => { if (G.document.visibilityState !== 'hidden') this.reconnectNow(); };
      G.addEventListener('online', this.#wake);
      G.document.addEventListener('visibilitychange', this.#wake);
    }
    this.#armAge();
    if (o.autoConnect) this.connect();
  }

  /** Subscribe to an event. @param {string} type @param {(...args:any[])=>void} fn @returns {this} */
  on(type, fn) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
    return this;
  }
  /** Unsubscribe. @param {string} type @param {(...args:any[])=>void} fn @returns {this} */
  off(type, fn) { this.#listeners.get(type)?.delete(fn); return this; }
  #emit(type, ...args) { for (const fn of [...(this.#listeners.get(type) ?? [])]) fn(...args); }
  #setState(s, arg) { this.state = s; this.#emit('state', s, arg); this.#emit(s, arg); }
  // Timers by name (reconnect, handshake, ack, rto, age): at most one pending each.
  #stop(k) { this.#clear(this.#t[k]); this.#t[k] = null; }
  #arm(k, ms, fn) { this.#stop(k); this.#t[k] = this.#set(() => { this.#t[k] = null; fn(); }, ms); }

  /** Messages and bytes currently held (not yet acknowledged). */
  get inFlight() { return { messages: this.#q.length, bytes: this.#held }; }

  /**
   * Send one message reliably. Resolves when the server acknowledges it; rejects with a
   * `DeadLetterError` if it is dead-lettered (also reported as a `deadletter` event).
   * Throws `SendError('Full')` at once when the window is full, `SendError('TooLarge')`
   * for a payload over `windowBytes`. The promise's `seq` is the message's number, as the
   * `acked` and `deadletter` events name it (also after a reload restored it from `storage`).
   * @param {string|Uint8Array|ArrayBuffer} data a string is sent as text
   * @returns {Promise<void> & {seq: number}}
   */
  send(data) {
    if (this.#closed) throw new SendError('Closed');
    const text = typeof data === 'string';
    const payload = text ? utf8enc.encode(data) : data instanceof U8 ? data.slice() : new U8(data);
    const { windowBytes, windowMessages } = this.o;
    if (payload.length > windowBytes) throw new SendError('TooLarge');
    if (this.#q.length >= windowMessages || this.#held + payload.length > windowBytes) throw new SendError('Full');
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    promise.catch(() => {}); // a dead letter is also an event; an ignored promise must not crash Node
    const now = this.#now(), m = { seq: promise.seq = this.#seq++, text, void: false, payload, sentAt: now, tries: 0, connTries: 0, lastTx: 0, resolve, reject };
    this.#q.push(m);
    this.#held += payload.length;
    if (this.#established) this.#transmit(m, now);
    if (this.#t.age == null) this.#armAge(); // a pending one is for an older message
    this.#save();
    return promise;
  }

  /** Open a connection now (called by the constructor unless `autoConnect: false`). */
  connect() {
    if (this._ws || this.#closed) return;
    this.#stop('reconnect');
    this.#open().catch((err) => { this.#emit('error', err); this.#lost(1006, String(err)); });
  }

  /** Skip the reconnect wait (used on `online` and `visibilitychange`). */
  reconnectNow() { if (!this._ws && !this.#closed && this.#t.reconnect != null) this.connect(); }

  /** Close for good: no reconnects. The session stays in `storage` for a later client. */
  close() {
    this.#closed = true;
    if (this.#wake) {
      G.removeEventListener('online', this.#wake);
      G.document.removeEventListener('visibilitychange', this.#wake);
    }
    for (const k in this.#t) this.#stop(k);
    const ws = this._ws;
    this._ws = null; this.#established = false;
    if (ws) { try { ws.close(1000); } catch { /* ignore */ } }
    this.#setState('disconnected', { code: 1000, reason: 'closed' });
  }

  async #ctor() {
    const W = this.o.WebSocket ?? G.WebSocket;
    if (W) return W;
    const mod = await import('ws');
    return (this.o.WebSocket = mod.WebSocket ?? mod.default);
  }

  #connectUrl() {
    const u = new URL(this.url);
    const q = u.searchParams, s = this.session;
    if (this.o.token) q.set('token', this.o.token);
    if (s) q.set('sockeye_resume', resumeValue({ sessionId: s.id, token: s.token, lastDelivered: this.delivered }));
    return u.toString();
  }

  async #open() {
    const WS = await this.#ctor();
    if (this._ws || this.#closed) return;
    this.#setState(this.session ? 'resuming' : 'connecting');
    const ws = new WS(this.#connectUrl(), PROTOCOL);
    this._ws = ws; this.#established = false;
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (ev) => { if (this._ws === ws) this.#onMessage(ev.data); };
    ws.onclose = (ev) => { if (this._ws === ws) this.#lost(ev?.code ?? 1006, ev?.reason ?? ''); };
    ws.onerror = () => {};
    this.#arm('handshake', this.o.handshakeTimeout, () => { if (this._ws === ws && !this.#established) this.#drop(1000, 'no WELCOME'); });
  }

  #drop(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    try { ws.close(code, reason); } catch { /* ignore */ }
    this.#lost(code, reason);
  }

  #violation(code, reason) {
    this.#emit('error', new MalformedError(reason, code));
    try { this._ws.send(encodeEnvelope({ kind: 'error', code, reason })); } catch { /* ignore */ }
    this.#drop(code === 6 ? 1007 : 1002, reason);
  }

  #lost(code, reason) {
    if (!this._ws) return;
    const ws = this._ws;
    ws.onmessage = ws.onclose = null;
    this._ws = null;
    for (const k of ['ack', 'rto', 'handshake']) this.#stop(k);
    if (!this.#established) this.#failures++;
    this.#established = false;
    this.#setState('disconnected', { code, reason });
    const o = this.o;
    if (this.#closed) return;
    if (this.#failures >= o.maxAttempts) { // never while it is undefined
      this.#closed = true; this.#emit('giveup', { failures: this.#failures }); return;
    }
    const base = Math.min(o.reconnectMaxDelay, o.reconnectInitialDelay * 2 ** Math.min(this.#failures, 30));
    this.#arm('reconnect', base * (1 - o.jitterPercent / 100 * this.#random()), () => this.connect());
  }

  #send(env) {
    const ws = this._ws, sock = ws?._socket;
    if (ws?.readyState !== 1 /* OPEN */) return;
    // In Node (`ws`), the envelopes of one task leave in one write, not a syscall each.
    if (sock && !this.#corked) { this.#corked = true; sock.cork(); queueMicrotask(() => { this.#corked = false; sock.uncork(); }); }
    ws.send(encodeEnvelope(env));
  }

  #onMessage(data) {
    if (typeof data === 'string') return this.#violation(1, 'text message in reliable mode');
    let e;
    try { e = decodeEnvelope(new U8(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength)); }
    catch (err) { return this.#violation(err.code ?? 1, err.message); }
    if (e.kind === 'error') { this.#emit('error', e); return this.#drop(1000, 'peer error'); }
    if (!this.#established) {
      if (e.kind !== 'welcome') return this.#violation(4, 'expected WELCOME');
      return this.#onWelcome(e);
    }
    if (e.kind === 'welcome' || e.kind === 'resume') return this.#violation(4, 'unexpected envelope');
    if (!this.#onAck(e.ack)) return;
    if (e.kind === 'data') this.#onData(e);
  }

  #onWelcome(w) {
    this.#stop('handshake');
    const asked = this.session;
    if (w.status === 1 /* RESUMED */ && (!asked || !eq(asked.id, w.sessionId))) return this.#violation(5, 'resumed another session');
    this.session = { id: w.sessionId, token: w.token };
    this.#established = true; this.#failures = 0; this.#backoff = 0; this.#pendingAcks = 0;
    for (const m of this.#q) m.connTries = 0;
    if (w.status === 1 /* RESUMED */) {
      if (!this.#onAck(w.lastDelivered)) return;
      const now = this.#now(), { resendMaxTries, messageMaxAge } = this.o;
      for (const m of this.#q) {
        if (m.void) continue;
        if (m.tries >= resendMaxTries) this.#dead(m, 'ResendMaxTries', false);
        else if (now - m.sentAt >= messageMaxAge) this.#dead(m, 'MessageMaxAge', false);
      }
      this.#setState('connected'); this.#setState('resumed');
    } else {
      let lost = [];
      if (asked) {
        // A refusal (or a NEW session where we hoped to resume): the old session is over.
        const known = w.status === 3; // REFUSED_EXPIRED: the server's count is known
        if (known) this.#ackUpTo(w.lastDelivered);
        for (const m of this.#q.splice(0)) {
          if (m.void) continue;
          lost.push(this.#dead(m, 'SessionLost', !known && m.tries > 0, true));
        }
        this.#held = 0; this.#seq = 1; this.delivered = 0;
      }
      if (asked) this.#setState('refused', { status: w.status, lost });
      this.#setState('connected');
    }
    this.expirySecs = w.expirySecs;
    this.#save();
    for (const m of this.#q) this.#transmit(m);
    this.#armAge();
  }

  // Returns false after a violation.
  #onAck(ack) {
    if (ack >= this.#seq) { this.#violation(3, 'ack for a message never sent'); return false; }
    const before = this.#q.length;
    let sample = null;
    while (this.#q.length && this.#q[0].seq <= ack) {
      const m = this.#q[0];
      if (m.tries === 1 && m.connTries === 1 && !m.void) sample = this.#now() - m.lastTx;
      this.#ackUpTo(m.seq);
    }
    if (this.#q.length !== before) {
      if (sample !== null) this.onRttSample(sample);
      this.#backoff = 0;
      this.#stop('rto');
      if (this.#q.some((m) => m.connTries > 0)) this.#armRto();
      this.#armAge();
      this.#save();
    }
    return true;
  }

  #ackUpTo(seq) {
    while (this.#q.length && this.#q[0].seq <= seq) {
      const m = this.#q.shift();
      this.#held -= m.void ? 0 : m.payload.length;
      if (!m.void) { m.resolve?.(); this.#emit('acked', { seq: m.seq }); }
    }
  }

  // Dead-letter m; keep it as a void unless `remove` (session over).
  #dead(m, reason, possiblyDelivered, remove) {
    const payload = m.text ? utf8dec.decode(m.payload) : m.payload;
    const err = new DeadLetterError(reason, m.seq, possiblyDelivered, payload);
    if (!remove) { this.#held -= m.payload.length; m.void = true; m.payload = new U8(0); m.text = false; }
    m.reject?.(err);
    this.#emit('deadletter', { seq: m.seq, reason, possiblyDelivered, payload });
    return err;
  }

  #transmit(m, now = this.#now()) {
    if (!this.#established) return;
    const nothingInFlight = this.#t.rto == null;
    m.connTries++ || m.tries++; // tries: connections it went out on (a dead one costs one)
    m.lastTx = now;
    this.#pendingAcks = 0; this.#stop('ack');
    this.#send({ kind: 'data', text: m.text, void: m.void, seq: m.seq, ack: this.delivered, payload: m.payload });
    if (nothingInFlight) this.#armRto();
  }

  /** The current retransmission timeout in ms (RFC 6298, with backoff, clamped). */
  get rto() {
    const o = this.o, base = this.#srtt === null ? o.rtoInitial : this.#srtt + Math.max(1, 4 * this.#rttvar);
    return Math.min(o.rtoMax, Math.max(o.rtoMin, base * 2 ** Math.min(this.#backoff, 30)));
  }

  /** Feed a round-trip sample in ms (acks do this themselves; call it for ping/pong). @param {number} r */
  onRttSample(r) {
    if (this.#srtt === null) { this.#srtt = r; this.#rttvar = r / 2; }
    else { this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - r); this.#srtt = 0.875 * this.#srtt + 0.125 * r; }
  }

  #armRto() {
    this.#arm('rto', this.rto, () => this.#onRto());
  }

  #onRto() {
    const m = this.#q[0];
    if (!m || !this.#established) return;
    const { resendMaxTries, messageMaxAge } = this.o;
    if (m.connTries >= resendMaxTries || this.#now() - m.sentAt >= messageMaxAge) {
      this.#emit('unresponsive', { seq: m.seq });
      return this.#drop(1000, 'unresponsive');
    }
    this.#backoff++;
    this.#transmit(m);
    this.#armRto();
  }

  #armAge() {
    this.#stop('age');
    if (this.#closed) return;
    const now = this.#now(), age = this.o.messageMaxAge;
    // Over-age messages a disconnected peer may hold wait for the resume to settle them.
    const oldest = this.#q.find((m) => !m.void && (m.tries === 0 || this.#established || now - m.sentAt < age));
    if (!oldest) return;
    const wait = Math.max(0, oldest.sentAt + age - now);
    this.#arm('age', wait, () => this.#onAge());
  }

  #onAge() {
    const now = this.#now(), age = this.o.messageMaxAge;
    let unresponsive = false;
    for (const m of this.#q) {
      if (m.void || now - m.sentAt < age) continue;
      if (m.tries === 0) { this.#dead(m, 'MessageMaxAge', false); if (this.#established) this.#transmit(m); }
      else if (this.#established) unresponsive = true; // a copy may be in the peer's hands: the resume decides
    }
    this.#save();
    if (unresponsive) { this.#emit('unresponsive', {}); this.#drop(1000, 'unresponsive'); }
    // messages that were transmitted and are waiting for a resume are settled by it
    this.#armAge();
  }

  #onData(d) {
    if (d.seq <= this.delivered) { this.#ackNow(); return; }
    if (d.seq > this.delivered + 1) return this.#violation(2, 'gap');
    this.delivered = d.seq;
    this.#save();
    if (!d.void) this.#emit('message', d.text ? utf8dec.decode(d.payload) : d.payload, d.seq);
    if (++this.#pendingAcks >= this.o.ackEveryMessages) this.#ackNow();
    else if (this.#t.ack == null) this.#arm('ack', this.o.ackDelay, () => this.#ackNow());
  }

  #ackNow() {
    this.#stop('ack'); this.#pendingAcks = 0;
    if (!this.#established) return;
    this.#send({ kind: 'ack', ack: this.delivered });
  }

  // The session, position and window as one JSON array, written once per task (a reload
  // cannot come between a change and the microtask that saves it).
  #save() {
    const { storage, storageKey } = this.o;
    if (!storage || this.#saving) return;
    this.#saving = true;
    queueMicrotask(() => {
      this.#saving = false;
      const s = this.session;
      storage.setItem(storageKey, JSON.stringify([s && base64url(s.id), s && base64url(s.token), this.delivered, this.#seq,
        this.#q.map((m) => [m.seq, m.text, m.void, base64url(m.payload), m.sentAt, m.tries])]));
    });
  }

  #restore() {
    const { storage, storageKey } = this.o, raw = storage?.getItem(storageKey);
    if (!raw) return;
    try {
      const [id, token, delivered, next, q] = JSON.parse(raw);
      const held = q.map(([seq, text, isVoid, p, sentAt, tries]) => ({ seq, text, void: isVoid, payload: fromBase64url(p), sentAt, tries, connTries: 0, lastTx: 0 }));
      this.session = id ? { id: fromBase64url(id), token: fromBase64url(token) } : null;
      this.delivered = delivered; this.#seq = next; this.#q = held;
      this.#held = held.reduce((n, m) => n + m.payload.length, 0);
    } catch { storage.removeItem(storageKey); }
  }
}

function eq(a, b) { return a.length === b.length && a.every((x, i) => x === b[i]); }
