/**
 * The AWS SDK's transport on undici instead of node:http, for the S3 store's reads (GetObject).
 * The SDK still signs, retries and turns error answers into exceptions; undici only carries the
 * request. Why: Node's HTTP client costs the download path about half again as much CPU per GiB
 * as undici does (relaying SeaweedFS to a client, interleaved: 5.5–5.9 against 3.1–3.4 s/GiB;
 * docs/benchmarks.md, "Downloads"). The SDK ships no undici handler, hence this small
 * adapter; it does not take request bodies (uploads keep the SDK's own node:http handler, whose
 * `Expect: 100-continue` and shared-memory part bodies they are tuned for).
 */
import { Agent, request } from 'undici';
import { HttpResponse, buildQueryString } from '@smithy/core/protocols';
import type { HttpRequest, HttpHandlerOptions } from '@smithy/types';

export class UndiciHttpHandler {
  /** Keep-alive connections per origin, opened as needed. */
  private readonly agent: Agent;

  /** `timeoutMs`: longest silence of the server (connect, headers, between body chunks; not while the consumer pauses the body). */
  constructor(timeoutMs: number) {
    this.agent = new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  }

  async handle(req: HttpRequest, options: HttpHandlerOptions = {}): Promise<{ response: HttpResponse }> {
    if (req.body !== undefined && req.body !== null && req.body !== '') throw new Error('UndiciHttpHandler sends no request bodies (reads only)');
    const query = req.query ? buildQueryString(req.query) : '';
    const host = req.hostname.includes(':') && !req.hostname.startsWith('[') ? `[${req.hostname}]` : req.hostname;
    const url = `${req.protocol}//${host}${req.port ? `:${req.port}` : ''}${req.path}${query ? `?${query}` : ''}`;
    const answer = await request(url, {
      method: req.method as 'GET',
      headers: req.headers,
      dispatcher: this.agent,
      ...(options.abortSignal ? { signal: options.abortSignal as AbortSignal } : {}),
    });
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    // The body is undici's Readable: paused while the consumer is behind (backpressure reaches
    // the socket), and destroying it (a client gone) closes the upstream request.
    return { response: new HttpResponse({ statusCode: answer.statusCode, headers, body: answer.body }) };
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {
    void this.agent.close();
  }
}
