// Sends the text messages "0".."N-1" reliably; exits 0 once all are acknowledged,
// 1 listing the dead letters otherwise.   node examples/reliable_send.mjs ws://127.0.0.1:9001 1000
// With a ROOM (node examples/reliable_send.mjs ws://127.0.0.1:9001/ws 1000 lobby), for the
// `sockeye` server: joins ROOM, then sends each number as the `data` of a room message.
import { ReliableClient, SendError } from '../sockeye.js';

const [url = 'ws://127.0.0.1:9001', nArg = '100', room] = process.argv.slice(2);
const n = Number(nArg);
const client = new ReliableClient(url, { token: process.env.SOCKEYE_TOKEN });
const text = (i) => (room === undefined ? String(i) : JSON.stringify({ type: 'message', room, data: String(i) }));
if (room !== undefined) {
  // First in the session, so the server acts on it before any message; again in a new
  // session (the old one and its membership were lost).
  const join = () => client.send(JSON.stringify({ type: 'join', room })).catch(() => {});
  join();
  client.on('refused', join);
}
const dead = [];
client.on('deadletter', (d) => dead.push(d));
client.on('state', (s) => console.error(`state: ${s}`));
client.on('error', (e) => console.error('error:', e.message ?? e));

const settled = [];
for (let i = 0; i < n; i++) {
  for (;;) {
    try { settled.push(client.send(text(i)).then(() => true, () => false)); break; } catch (e) {
      if (!(e instanceof SendError && e.reason === 'Full')) throw e;
      await Promise.race(settled.slice(-client.inFlight.messages)); // wait for the window to move
      await new Promise((r) => setImmediate(r));
    }
  }
}
await Promise.allSettled(settled);
client.close();
if (dead.length) {
  for (const d of dead) console.log(`dead letter: seq ${d.seq} ${JSON.stringify(d.payload)} ${d.reason}${d.possiblyDelivered ? ' (possibly delivered)' : ''}`);
  process.exit(1);
}
console.error(`all ${n} acknowledged`);
process.exit(0);
