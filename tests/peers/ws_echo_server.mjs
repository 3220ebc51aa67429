// A Node `ws` echo server, the peer for our clients' permessage-deflate interop tests.
//
// usage: node ws_echo_server.mjs   prints "PORT <n>" once listening on 127.0.0.1
//
// It answers permessage-deflate offers with ws' defaults (context takeover both ways, no
// window limit of its own) and compresses every message it sends (threshold 0), fragments
// included. Echoes every message unchanged; text messages starting with a command do
// something else:
//   "fragments:A|B|C"  answer with one text message sent as the fragments A, B, C
//   "extensions?"      answer with the Sec-WebSocket-Extensions header it sent ("" if none)
//   "stats?"           answer with JSON {"wire_in": n}: the bytes this connection's socket
//                      has read so far, frame headers and handshake included
// `ws` comes from clients/js/node_modules (`npm ci` in clients/js). The process exits by
// itself after $PEER_TIMEOUT seconds (default 60).
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../clients/js/package.json', import.meta.url));
const { WebSocketServer } = require('ws');

setTimeout(() => process.exit(3), Number(process.env.PEER_TIMEOUT ?? 60) * 1000).unref();

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 16 * 1024 * 1024,
  perMessageDeflate: { threshold: 0 },
});
const answered = new WeakMap();
wss.on('headers', (headers, req) => {
  const line = headers.find((h) => h.toLowerCase().startsWith('sec-websocket-extensions:'));
  answered.set(req, line === undefined ? '' : line.slice(line.indexOf(':') + 1).trim());
});
wss.on('connection', (ws, req) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (text !== null && text.startsWith('fragments:')) {
      const parts = text.slice('fragments:'.length).split('|');
      parts.forEach((part, i) => ws.send(part, { fin: i === parts.length - 1 }));
    } else if (text === 'extensions?') {
      ws.send(answered.get(req) ?? '');
    } else if (text === 'stats?') {
      ws.send(JSON.stringify({ wire_in: req.socket.bytesRead }));
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
wss.on('listening', () => console.log(`PORT ${wss.address().port}`));
