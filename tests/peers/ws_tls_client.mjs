// A Node `ws` client over TLS, the peer for the Rust servers' wss:// tests.
//
// usage: node ws_tls_client.mjs URL CA.pem [welcome]
// Trusts only CA.pem, sends text and binary messages (one larger than a TLS record),
// checks each echo, closes with 1000, and prints `ok=true close=<code>`; fails with a
// message otherwise. With `welcome` (a server that greets rather than echoes, like the
// sockeye server's /ws) it waits for the first text message instead, then closes. `ws` comes from clients/js/node_modules. Exits by itself after
// $PEER_TIMEOUT seconds (default 60).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../clients/js/package.json", import.meta.url));
const WebSocket = require("ws");

const [url, ca, mode] = process.argv.slice(2);
setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, Number(process.env.PEER_TIMEOUT ?? 60) * 1000).unref();

const messages = [
  "hello over tls",
  "héllo wörld ☃",
  Buffer.alloc(70000, 7),
  "x".repeat(100000),
];
const ws = new WebSocket(url, { ca: readFileSync(ca) });
let next = 0;
if (mode === "welcome") messages.length = 0;
ws.on("open", () => {
  if (messages.length > 0) ws.send(messages[0]);
});
ws.on("message", (data, isBinary) => {
  if (mode === "welcome") {
    if (isBinary || data.length === 0) {
      console.error("expected a text welcome");
      process.exit(1);
    }
    ws.close(1000, "done");
    return;
  }
  const want = messages[next];
  const same = typeof want === "string"
    ? !isBinary && data.toString() === want
    : isBinary && Buffer.compare(data, want) === 0;
  if (!same) {
    console.error(`echo ${next} differs`);
    process.exit(1);
  }
  next += 1;
  if (next < messages.length) ws.send(messages[next]);
  else ws.close(1000, "done");
});
ws.on("close", (code) => {
  console.log(`ok=${next === messages.length} close=${code}`);
  process.exit(0);
});
ws.on("error", (e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
