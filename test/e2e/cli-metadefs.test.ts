/**
 * `pir metadef …` against a `pir serve` started here: import of namespace files in Glance's
 * format (created, skipped when there, replaced with --replace even when protected, a bad file
 * reported with exit code 1), list with filters, show with a resource type's prefix, export that
 * imports back unchanged, delete (refused for a protected namespace without --force), and a
 * member token that may list public namespaces but import nothing.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, removeDir } from '../support/images.js';
import { runCli, type CliResult } from '../support/pir-cli.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';

const TOKEN = 'e2e-cli-metadefs-token-0123456789abcdef';
const MEMBER = 'e2e-cli-metadefs-member-0123456789';
const logDir = testLogDir('cli-metadefs');

const COMPUTE = {
  namespace: 'PIR::Test::Compute',
  display_name: 'Compute options',
  description: 'Written for the pir metadef test.',
  visibility: 'public',
  protected: true,
  resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'hw_' }, { name: 'OS::Nova::Flavor', prefix: 'hw:' }],
  properties: { cpu_policy: { title: 'CPU policy', type: 'string', enum: ['shared', 'dedicated'] } },
  objects: [{ name: 'Watchdog', required: ['action'], properties: { action: { title: 'Action', type: 'string', enum: ['reset', 'none'] } } }],
  tags: [{ name: 'compute' }],
};
const VOLUME = { namespace: 'PIR::Test::Volume', visibility: 'private', resource_type_associations: [{ name: 'OS::Cinder::Volume' }] };

describe('pir metadef against pir serve', () => {
  let dir: string;
  let pir: PirProcess;
  let cli: (args: string[], token?: string) => Promise<CliResult>;

  before(async () => {
    dir = await makeTempDir('pir-e2e-cli-metadefs-');
    const home = join(dir, 'home');
    await mkdir(home);
    const tokens = join(dir, 'tokens.json');
    await writeFile(tokens, JSON.stringify({ tokens: [{ token: MEMBER, project_id: 'project-m', user_id: 'm', roles: ['member'] }] }), { mode: 0o600 });
    const port = await freePort();
    pir = await startPirProcess('serve', { PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, PIR_TOKENS_FILE: tokens }, logDir, 'serve');
    cli = (args, token = TOKEN) => runCli(args, { HOME: home, PIR_URL: `http://127.0.0.1:${port}`, PIR_TOKEN: token });
  });
  after(async () => {
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  const ok = (r: CliResult) => {
    assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
    return r.stdout;
  };

  it('imports, lists, shows, exports, replaces and deletes namespaces', async () => {
    const compute = join(dir, 'compute.json');
    const volume = join(dir, 'volume.json');
    const bad = join(dir, 'bad.json');
    await writeFile(compute, JSON.stringify(COMPUTE));
    await writeFile(volume, JSON.stringify(VOLUME));
    await writeFile(bad, '{"display_name": "no namespace"}');

    const first = await cli(['metadef', 'import', compute, volume, bad, '--format', 'json']);
    assert.equal(first.code, 1, 'a file failed');
    assert.match(first.stderr, /1 of 3 file\(s\) could not be imported/);
    assert.deepEqual(JSON.parse(first.stdout).map((r: { result: string }) => r.result.split(':')[0]), ['created', 'created', 'failed']);
    const again = JSON.parse(ok(await cli(['metadef', 'import', compute, '--format', 'json'])));
    assert.match(again[0].result, /^exists/);

    assert.deepEqual(JSON.parse(ok(await cli(['metadef', 'list', '--format', 'json']))).map((n: { namespace: string }) => n.namespace), ['PIR::Test::Compute', 'PIR::Test::Volume']);
    assert.deepEqual(JSON.parse(ok(await cli(['metadef', 'list', '--resource-type', 'OS::Cinder::Volume', '--format', 'json']))).map((n: { namespace: string }) => n.namespace), ['PIR::Test::Volume']);
    assert.deepEqual(JSON.parse(ok(await cli(['metadef', 'list', '--visibility', 'public', '--format', 'json']))).map((n: { namespace: string }) => n.namespace), ['PIR::Test::Compute']);
    const table = ok(await cli(['metadef', 'show', 'PIR::Test::Compute', '--resource-type', 'OS::Nova::Flavor']));
    assert.match(table, /^properties\s+hw:cpu_policy$/m);
    assert.match(table, /^objects\s+Watchdog$/m);

    // Export, then import the export back in place of the namespace: the same definitions.
    const exported = join(dir, 'exported.json');
    ok(await cli(['metadef', 'export', 'PIR::Test::Compute', '--file', exported]));
    const replaced = JSON.parse(ok(await cli(['metadef', 'import', '--replace', exported, '--format', 'json'])));
    assert.equal(replaced[0].result, 'replaced', 'a protected namespace is replaced');
    const shown = JSON.parse(ok(await cli(['metadef', 'show', 'PIR::Test::Compute', '--format', 'json'])));
    for (const key of ['namespace', 'display_name', 'description', 'visibility', 'protected', 'properties'] as const) assert.deepEqual(shown[key], COMPUTE[key], key);
    assert.deepEqual(shown.objects.map((o: { name: string; required: string[] }) => [o.name, o.required]), [['Watchdog', ['action']]]);
    assert.deepEqual(shown.resource_type_associations.map((a: { name: string; prefix: string }) => `${a.name}=${a.prefix}`), ['OS::Glance::Image=hw_', 'OS::Nova::Flavor=hw:']);

    // A member lists the public namespace only, and may import nothing.
    assert.deepEqual(JSON.parse(ok(await cli(['metadef', 'list', '--format', 'json'], MEMBER))).map((n: { namespace: string }) => n.namespace), ['PIR::Test::Compute']);
    const refused = await cli(['metadef', 'import', volume, '--replace', '--format', 'json'], MEMBER);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /failed/);

    const protectedDelete = await cli(['metadef', 'delete', 'PIR::Test::Compute']);
    assert.notEqual(protectedDelete.code, 0);
    assert.match(protectedDelete.stderr, /protected/);
    ok(await cli(['metadef', 'delete', '--force', 'PIR::Test::Compute', 'PIR::Test::Volume']));
    assert.deepEqual(JSON.parse(ok(await cli(['metadef', 'list', '--format', 'json']))), []);
    assert.equal((await cli(['metadef', 'show', 'PIR::Test::Compute'])).code, 4, 'not found');
  });
});
