/**
 * The SSRF-safe egress client: every refused form, the allow-list, DNS answers checked in full,
 * the connection pinned to the checked address, redirects re-checked, limits.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseAllowList, refusedAddress } from '../../../infra/egress/address-policy.js';
import { DEFAULT_EGRESS, EgressClient, EgressError, checkUrl, resolveChecked, type EgressSettings } from '../../../infra/egress/egress-client.js';

const settings = (allow = '', extra: Partial<EgressSettings> = {}): EgressSettings => ({ ...DEFAULT_EGRESS, allowList: parseAllowList(allow), ...extra });

function refusedWith(code: string, pattern: RegExp) {
  return (error: unknown) => error instanceof EgressError && error.code === code && pattern.test(error.message);
}

describe('egress: URL checks before any DNS', () => {
  const s = settings();
  const cases: [string, string, RegExp][] = [
    ['http://127.0.0.1/disk.img', 'address_refused', /loopback/],
    ['http://169.254.169.254/latest/meta-data/', 'address_refused', /metadata/],
    ['http://10.0.0.1/disk.img', 'address_refused', /private/],
    ['http://172.16.5.4/', 'address_refused', /private/],
    ['http://192.168.1.1/', 'address_refused', /private/],
    ['http://100.64.0.1/', 'address_refused', /carrier-grade NAT/],
    ['http://100.100.100.200/', 'address_refused', /Alibaba/],
    ['http://0.0.0.0/', 'address_refused', /unspecified/],
    ['http://255.255.255.255/', 'address_refused', /broadcast/],
    ['http://224.0.0.1/', 'address_refused', /multicast/],
    ['http://168.63.129.16/', 'address_refused', /Azure/],
    ['http://[::1]/disk.img', 'address_refused', /loopback/],
    ['http://[::]/', 'address_refused', /unspecified/],
    ['http://[fe80::1]/', 'address_refused', /link-local/],
    ['http://[fc00::1]/', 'address_refused', /private/],
    ['http://[fd00:ec2::254]/', 'address_refused', /AWS metadata/],
    ['http://[ff02::1]/', 'address_refused', /multicast/],
    ['http://[::ffff:127.0.0.1]/', 'address_refused', /loopback/],
    ['http://[::ffff:a9fe:a9fe]/', 'address_refused', /metadata/],
    ['http://[::ffff:10.1.2.3]/', 'address_refused', /private/],
    ['http://[::127.0.0.1]/', 'address_refused', /loopback/],
    ['http://[64:ff9b::7f00:1]/', 'address_refused', /NAT64/],
    ['http://0x7f000001/disk.img', 'uri_refused', /shorthand or encoded/],
    ['http://127.1/disk.img', 'uri_refused', /shorthand or encoded/],
    ['http://2130706433/disk.img', 'uri_refused', /shorthand or encoded/],
    ['http://0177.0.0.1/disk.img', 'uri_refused', /shorthand or encoded/],
    ['http://0x08080808/', 'uri_refused', /shorthand or encoded/], // even a public address: the form itself is refused
    ['http://%31%32%37.0.0.1/', 'uri_refused', /shorthand or encoded/],
    ['http://example.org:8080/disk.img', 'uri_refused', /Port 8080 is refused/],
    ['https://example.org:22/', 'uri_refused', /Port 22 is refused/],
    ['ftp://example.org/disk.img', 'uri_refused', /Only http and https/],
    ['file:///etc/passwd', 'uri_refused', /Only http and https/],
    ['gopher://example.org/', 'uri_refused', /Only http and https/],
    ['http://user:secret@example.org/disk.img', 'uri_refused', /credentials/],
    ['http://user@example.org/disk.img', 'uri_refused', /credentials/],
    ['not a url', 'uri_refused', /not a URL/],
    // RFC 6761: loopback whatever DNS says, refused before any lookup.
    ['https://localhost/hook', 'address_refused', /localhost names the loopback interface/],
    ['https://LOCALHOST/hook', 'address_refused', /names the loopback interface/],
    ['https://localhost./hook', 'address_refused', /names the loopback interface/],
    ['https://api.localhost/hook', 'address_refused', /names the loopback interface/],
  ];
  for (const [url, code, pattern] of cases) {
    it(`refuses ${url}`, () => assert.throws(() => checkUrl(url, s), refusedWith(code, pattern)));
  }
  it('accepts ordinary public URLs on 80 and 443', () => {
    assert.equal(checkUrl('https://cloud-images.example.org/disk.qcow2', s).port, 443);
    assert.equal(checkUrl('http://93.184.216.34/disk.qcow2', s).port, 80);
    assert.equal(checkUrl('http://[2606:2800:220:1::1]/x', s).literal, true);
  });
});

describe('egress: address classification', () => {
  it('passes only ordinary unicast addresses', () => {
    for (const ok of ['8.8.8.8', '93.184.216.34', '2606:4700::1111']) assert.equal(refusedAddress(ok), null, ok);
    for (const bad of ['127.0.0.2', '10.255.255.255', '169.254.0.1', '::1', 'fe80::1%1', '::ffff:192.168.0.1', '192.0.2.1', 'garbage']) assert.notEqual(refusedAddress(bad), null, bad);
  });
});

describe('egress: the allow-list', () => {
  it('parses CIDRs, addresses, host names and host:port, and refuses the rest', () => {
    const list = parseAllowList('10.0.0.0/8, 127.0.0.1, mirror.internal, 127.0.0.1:8080, [::1]:9000');
    assert.deepEqual(list.map((e) => e.kind), ['cidr', 'cidr', 'host', 'host', 'host']);
    assert.throws(() => parseAllowList('10.0.0.0/99'), /not a CIDR/);
    assert.throws(() => parseAllowList('bad host!'), /not a CIDR, a host name or host:port/);
    assert.throws(() => parseAllowList('host:99999'), /not a CIDR/);
  });
  it('a CIDR exempts the address and every port', () => {
    const s = settings('127.0.0.0/8');
    assert.equal(checkUrl('http://127.0.0.1:8080/x', s).port, 8080);
    assert.throws(() => checkUrl('http://10.0.0.1/x', s), /private/);
  });
  it('a host:port entry exempts that port only', () => {
    const s = settings('127.0.0.1:8080');
    assert.equal(checkUrl('http://127.0.0.1:8080/x', s).allowedByName, true);
    assert.throws(() => checkUrl('http://127.0.0.1:8081/x', s), /loopback/);
    assert.throws(() => checkUrl('http://127.0.0.1/x', s), /loopback/);
  });
  it('the allow-list never exempts the scheme, credentials or shorthand forms', () => {
    const s = settings('127.0.0.0/8,localhost');
    assert.throws(() => checkUrl('ftp://127.0.0.1/x', s), /Only http and https/);
    assert.throws(() => checkUrl('http://u:p@localhost/x', s), /credentials/);
    assert.throws(() => checkUrl('http://127.1/x', s), /shorthand/);
  });
});

describe('egress: DNS answers', () => {
  const s = settings();
  const resolveTo = (...addresses: string[]) => async () => addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  it('refuses a name that resolves to loopback', async () => {
    await assert.rejects(resolveChecked(checkUrl('http://loop.example/disk.img', s), s, resolveTo('127.0.0.1')), refusedWith('address_refused', /loop\.example resolves to .*loopback/));
  });
  it('takes localhost when the operator allows loopback or the name', () => {
    assert.equal(checkUrl('http://localhost/disk.img', settings('127.0.0.0/8')).host, 'localhost');
    assert.equal(checkUrl('http://localhost:8080/disk.img', settings('localhost:8080')).host, 'localhost');
  });
  it('checks every address of the answer, not only the first', async () => {
    await assert.rejects(resolveChecked(checkUrl('http://mixed.example/x', s), s, resolveTo('93.184.216.34', '10.1.2.3')), refusedWith('address_refused', /mixed\.example resolves to a private address/));
    // The class, never the address: a tenant must not learn what internal names resolve to.
    await assert.rejects(resolveChecked(checkUrl('http://mixed.example/x', s), s, resolveTo('10.1.2.3')), (e: Error) => !/10\.1\.2\.3/.test(e.message));
    await assert.rejects(resolveChecked(checkUrl('http://meta.example/x', s), s, resolveTo('169.254.169.254')), /metadata/);
    await assert.rejects(resolveChecked(checkUrl('http://mapped.example/x', s), s, resolveTo('::ffff:127.0.0.1')), /loopback/);
    const ok = await resolveChecked(checkUrl('http://public.example/x', s), s, resolveTo('93.184.216.34', '2606:2800:220:1::1'));
    assert.deepEqual(ok.map((a) => a.address), ['93.184.216.34', '2606:2800:220:1::1']);
  });
  it('a name that does not resolve is a clear failure', async () => {
    await assert.rejects(resolveChecked(checkUrl('http://no-such-host.invalid/x', s), s), refusedWith('dns_failed', /could not be resolved/));
  });
  it('with a CIDR allow-list, a non-standard port is allowed only when every address is in it', async () => {
    const c = settings('127.0.0.0/8');
    const target = checkUrl('http://name.test:8080/x', c);
    assert.equal((await resolveChecked(target, c, resolveTo('127.0.0.1')))[0].address, '127.0.0.1');
    await assert.rejects(resolveChecked(target, c, resolveTo('93.184.216.34')), /Port 8080 is refused/);
  });
});

describe('egress: requests', () => {
  let server: Server;
  let port: number;
  let lastHost = '';
  before(async () => {
    server = createServer((req, res) => {
      lastHost = req.headers.host ?? '';
      const path = req.url ?? '/';
      if (path === '/ok') return res.end('hello');
      if (path === '/echo') { const parts: Buffer[] = []; req.on('data', (c) => parts.push(c)); req.on('end', () => res.end(`${req.method} ${Buffer.concat(parts).toString()}`)); return; }
      if (path === '/post-303') return res.writeHead(303, { location: '/echo' }).end();
      if (path === '/post-307') return res.writeHead(307, { location: '/echo' }).end();
      if (path === '/redirect-loopback') return res.writeHead(302, { location: 'http://127.0.0.1/secret' }).end();
      if (path === '/redirect-localhost') return res.writeHead(302, { location: 'http://localhost/ok' }).end();
      if (path === '/redirect-metadata') return res.writeHead(307, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
      if (path === '/redirect-ok') return res.writeHead(301, { location: '/ok' }).end();
      if (path.startsWith('/loop')) return res.writeHead(302, { location: `/loop${Number(path.slice(5) || 0) + 1}` }).end();
      if (path === '/big') return res.writeHead(200, { 'content-length': '100' }).end(Buffer.alloc(100));
      if (path === '/big-chunked') { res.write(Buffer.alloc(60)); res.end(Buffer.alloc(60)); return; }
      if (path === '/stall') { res.writeHead(200, { 'content-length': '100' }); res.write(Buffer.alloc(10)); return; }
      if (path === '/short') { res.writeHead(200, { 'content-length': '100' }); res.write(Buffer.alloc(10)); setTimeout(() => res.destroy(), 20); return; }
      res.writeHead(404).end('nope');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  const read = async (body: NodeJS.ReadableStream) => {
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString();
  };

  it('downloads from an allow-listed local server', async () => {
    const client = new EgressClient(settings(`127.0.0.1:${port}`));
    const response = await client.get(`http://127.0.0.1:${port}/ok`, { maxBytes: 1000 });
    assert.equal(response.status, 200);
    assert.equal(await read(response.body), 'hello');
  });
  it('follows a same-origin redirect, re-checked', async () => {
    const client = new EgressClient(settings(`127.0.0.1:${port}`));
    const response = await client.get(`http://127.0.0.1:${port}/redirect-ok`, { maxBytes: 1000 });
    assert.equal(await read(response.body), 'hello');
    assert.equal(response.url, `http://127.0.0.1:${port}/ok`);
  });
  it('refuses a redirect to loopback, to a name resolving to loopback, and to the metadata address', async () => {
    const client = new EgressClient(settings(`127.0.0.1:${port}`));
    await assert.rejects(client.get(`http://127.0.0.1:${port}/redirect-loopback`, { maxBytes: 1000 }), refusedWith('address_refused', /127\.0\.0\.1 is a loopback address/));
    await assert.rejects(client.get(`http://127.0.0.1:${port}/redirect-localhost`, { maxBytes: 1000 }), refusedWith('address_refused', /localhost names the loopback interface/));
    await assert.rejects(client.get(`http://127.0.0.1:${port}/redirect-metadata`, { maxBytes: 1000 }), refusedWith('address_refused', /metadata/));
  });
  it('sends other methods with a body (webhooks), re-checking redirects the way browsers follow them', async () => {
    const client = new EgressClient(settings(`127.0.0.1:${port}`));
    const body = Buffer.from('{"event":"image.active"}');
    const direct = await client.request(`http://127.0.0.1:${port}/echo`, { method: 'POST', body, maxBytes: 1000, headers: { 'content-type': 'application/json' } });
    assert.equal(await read(direct.body), 'POST {"event":"image.active"}');
    assert.equal(await read((await client.request(`http://127.0.0.1:${port}/post-307`, { method: 'POST', body, maxBytes: 1000 })).body), 'POST {"event":"image.active"}');
    assert.equal(await read((await client.request(`http://127.0.0.1:${port}/post-303`, { method: 'POST', body, maxBytes: 1000 })).body), 'GET ');
    const unfollowed = await client.request(`http://127.0.0.1:${port}/redirect-loopback`, { method: 'POST', body, maxBytes: 1000, followRedirects: false, anyStatus: true });
    assert.equal(unfollowed.status, 302);
    unfollowed.body.destroy();
    await assert.rejects(client.request('http://127.0.0.1/hook', { method: 'POST', body, maxBytes: 10 }), refusedWith('address_refused', /loopback/));
  });
  it('stops after 5 redirects', async () => {
    const client = new EgressClient(settings(`127.0.0.1:${port}`));
    await assert.rejects(client.get(`http://127.0.0.1:${port}/loop0`, { maxBytes: 1000 }), refusedWith('too_many_redirects', /More than 5 redirects/));
  });
  it('connects to the checked address only (pinned): the name is never resolved again', async () => {
    let lookups = 0;
    const client = new EgressClient(settings('127.0.0.0/8'), async () => { lookups++; return [{ address: '127.0.0.1', family: 4 }]; });
    const response = await client.get(`http://rebind.test:${port}/ok`, { maxBytes: 1000 });
    assert.equal(await read(response.body), 'hello'); // rebind.test has no DNS: only the pinned lookup could connect
    assert.equal(lastHost, `rebind.test:${port}`);
    assert.equal(lookups, 1);
  });
  it('enforces the size limit by Content-Length and while streaming', async () => {
    const client = new EgressClient(settings(`127.0.0.1:${port}`));
    await assert.rejects(client.get(`http://127.0.0.1:${port}/big`, { maxBytes: 50 }), refusedWith('too_large', /100 bytes, more than the 50/));
    const response = await client.get(`http://127.0.0.1:${port}/big-chunked`, { maxBytes: 100 });
    await assert.rejects(read(response.body), refusedWith('too_large', /larger than the 100 bytes/));
  });
  it('fails a body that stops arriving with the idle timeout', async () => {
    const client = new EgressClient(settings(`127.0.0.1:${port}`, { idleTimeoutMs: 200 }));
    const response = await client.get(`http://127.0.0.1:${port}/stall`, { maxBytes: 1000 });
    await assert.rejects(read(response.body), refusedWith('timeout', /sent nothing for 200 ms/));
  });
  it('reports HTTP errors and bodies that break off', async () => {
    const client = new EgressClient(settings(`127.0.0.1:${port}`));
    await assert.rejects(client.get(`http://127.0.0.1:${port}/missing`, { maxBytes: 1000 }), refusedWith('upstream_status', /answered 404/));
    const response = await client.get(`http://127.0.0.1:${port}/short`, { maxBytes: 1000 });
    await assert.rejects(read(response.body), (e: unknown) => e instanceof Error);
  });
});

describe('egress: messages say what the request was for', () => {
  it('a webhook URL is refused in webhook words, a download URL in download words', async () => {
    const webhook = settings('', { purpose: 'webhook' });
    assert.throws(() => checkUrl('https://127.0.0.1/hook', webhook), refusedWith('address_refused', /PIR does not send webhooks to it/));
    assert.throws(() => checkUrl('https://hooks.example.org:8443/', webhook), refusedWith('uri_refused', /PIR sends webhooks only to port 80 or 443/));
    assert.throws(() => checkUrl('https://u:p@hooks.example.org/', webhook), refusedWith('uri_refused', /webhook-signature/));
    assert.throws(() => checkUrl('ftp://hooks.example.org/', webhook), refusedWith('uri_refused', /can receive webhooks/));
    assert.throws(() => checkUrl('https://127.0.0.1/disk', settings()), refusedWith('address_refused', /PIR does not download from it/));
    // A receiver that is not there: the failure names reaching it, not downloading.
    const client = new EgressClient(settings('127.0.0.1', { purpose: 'webhook', connectTimeoutMs: 2000 }));
    await assert.rejects(client.request('http://127.0.0.1:1/hook', { method: 'POST', body: Buffer.from('{}'), maxBytes: 1024 }),
      (error: unknown) => error instanceof EgressError && /^Could not reach 127\.0\.0\.1:1/.test(error.message) && !/download/i.test(error.message));
  });
});

describe('refusal messages', () => {
  it("quote a malformed URL without its query (the message reaches error spans and logs)", () => {
    const settings: EgressSettings = { ...DEFAULT_EGRESS, allowList: parseAllowList('') };
    assert.throws(() => checkUrl('https://exa mple.com/hook?token=WHTOK5#frag', settings), (error: Error) =>
      error instanceof EgressError && error.message === "'https://exa mple.com/hook?…' is not a URL." && !error.message.includes('WHTOK5'));
  });
});
