const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) { v /= 1024; u += 1; }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${UNITS[u]}`;
}
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
export function eta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '—';
  return seconds < 1 ? '<1 s' : duration(seconds * 1000);
}

/**
 * Characters that change how the text around them is drawn without being seen: bidi controls
 * (U+202E turns "safe\u202Egpj.exe" into "safeexe.jpg" on screen), the marks U+200E, U+200F,
 * U+061C, and C0/C1 controls (NUL, BEL… draw as boxes or nothing).
 */
const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** A user-supplied string (name, tag, property, gallery) as plain visible text: each hidden character as ⟨U+XXXX⟩. */
export function visible(text: unknown): string {
  return String(text ?? '').replace(HIDDEN, (c) => `⟨U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`);
}
