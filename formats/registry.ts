import type { Inspector } from './inspector.js';
import { isoInspector } from './iso.js';
import { luksInspector } from './luks.js';
import { partitionInspector } from './partition.js';
import { ploopInspector } from './ploop.js';
import { qcow2Inspector } from './qcow2.js';
import { qedInspector } from './qed.js';
import { vdiInspector } from './vdi.js';
import { vhdInspector } from './vhd.js';
import { vhdxInspector } from './vhdx.js';
import { vmdkInspector } from './vmdk.js';

/**
 * Inspectors in precedence order: when several signatures match, the first
 * container format wins and the rest go to alsoMatches. Formats with a magic at
 * offset 0 come first; VHD (footer possibly at EOF) and ISO (32 KiB) later;
 * partition tables last because they describe raw disks, not containers.
 */
export const INSPECTORS: readonly Inspector[] = [
  qcow2Inspector,
  qedInspector,
  luksInspector,
  vdiInspector,
  vhdxInspector,
  vmdkInspector,
  ploopInspector,
  vhdInspector,
  isoInspector,
  partitionInspector,
];
