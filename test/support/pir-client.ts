/** A small Image API v2 client for tests: JSON calls with fetch, uploads streamed with node:http. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { request } from 'node:http';
import { pipeline } from 'node:stream/promises';

export interface Response<T = any> { status: number; headers: Record<string, string>; body: T }

export class PirClient {
  constructor(readonly baseUrl: string, readonly token: string) {}

  async call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response<T>> {
    const response = await fetch(this.baseUrl + path, {
      method,
      headers: { 'x-auth-token': this.token, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: response.status, headers: Object.fromEntries(response.headers), body: parsed as T };
  }

  async createImage(fields: Record<string, unknown>): Promise<any> {
    const response = await this.call('POST', '/v2/images', fields);
    if (response.status !== 201) throw new Error(`create failed: ${response.status} ${JSON.stringify(response.body)}`);
    return response.body;
  }

  getImage(id: string): Promise<Response> {
    return this.call('GET', `/v2/images/${id}`);
  }

  /** Streams a file as the body of PUT …/file or …/stage. */
  async putData(id: string, file: string, kind: 'file' | 'stage' = 'file', headers: Record<string, string> = {}): Promise<Response> {
    const url = new URL(`${this.baseUrl}/v2/images/${id}/${kind}`);
    return new Promise<Response>((resolve, reject) => {
      const req = request(url, {
        method: 'PUT',
        headers: { 'x-auth-token': this.token, 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked', ...headers },
      }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { text += c; });
        res.on('end', () => {
          let body: unknown = text;
          try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
          resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body });
        });
      });
      req.on('error', reject);
      pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), req).catch(reject);
    });
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
    const response = await fetch(`${this.baseUrl}/v2/images/${id}/file`, { headers: { 'x-auth-token': this.token } });
    if (response.status !== 200 || !response.body) throw new Error(`download failed: ${response.status}`);
    const md5 = createHash('md5');
    const sha512 = createHash('sha512');
    let size = 0;
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      md5.update(chunk);
      sha512.update(chunk);
      size += chunk.length;
    }
    return { size, md5: md5.digest('hex'), sha512: sha512.digest('hex'), contentMd5: response.headers.get('content-md5') };
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
