/**
 * GET /v2/info/stores/detail `properties`: the keys Glance's discovery.py shows for its file and
 * s3 drivers, so clients that read them find them. Never credentials.
 */
import type { StoreProperties } from '../../core/store-registry.js';

const MiB = 1024 * 1024;

/**
 * Glance's file driver: data_dir, chunk_size, thin_provisioning. PIR has no read chunk setting, so
 * chunk_size is Glance's default (64 KiB); it never writes sparse files, so thin_provisioning is false.
 */
export function fileProperties(dir: string): StoreProperties {
  return { data_dir: dir, chunk_size: 64 * 1024, thin_provisioning: false };
}

/**
 * Glance's s3 driver keys (sizes in MB, as its options) with PIR's real values: an object over one
 * part is a multipart upload of part-sized chunks, `queueSize` parts in flight. Then PIR's own
 * bucket, prefix and endpoint.
 */
export function s3Properties(blobs: { partSize: number; queueSize: number }, bucket: string, prefix: string, endpoint: string): StoreProperties {
  const partMb = Math.max(1, Math.round(blobs.partSize / MiB));
  return {
    s3_store_large_object_size: partMb,
    s3_store_large_object_chunk_size: partMb,
    s3_store_thread_pools: blobs.queueSize,
    bucket,
    prefix,
    endpoint,
  };
}
