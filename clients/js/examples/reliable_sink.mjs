// Connects as a sockeye.v1 client and prints each delivered payload on its own line.
//   node examples/reliable_sink.mjs ws://127.0.0.1:9001
// With a ROOM (node examples/reliable_sink.mjs ws://127.0.0.1:9001/ws lobby), for the
// `sockeye` server: joins ROOM and prints the `data` of each message in it (other JSON the
// server sends, such as presence, is skipped); "joined ROOM" on stderr once it is a member.
import { ReliableClient } from '../sockeye.js';

const [url = 'ws://127.0.0.1:9001', room] = process.argv.slice(2);
const client = new ReliableClient(url, { token: process.env.SOCKEYE_TOKEN });
const print = (line) => process.stdout.write(line + '\n');
if (room === undefined) {
  client.on('message', (payload) => {
    print(typeof payload === 'string' ? payload : Buffer.from(payload).toString('hex'));
  });
} else {
  // Again in a new session: the old one and its membership were lost.
  const join = () => client.send(JSON.stringify({ type: 'join', room })).catch(() => {});
  join();
  client.on('refused', join);
  client.on('message', (payload) => {
    if (typeof payload !== 'string') return;
    const m = JSON.parse(payload);
    if (m.type === 'joined' && m.room === room) console.error(`joined ${room}`);
    if (m.type === 'message' && m.room === room) print(typeof m.data === 'string' ? m.data : JSON.stringify(m.data));
  });
}
client.on('state', (s) => console.error(`state: ${s}`));
client.on('error', (e) => console.error('error:', e.message ?? e));
process.on('SIGINT', () => { client.close(); process.exit(0); });
