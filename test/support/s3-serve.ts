/**
 * A `pir serve` on the real S3 server (SeaweedFS) behind a counting proxy, with a private data
 * directory and its own key prefix in the bucket: the setup of the S3 e2e suites that look at
 * what PIR sends to the bucket. close() stops it and removes the prefix's objects.
 */
import { join } from 'node:path';
import { S3BlobStore } from '../../infra/storage/s3-blob-store.js';
import { countingProxy, type CountingProxy } from './counting-proxy.js';
import { makeTempDir, removeDir } from './images.js';
import { PirClient } from './pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from './pir-process.js';
import { services, uniqueName } from './services.js';

export interface ServeOnS3 {
  dir: string;
  proxy: CountingProxy;
  serve: PirProcess;
  port: number;
  client: PirClient;
  /** The bucket under this serve's prefix, addressed directly (path-style, no proxy). */
  store: S3BlobStore;
  close(): Promise<void>;
}

export interface ServeOnS3Options {
  /** Names the temporary directory, the key prefix and the log directory. */
  name: string;
  token: string;
  /** PIR_S3_ENDPOINT from the proxy's port (default: the proxy's own URL). */
  endpoint?: (proxyPort: string) => string;
  env?: Record<string, string>;
}

export async function serveOnS3BehindProxy(opts: ServeOnS3Options): Promise<ServeOnS3> {
  const dir = await makeTempDir(`pir-e2e-${opts.name}-`);
  const proxy = await countingProxy(new URL(services.s3.endpoint));
  const prefix = `${uniqueName(opts.name.replace(/[^a-z0-9]/gi, ''))}/`;
  const store = new S3BlobStore({ ...services.s3, prefix });
  const port = await freePort();
  const close = async () => {
    await serve?.stop();
    await proxy.close();
    for (const blob of await store.list('')) await store.delete(blob.key).catch(() => {});
    store.close();
    await removeDir(dir);
  };
  let serve: PirProcess | undefined;
  try {
    serve = await startPirProcess('serve', {
      PIR_ADMIN_TOKEN: opts.token, PIR_PORT: String(port), PIR_DATA_DIR: join(dir, 'data'),
      PIR_S3_ENDPOINT: opts.endpoint ? opts.endpoint(new URL(proxy.url).port) : proxy.url,
      PIR_S3_BUCKET: services.s3.bucket, PIR_S3_ACCESS_KEY_ID: services.s3.accessKeyId,
      PIR_S3_SECRET_ACCESS_KEY: services.s3.secretAccessKey, PIR_S3_REGION: services.s3.region, PIR_S3_PREFIX: prefix,
      ...opts.env,
    }, testLogDir(opts.name), 'serve');
  } catch (error) {
    await close();
    throw error;
  }
  return { dir, proxy, serve, port, client: new PirClient(`http://127.0.0.1:${port}`, opts.token), store, close };
}
