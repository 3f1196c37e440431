/**
 * The tests' view of PIR's client library (client/): the same calls, answering raw statuses so
 * a test can assert on any answer, including errors.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { PirClient as Client, type RawResponse } from '../../client/index.js';

export type Response<T = any> = RawResponse<T>;

export class PirClient {
  readonly client: Client;

  constructor(readonly baseUrl: string, readonly token: string) {
    this.client = new Client(baseUrl, token);
  }

  call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response<T>> {
    return this.client.raw<T>(method, path, body, headers);
  }

  async createImage(fields: Record<string, unknown>): Promise<any> {
    return this.client.createImage(fields);
  }

  getImage(id: string): Promise<Response> {
    return this.call('GET', `/v2/images/${id}`);
  }

  /** Streams a file as the body of PUT …/file or …/stage; `headers` may ask for chunked encoding. */
  async putData(id: string, file: string, kind: 'file' | 'stage' = 'file', headers: Record<string, string> = {}): Promise<Response> {
    return (await this.client.sendData(id, file, kind, { headers: { 'transfer-encoding': 'chunked', ...headers }, hash: false })).response;
  }

  /** Polls until the image leaves the in-flight statuses. */
  async waitSettled(id: string, timeoutMs = 120_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { body } = await this.getImage(id);
      if (!['saving', 'importing'].includes(body?.status)) return body;
      if (Date.now() > deadline) throw new Error(`image ${id} still ${body.status} (stage ${body.pir_stage}) after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Downloads the image's bytes and returns their digests and size. */
  async downloadDigests(id: string): Promise<{ size: number; md5: string; sha512: string; contentMd5: string | null }> {
    const { req, response } = this.client.transport.open('GET', `/v2/images/${id}/file`);
    req.end();
    const res = await response;
    if (res.statusCode !== 200) throw new Error(`download failed: ${res.statusCode}`);
    const md5 = createHash('md5');
    const sha512 = createHash('sha512');
    let size = 0;
    for await (const chunk of res) {
      md5.update(chunk as Buffer);
      sha512.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    const contentMd5 = res.headers['content-md5'];
    return { size, md5: md5.digest('hex'), sha512: sha512.digest('hex'), contentMd5: typeof contentMd5 === 'string' ? contentMd5 : null };
  }
}

export async function fileDigests(path: string): Promise<{ size: number; md5: string; sha512: string }> {
  const md5 = createHash('md5');
  const sha512 = createHash('sha512');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    md5.update(chunk as Buffer);
    sha512.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, md5: md5.digest('hex'), sha512: sha512.digest('hex') };
}
