/** Small argument parsers for commander options; a bad value is a usage error (exit 2). */
import { InvalidArgumentError } from 'commander';
import { UsageError } from './exit-codes.js';

/** Collects a repeatable option's values. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `k=v` → [k, v] */
export function keyValue(value: string, option: string): [string, string] {
  const at = value.indexOf('=');
  // Read in the commands' actions, where commander no longer prints its own errors.
  if (at <= 0) throw new UsageError(`${option} takes key=value (got '${value}')`);
  return [value.slice(0, at), value.slice(at + 1)];
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a whole number ≥ 1 (got '${value}')`);
  return n;
}

export function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a number of seconds > 0 (got '${value}')`);
  return n;
}

export function sha512Hex(value: string): string {
  if (!/^[0-9a-fA-F]{128}$/.test(value)) throw new InvalidArgumentError('expected 128 hexadecimal digits (a sha512)');
  return value.toLowerCase();
}

export function md5Hex(value: string): string {
  if (!/^[0-9a-fA-F]{32}$/.test(value)) throw new InvalidArgumentError('expected 32 hexadecimal digits (an md5)');
  return value.toLowerCase();
}
