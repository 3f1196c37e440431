/** A command that registers what cli/interrupt.ts runs on a signal, for interrupt.test.ts. */
import { cleanupOnInterrupt, endOnInterrupt, noteOnInterrupt } from '../../../cli/interrupt.js';

const hang = process.argv[2] === 'hang';
cleanupOnInterrupt(() => process.stderr.write('cleanup\n'));
endOnInterrupt(() => new Promise<void>((resolve) => {
  if (!hang) setTimeout(() => { process.stderr.write('ended\n'); resolve(); }, 100);
}));
noteOnInterrupt(() => 'what was left');
noteOnInterrupt(() => null);
setInterval(() => {}, 1000);
process.stdout.write('ready\n');
