// Issue 11's budget: the module stays under 12 KiB minified (`npm run size` prints it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { transform } from 'esbuild';

test('sockeye.js is under 12 KiB minified', async () => {
  const { code } = await transform(readFileSync(new URL('../sockeye.js', import.meta.url), 'utf8'), { minify: true, format: 'esm' });
  assert.ok(Buffer.byteLength(code) < 12 * 1024, `${Buffer.byteLength(code)} bytes minified`);
});
