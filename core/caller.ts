/**
 * Who is asking: the caller context every service method takes. Built by the identity adapters
 * (infra/identity: tokens file, Keystone) and passed down from the API; the domain's policy
 * module (core/policy.ts) decides what the caller may do. Routes never decide who may.
 */
import type { ImportInput, Requester } from '../schemas/image.js';

export interface Caller {
  project_id: string;
  user_id: string;
  /** Role names as the identity source gives them (Glance's defaults know admin, member, reader). */
  roles: string[];
  /** The x-openstack-request-id of the call acting (Glance's context.request_id), for the tasks it starts; absent for PIR's own work. */
  request_id?: string;
}

export function isAdmin(caller: Caller): boolean {
  return caller.roles.includes('admin');
}

/** The caller the pipeline acts as (workers, sweepers): sees and may change every image. */
export const SYSTEM_CALLER: Caller = Object.freeze({ project_id: 'admin', user_id: 'pir-system', roles: ['admin'] }) as Caller;

/** Who started a run or import, for its task: the caller's user and the call's request id (and the call's input). */
export function requestedBy(caller: Caller, input?: ImportInput): Requester {
  return { user_id: caller.user_id ?? null, request_id: caller.request_id ?? null, ...(input ? { input } : {}) };
}
