// Connects as a sockeye.v1 client and prints each delivered payload on its own line.
//   node examples/reliable_sink.mjs ws://127.0.0.1:9001
import { ReliableClient } from '../sockeye.js';

const [url = 'ws://127.0.0.1:9001'] = process.argv.slice(2);
const client = new ReliableClient(url, { token: process.env.SOCKEYE_TOKEN });
client.on('message', (payload) => {
  process.stdout.write(typeof payload === 'string' ? payload + '\n' : Buffer.from(payload).toString('hex') + '\n');
});
client.on('state', (s) => console.error(`state: ${s}`));
client.on('error', (e) => console.error('error:', e.message ?? e));
process.on('SIGINT', () => { client.close(); process.exit(0); });
