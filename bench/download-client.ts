/**
 * The client of the download figures, in a process of its own (as a real client is): GETs a URL,
 * discards the body (no hashing) and prints one JSON line: bytes, ms, and its own CPU seconds.
 *
 * Why its own process: in the bench's process, the same client spent 1.46–1.49 CPU s per GiB of
 * an S3-store download, where in a process of its own it spends 0.35–0.42; on 2 cores that CPU
 * came out of the path being measured (docs/benchmarks.md, 2026-12-05 17:40).
 *
 * Usage: node download-client.js <url> [<header>=<value>...]
 */
import { discardingGet } from './limits.js';

const [url, ...headerArgs] = process.argv.slice(2);
if (!url) throw new Error('usage: download-client <url> [<header>=<value>...]');
const headers = Object.fromEntries(headerArgs.map((h) => [h.slice(0, h.indexOf('=')), h.slice(h.indexOf('=') + 1)]));
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const bytes = await discardingGet(url, headers);
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
process.stdout.write(`${JSON.stringify({ bytes, ms, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\n`);
