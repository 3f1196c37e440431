import type { ReadContext } from './read-context.js';
import type { DetectedFormat, Finding } from './types.js';

/** What one inspector learned about an image it recognised. */
export interface ProbeResult {
  virtualSize: number | null;
  findings: Finding[];
  details: Record<string, unknown>;
  /** Lets one module report a sub-variant (the partition module reports 'gpt' or 'mbr'). */
  format?: DetectedFormat;
}

/**
 * One disk format. `matches` is a cheap signature test that must not throw on any
 * input; `inspect` runs only after a match and reports problems as findings.
 */
export interface Inspector {
  readonly format: DetectedFormat;
  matches(ctx: ReadContext): Promise<boolean>;
  inspect(ctx: ReadContext): Promise<ProbeResult>;
}
