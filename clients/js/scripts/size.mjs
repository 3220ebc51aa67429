// Prints the module's size: source, minified (esbuild, as a bundler would ship it) and
// minified + gzip -9.   npm run size
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { transform } from 'esbuild';

const file = new URL('../sockeye.js', import.meta.url);
const src = readFileSync(file, 'utf8');
const { code } = await transform(src, { minify: true, format: 'esm' });
const kib = (n) => `${n} B (${(n / 1024).toFixed(1)} KiB)`;
console.log(`source    ${kib(Buffer.byteLength(src))}`);
console.log(`minified  ${kib(Buffer.byteLength(code))}`);
console.log(`gzip -9   ${kib(gzipSync(code, { level: 9 }).length)}`);
