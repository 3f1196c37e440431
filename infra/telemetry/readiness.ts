/** The readiness checks of a running PIR process: its own connections, not new ones. */
import type { PirConfig } from '../config.js';
import type { Adapters } from '../runtime.js';
import { keystoneCheck, type DependencyCheck } from './health.js';

export function readinessChecks(adapters: Pick<Adapters, 'mode' | 'store' | 'bus' | 'queue'>, config: Pick<PirConfig, 'keystone'>, blobChecks: DependencyCheck[], identityReady?: () => Promise<void>): DependencyCheck[] {
  const distributed = adapters.mode === 'distributed';
  const checks: DependencyCheck[] = [
    { name: 'manifest_store', kind: distributed ? 'mongodb' : 'sqlite', check: () => adapters.store.ping() },
    { name: 'event_bus', kind: distributed ? 'kafka' : 'in-process', check: () => adapters.bus.ping() },
    { name: 'job_queue', kind: distributed ? 'redis' : 'in-process', check: () => adapters.queue.ping() },
    ...blobChecks,
  ];
  if (config.keystone) checks.push(keystoneCheck(config.keystone.url, undefined, identityReady));
  return checks;
}
