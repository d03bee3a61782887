// Runs the browser tests: every e2e/tests/*.test.js, or the files given as
// arguments, one file at a time, and ends with "N passed, N failed".
//
//   node e2e/run.js                       # all pages
//   node e2e/run.js e2e/tests/inventory.test.js
import fs from 'node:fs';
import path from 'node:path';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
let files = process.argv.slice(2).map((f) => path.resolve(f));
if (files.length === 0) {
  const dir = path.join(here, 'tests');
  files = fs.readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort().map((f) => path.join(dir, f));
}

let passed = 0;
let failed = 0;
let skipped = 0;
const stream = run({ files, concurrency: 1, timeout: 5 * 60 * 1000 });
stream.on('test:pass', (d) => {
  if (d.nesting !== 0) return;
  if (d.skip || d.todo) skipped++;
  else passed++;
});
stream.on('test:fail', (d) => {
  if (d.nesting === 0) failed++;
});
const out = stream.compose(spec);
out.pipe(process.stdout, { end: false });
await finished(out);
if (passed + failed === 0) failed++; // no test ran: that is a failure too
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed > 0 ? 1 : 0;
