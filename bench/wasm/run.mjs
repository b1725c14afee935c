// Times the WebAssembly decoder in Node's V8 (the engine Chromium runs):
//   node bench/wasm/run.mjs <pkg dir> <file>...  → one JSON line per file.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const [pkg, ...files] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const wasm = require(`${pkg}/psgate_bench_wasm.js`);
for (const file of files) {
  const bytes = readFileSync(file);
  let best = Infinity;
  let objects = 0;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    objects = wasm.decode_count(bytes);
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  console.log(JSON.stringify({ file, objects, bytes: bytes.length, seconds: best }));
}
