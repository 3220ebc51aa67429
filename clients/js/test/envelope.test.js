// The byte examples of docs/PROTOCOL.md, byte for byte, and the strict varint rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeVarint, decodeVarint, encodeEnvelope, decodeEnvelope, resumeValue, fromBase64url, MalformedError,
} from '../sockeye.js';

const hex = (s) => Uint8Array.from(s.trim().split(/\s+/).map((x) => parseInt(x, 16)));
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const id = Uint8Array.from(range(0x00, 0x0f));
const token = Uint8Array.from(range(0xa0, 0xaf));
const u64max = (1n << 64n) - 1n;

function roundTrip(env, bytes) {
  assert.deepEqual(encodeEnvelope(env), bytes);
  assert.deepEqual(decodeEnvelope(bytes), env);
}

test('varint vectors (§2)', () => {
  const cases = [[0, '00'], [127, '7F'], [128, '80 01'], [300, 'AC 02'], [u64max, 'FF FF FF FF FF FF FF FF FF 01']];
  for (const [v, h] of cases) {
    assert.deepEqual(encodeVarint(v), hex(h), `encode ${v}`);
    assert.deepEqual(decodeVarint(hex(h)), { value: v, next: hex(h).length }, `decode ${h}`);
  }
});

test('varints are minimal, at most 10 bytes, within u64', () => {
  const bad = ['80 00', '80', '', 'FF FF FF FF FF FF FF FF FF 02', 'FF FF FF FF FF FF FF FF FF 81 00', '81 80 00'];
  for (const h of bad) assert.throws(() => decodeVarint(h ? hex(h) : new Uint8Array(0)), MalformedError, h);
  assert.throws(() => encodeVarint(-1), RangeError);
  assert.throws(() => encodeVarint(u64max + 1n), RangeError);
  assert.deepEqual(decodeVarint(hex('AA AC 02'), 1), { value: 300, next: 3 });
});

test('varints agree across the number/BigInt boundary', () => {
  // The fast paths (numbers up to 2^53 - 1, 7 bytes summed as a number) against BigInt.
  for (let k = 0; k <= 64; k++) {
    for (const big of [(1n << BigInt(k)) - 1n, 1n << BigInt(k)]) {
      if (big > u64max) continue;
      const bytes = encodeVarint(big);
      const safe = big <= BigInt(Number.MAX_SAFE_INTEGER);
      if (safe) assert.deepEqual(encodeVarint(Number(big)), bytes, `encode ${big} as a number`);
      assert.deepEqual(decodeVarint(bytes), { value: safe ? Number(big) : big, next: bytes.length }, `decode ${big}`);
    }
  }
});

test('DATA, text, seq 1, ack 0, "hi"', () => {
  roundTrip({ kind: 'data', text: true, void: false, seq: 1, ack: 0, payload: Uint8Array.from([0x68, 0x69]) }, hex('01 01 01 00 68 69'));
});

test('DATA, binary, seq 300, ack 5, payload DE AD', () => {
  roundTrip({ kind: 'data', text: false, void: false, seq: 300, ack: 5, payload: hex('DE AD') }, hex('01 00 AC 02 05 DE AD'));
});

test('DATA, void, seq 7, ack 2', () => {
  roundTrip({ kind: 'data', text: false, void: true, seq: 7, ack: 2, payload: new Uint8Array(0) }, hex('01 02 07 02'));
});

test('ACK 128', () => roundTrip({ kind: 'ack', ack: 128 }, hex('02 80 01')));

test('WELCOME, resumed, last delivered 4, expiry 300 s', () => {
  const bytes = Uint8Array.from([0x03, 0x01, ...id, ...token, 0x04, 0xac, 0x02]);
  roundTrip({ kind: 'welcome', status: 1, sessionId: id, token, lastDelivered: 4, expirySecs: 300 }, bytes);
});

test('RESUME, last delivered 9, and its header value', () => {
  const bytes = Uint8Array.from([0x04, ...id, ...token, 0x09]);
  const r = { kind: 'resume', sessionId: id, token, lastDelivered: 9 };
  roundTrip(r, bytes);
  const v = resumeValue({ sessionId: id, token, lastDelivered: 9 });
  assert.equal(v, 'BAABAgMEBQYHCAkKCwwNDg-goaKjpKWmp6ipqqusra6vCQ');
  assert.deepEqual(fromBase64url(v), bytes);
});

test('ERROR, code 2, "gap"', () => roundTrip({ kind: 'error', code: 2, reason: 'gap' }, hex('05 00 02 67 61 70')));

test('ERROR reasons are cut to 123 bytes at a char boundary', () => {
  const b = encodeEnvelope({ kind: 'error', code: 1, reason: 'é'.repeat(100) });
  assert.equal(b.length, 3 + 122);
  assert.equal(decodeEnvelope(b).reason, 'é'.repeat(61));
});

test('malformed envelopes are rejected with the right code', () => {
  const cases = [
    ['', 1], ['00', 1], ['06', 1], ['7B', 1], // unknown kinds (JSON's "{")
    ['01', 1], ['01 00', 1], ['01 00 01', 1], // truncated DATA
    ['01 04 01 00', 1], ['01 00 00 00', 1], // reserved flag, seq 0
    ['01 02 01 00 AA', 1], ['01 03 01 00', 1], // void with payload / text
    ['01 00 80 00 00', 1], // non-minimal seq
    ['01 01 01 00 FF', 6], // text not UTF-8
    ['02', 1], ['02 01 00', 1], // truncated ACK, trailing bytes
    ['05 00', 1], ['05 00 01 FF', 1], // truncated ERROR, reason not UTF-8
  ];
  for (const [h, code] of cases) {
    assert.throws(() => decodeEnvelope(h ? hex(h) : new Uint8Array(0)), (e) => e instanceof MalformedError && e.code === code, h);
  }
  const welcome = [0x03, 0x01, ...id, ...token, 0x04, 0xac, 0x02];
  assert.throws(() => decodeEnvelope(Uint8Array.from([...welcome, 0])), MalformedError); // trailing
  assert.throws(() => decodeEnvelope(Uint8Array.from(welcome.slice(0, 30))), MalformedError); // truncated
  welcome[1] = 4;
  assert.throws(() => decodeEnvelope(Uint8Array.from(welcome)), MalformedError); // unknown status
  assert.throws(() => decodeEnvelope(Uint8Array.from([0x04, ...id, ...token, 0x09, 0x00])), MalformedError);
});
