#!/usr/bin/env node
// The published entry point runs the compiled CLI; `npm ci` compiles it (the `prepare` script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  console.error('pir: dist/ is missing; run `npm ci` (or `npm run build`) in the PIR checkout first.');
  process.exit(1);
}
await import(main);
