/** Reads GET /v2/events as a client would (fetch, X-Auth-Token header), collecting its messages. */
export interface StreamMessage { event: string; id: string; data: any }

export interface EventStreamReader {
  messages: StreamMessage[];
  /** Resolves with the pir.hello message (the stream is open and watching). */
  hello: Promise<StreamMessage>;
  /** Resolves when a message matches, or rejects after timeoutMs. */
  waitFor(match: (m: StreamMessage) => boolean, timeoutMs: number, what: string): Promise<StreamMessage>;
  close(): void;
}

export async function openEventStream(baseUrl: string, token: string): Promise<EventStreamReader> {
  const abort = new AbortController();
  const response = await fetch(`${baseUrl}/v2/events`, { headers: { 'x-auth-token': token, accept: 'text/event-stream' }, signal: abort.signal });
  if (response.status !== 200) throw new Error(`GET /v2/events answered ${response.status}: ${await response.text()}`);
  const messages: StreamMessage[] = [];
  const waiters = new Set<() => void>();
  void (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const m: StreamMessage = { event: 'message', id: '', data: null };
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) m.event = line.slice(7);
            else if (line.startsWith('id: ')) m.id = line.slice(4);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (!data) continue; // a comment or retry line
          m.data = JSON.parse(data);
          messages.push(m);
          for (const wake of waiters) wake();
        }
      }
    } catch { /* closed */ }
  })();
  const waitFor: EventStreamReader['waitFor'] = (match, timeoutMs, what) => new Promise((resolve, reject) => {
    const check = () => {
      const found = messages.find(match);
      if (!found) return false;
      clearTimeout(timer);
      waiters.delete(check);
      resolve(found);
      return true;
    };
    const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`no ${what} on the event stream within ${timeoutMs} ms`)); }, timeoutMs);
    if (!check()) waiters.add(check);
  });
  return { messages, hello: waitFor((m) => m.event === 'pir.hello', 10_000, 'pir.hello'), waitFor, close: () => abort.abort() };
}
