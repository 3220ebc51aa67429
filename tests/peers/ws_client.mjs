// A Node `ws` client offering permessage-deflate (ws' default offer), the peer for our
// servers' interop tests.
//
// usage: node ws_client.mjs echo URL      against an echo server
//        node ws_client.mjs sockeye URL   against the `sockeye` server in plain JSON mode
//                                         (URL ends in /ws?user=NAME; every message is a
//                                         direct message to NAME, so it comes back)
//
// It compresses every message it sends (threshold 0). It sends text messages from 0 bytes
// to 1 MiB, whole and in fragments (and, to an echo server, binary ones, one of them
// incompressible), waits for each to come back unchanged, closes with 1000, and prints
// one JSON line: {"ok": true, "extensions": the server's Sec-WebSocket-Extensions answer,
// "messages": how many came back, "payload_in": their payload bytes, "wire_in": the bytes
// the socket read, handshake included, "close": the close code}; or {"ok": false,
// "error": ...} and exits 1. `ws` comes from clients/js/node_modules. The process exits by
// itself after $PEER_TIMEOUT seconds (default 60).
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../clients/js/package.json', import.meta.url));
const { WebSocket } = require('ws');

setTimeout(() => fail('timed out'), Number(process.env.PEER_TIMEOUT ?? 60) * 1000).unref();

const [mode, url] = process.argv.slice(2);
if (!['echo', 'sockeye'].includes(mode) || !url) fail('usage: ws_client.mjs echo|sockeye URL');
const user = mode === 'sockeye' ? new URL(url).searchParams.get('user') : null;

function fail(error) {
  console.log(JSON.stringify({ ok: false, error: String(error) }));
  process.exit(1);
}

/** `len` bytes of log-like text, which compresses well. */
function logText(len) {
  let text = '';
  for (let i = 0; text.length < len; i++) text += `line ${i % 97} of the log, status ${i % 7}\n`;
  return text.slice(0, len);
}

/** `len` bytes that do not compress (xorshift32). */
function noise(len) {
  const out = Buffer.alloc(len);
  let x = 2463534242;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const sizes = [0, 1, 125, 126, 1000, 4096, 65535, 65536, 70000, 300000, 1 << 20];
// Each step: the fragments to send (one for a whole message), binary or not, and what the
// answer must be (a Buffer, compared byte for byte).
const steps = [];
const wrap = (text) => (user === null ? text : JSON.stringify({ type: 'message', to: user, data: text }));
for (const len of sizes) steps.push({ parts: [wrap(logText(len))], binary: false, data: logText(len) });
for (const len of [200000, 1 << 20]) {
  const whole = wrap(logText(len));
  const third = Math.floor(whole.length / 3);
  steps.push({ parts: [whole.slice(0, third), whole.slice(third, 2 * third), whole.slice(2 * third)], binary: false, data: logText(len) });
}
if (user === null) {
  for (const len of [0, 70000, 1 << 20]) steps.push({ parts: [Buffer.from(logText(len))], binary: true, data: logText(len) });
  steps.push({ parts: [noise(70000)], binary: true, data: noise(70000) });
  const bin = Buffer.from(logText(150000));
  steps.push({ parts: [bin.subarray(0, 1000), bin.subarray(1000, 100000), bin.subarray(100000)], binary: true, data: bin });
}

const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 }, maxPayload: 16 * 1024 * 1024 });
let extensions = null, socket = null;
let messages = 0, payloadIn = 0, step = 0, welcomed = user === null;
ws.on('upgrade', (res) => {
  extensions = res.headers['sec-websocket-extensions'] ?? '';
  socket = res.socket;
});
ws.on('error', fail);

function sendStep() {
  if (step === steps.length) {
    ws.close(1000);
    return;
  }
  const { parts, binary } = steps[step];
  parts.forEach((part, i) => ws.send(part, { binary, fin: i === parts.length - 1 }));
}

ws.on('open', () => {
  if (welcomed) sendStep();
});
ws.on('message', (data, isBinary) => {
  payloadIn += data.length;
  if (!welcomed) {
    const welcome = JSON.parse(data.toString());
    if (welcome.type !== 'welcome') fail(`expected the welcome, got ${data.toString().slice(0, 200)}`);
    welcomed = true;
    sendStep();
    return;
  }
  const want = steps[step];
  let got = data;
  if (user !== null) {
    const message = JSON.parse(data.toString());
    if (message.type !== 'message') fail(`step ${step}: expected a message, got type ${message.type}`);
    got = Buffer.from(message.data);
  }
  if (isBinary !== want.binary || !Buffer.from(want.data).equals(got)) {
    fail(`step ${step}: sent ${want.binary ? 'binary' : 'text'} of ${Buffer.from(want.data).length} bytes, got ${isBinary ? 'binary' : 'text'} of ${got.length}`);
  }
  messages++;
  step++;
  sendStep();
});
ws.on('close', (code) => {
  if (step !== steps.length) fail(`closed with ${code} after ${step} of ${steps.length} steps`);
  console.log(JSON.stringify({ ok: true, extensions, messages, payload_in: payloadIn, wire_in: socket.bytesRead, close: code }));
  process.exit(0);
});
