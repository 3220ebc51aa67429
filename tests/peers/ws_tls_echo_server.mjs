// A Node `ws` echo server over TLS, the peer for the Rust clients' wss:// tests.
//
// usage: node ws_tls_echo_server.mjs CERT.pem KEY.pem   prints "PORT <n>" once listening
// on 127.0.0.1. Echoes every message unchanged (text as text, binary as binary). `ws`
// comes from clients/js/node_modules (`npm ci` there). Exits by itself after
// $PEER_TIMEOUT seconds (default 60).
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../clients/js/package.json", import.meta.url));
const { WebSocketServer } = require("ws");

const [cert, key] = process.argv.slice(2);
const server = createServer({ cert: readFileSync(cert), key: readFileSync(key) });
const wss = new WebSocketServer({ server, maxPayload: 16 * 1024 * 1024 });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.listen(0, "127.0.0.1", () => {
  console.log(`PORT ${server.address().port}`);
});
setTimeout(() => process.exit(0), Number(process.env.PEER_TIMEOUT ?? 60) * 1000).unref();
