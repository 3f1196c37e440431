/**
 * The real `glance` CLI (Debian's python3-glanceclient) against `pir serve`: create with a
 * file, create via glance-direct import, show, list, download, delete, a refused image, and
 * the metadata calls: image-update, tags, protected, deactivate/reactivate, members between
 * two projects (tokens from PIR_TOKENS_FILE), tasks, the metadata definitions (md-*), and webhooks: `glance image-update
 * --visibility public` reaching other projects' matching subscriptions (issue 8 point 6).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ensureQemuImg, makeImage, makeTempDir, removeDir } from '../support/images.js';
import { fileDigests } from '../support/pir-client.js';
import { freePort, startPirProcess, testLogDir, type PirProcess } from '../support/pir-process.js';
import { inCI } from '../support/services.js';
import { WebhookReceiver, verify } from '../support/webhook-receiver.js';

const run = promisify(execFile);
const TOKEN = 'e2e-glance-cli-token-0123456789abcd';
/** Two projects' member tokens, from the tokens file. */
const ALICE = 'e2e-glance-alice-0123456789';
const BOB = 'e2e-glance-bob-0123456789';
const CAROL = 'e2e-glance-carol-0123456789';
const logDir = testLogDir('glance-cli');
const haveGlance = await run('glance', ['--version']).then(() => true, () => false);
if (!haveGlance && !inCI) console.log('# glance CLI e2e skipped: no `glance` command; install it with bash infra/local/services.sh install tools');

describe('the glance CLI against pir serve', { skip: !haveGlance && !inCI ? 'no glance command (python3-glanceclient)' : false }, () => {
  let dir: string;
  let pir: PirProcess;
  let glance: (...args: string[]) => Promise<string>;
  let glanceAs: (token: string, ...args: string[]) => Promise<string>;
  let apiUrl: string;
  const receivers: WebhookReceiver[] = [];

  before(async () => {
    if (!haveGlance) throw new Error('CI is set but the glance command is missing: bash infra/local/services.sh install tools');
    ensureQemuImg();
    dir = await makeTempDir('pir-e2e-glance-');
    const port = await freePort();
    const tokensFile = join(dir, 'tokens.json');
    await writeFile(tokensFile, JSON.stringify({ tokens: [
      { token: ALICE, project_id: 'project-a', user_id: 'alice', roles: ['member'] },
      { token: BOB, project_id: 'project-b', user_id: 'bob', roles: ['member'] },
      { token: CAROL, project_id: 'project-c', user_id: 'carol', roles: ['member'] },
    ] }), { mode: 0o600 });
    pir = await startPirProcess('serve', {
      PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN, PIR_TOKENS_FILE: tokensFile,
      // webhook receivers started by the tests listen on loopback
      PIR_EGRESS_ALLOWLIST: '127.0.0.1/32', PIR_WEBHOOK_RETRY_SCHEDULE: '200ms,200ms',
    }, logDir);
    apiUrl = `http://127.0.0.1:${port}`;
    const home = join(dir, 'home'); // the CLI caches the image schema under ~/.glanceclient
    await mkdir(home);
    glanceAs = async (token: string, ...args: string[]) => {
      // stdin closed (<&-): with --file, the CLI refuses a stdin that is not a terminal.
      const { stdout } = await run('bash', ['-c', 'exec glance "$@" <&-', 'glance', '--os-image-url', `http://127.0.0.1:${port}`, `--os-auth-token=${token}`, ...args], {
        env: { PATH: process.env.PATH ?? '', HOME: home },
      });
      return stdout;
    };
    glance = (...args: string[]) => glanceAs(TOKEN, ...args);
  });
  after(async () => {
    for (const r of receivers) await r.stop();
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  /** Reads a field from the CLI's two-column table. */
  const field = (table: string, name: string) => new RegExp(`^\\|\\s*${name}\\s*\\|\\s*(.*?)\\s*\\|$`, 'm').exec(table)?.[1];

  it('uploads a qcow2 with image-create --file, shows it active, lists and downloads it', async () => {
    const disk = await makeImage(dir, 'qcow2', { size: '2G' });
    const digests = await fileDigests(disk);
    const created = await glance('image-create', '--name', 'cli-qcow2', '--disk-format', 'qcow2', '--container-format', 'bare', '--file', disk);
    const id = field(created, 'id')!;
    assert.match(id, /^[0-9a-f-]{36}$/);
    const shown = await glance('image-show', id);
    assert.equal(field(shown, 'status'), 'active');
    assert.equal(field(shown, 'checksum'), digests.md5);
    assert.equal(field(shown, 'virtual_size'), String(2 * 2 ** 30));
    assert.equal(field(shown, 'os_hash_algo'), 'sha512');
    assert.match(await glance('image-list'), new RegExp(id));
    const out = join(dir, 'downloaded.qcow2');
    await glance('image-download', '--file', out, id); // the CLI checks Content-MD5 itself
    assert.deepEqual(await fileDigests(out), digests);
    await glance('image-delete', id);
    await assert.rejects(glance('image-show', id), /not found/i);
  });

  it('imports with image-create-via-import (glance-direct)', async () => {
    const disk = await makeImage(dir, 'raw', { size: '8M' });
    const created = await glance('image-create-via-import', '--name', 'cli-import', '--disk-format', 'raw', '--container-format', 'bare', '--import-method', 'glance-direct', '--file', disk);
    const id = field(created, 'id')!;
    let status = '';
    for (let i = 0; i < 100 && status !== 'active'; i++) {
      status = field(await glance('image-show', id), 'status') ?? '';
      if (status !== 'active') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 'active');
  });

  it('shows the reason when an image is refused', async () => {
    const evil = await makeImage(dir, 'qcow2', { backing: '/etc/passwd', backingFormat: 'raw', unsafe: true, size: '1G' });
    await assert.rejects(
      glance('image-create', '--name', 'cli-evil', '--disk-format', 'qcow2', '--container-format', 'bare', '--file', evil),
      (error: Error & { stderr?: string }) => /backing file/.test(String(error.stderr)),
    );
  });

  it("shows PIR's reason, not 'Broken pipe', when a large upload is refused before its data is read", async () => {
    // The CLI sends the whole (chunked) body before it reads the answer: PIR must go on reading it.
    const disk = await makeImage(dir, 'raw', { size: '8M' });
    const id = field(await glance('image-create', '--name', 'cli-refused-upload', '--disk-format', 'raw', '--container-format', 'bare', '--file', disk), 'id')!;
    const big = join(dir, 'big.raw');
    await writeFile(big, Buffer.alloc(64 * 1024 * 1024, 7));
    const refused = (error: Error & { stderr?: string }, reason: RegExp) => {
      assert.doesNotMatch(String(error.stderr), /Broken pipe|Errno 32/, String(error.stderr));
      assert.match(String(error.stderr), reason);
      return true;
    };
    await assert.rejects(glance('image-upload', '--file', big, id), (e: Error & { stderr?: string }) => refused(e, /is active; bytes can be uploaded only to a queued image/));
    await assert.rejects(glanceAs('not-a-token-0123456789', 'image-upload', '--file', big, id), (e: Error & { stderr?: string }) => refused(e, /401|credentials/i));
    await rm(big);
  });

  it('takes what image-create without --file uploads from an empty, non-terminal stdin: an empty raw disk, as Glance does; a qcow2 waits for image-upload', async () => {
    // Scripts, cron jobs and CI run the CLI with such a stdin; it then uploads what stdin holds (nothing).
    const createFromEmptyStdin = (name: string, diskFormat: string) => run('bash', ['-c', 'exec glance "$@" </dev/null', 'glance',
      '--os-image-url', apiUrl, `--os-auth-token=${TOKEN}`, 'image-create', '--name', name, '--disk-format', diskFormat, '--container-format', 'bare'],
    { env: { PATH: process.env.PATH ?? '', HOME: join(dir, 'home') } });
    const id = field((await createFromEmptyStdin('cli-empty', 'raw')).stdout, 'id')!;
    const shown = await glance('image-show', id);
    assert.equal(field(shown, 'status'), 'active');
    assert.equal(field(shown, 'size'), '0');
    assert.equal(field(shown, 'checksum'), 'd41d8cd98f00b204e9800998ecf8427e');
    // Declared as a format with a header, nothing is refused with the reason, and the image stays
    // queued (as in Glance), so the script's next step, image-upload with the file, works.
    let refused = '';
    await assert.rejects(createFromEmptyStdin('cli-empty-qcow2', 'qcow2'), (error: Error & { stdout?: string; stderr?: string }) => {
      refused = String(error.stdout);
      return /0 bytes long, which no qcow2 image is/.test(String(error.stderr));
    });
    const queued = field(refused, 'id')!;
    assert.equal(field(await glance('image-show', queued), 'status'), 'queued');
    const disk = await makeImage(dir, 'qcow2', { size: '8M' });
    await glance('image-upload', '--file', disk, queued);
    const uploaded = await glance('image-show', queued);
    assert.deepEqual([field(uploaded, 'status'), field(uploaded, 'virtual_size')], ['active', String(8 * 1024 * 1024)]);
  });

  it('updates metadata with image-update: name, properties, visibility, protected', async () => {
    const disk = await makeImage(dir, 'raw', { size: '4M' });
    const id = field(await glance('image-create', '--name', 'cli-meta', '--disk-format', 'raw', '--container-format', 'bare', '--file', disk), 'id')!;
    let shown = await glance('image-update', '--name', 'cli-meta-renamed', '--property', 'os_distro=debian', '--min-ram', '512', '--visibility', 'community', id);
    assert.equal(field(shown, 'name'), 'cli-meta-renamed');
    assert.equal(field(shown, 'os_distro'), 'debian');
    assert.equal(field(shown, 'min_ram'), '512');
    assert.equal(field(shown, 'visibility'), 'community');
    shown = await glance('image-update', '--remove-property', 'os_distro', id);
    assert.equal(field(shown, 'os_distro'), undefined);
    // The options glanceclient builds from Glance's packaged schema-image.json properties.
    shown = await glance('image-update', '--os-distro', 'ubuntu', '--architecture', 'x86_64', '--os-version', '24.04', id);
    assert.equal(field(shown, 'os_distro'), 'ubuntu');
    assert.equal(field(shown, 'architecture'), 'x86_64');
    await assert.rejects(glance('image-update', '--kernel-id', 'not-a-uuid', id), (e: Error & { stderr?: string }) => /kernel_id|does not match|400/i.test(String(e.stderr)));
    await assert.rejects(glance('image-update', '--disk-format', 'qcow2', id), (e: Error & { stderr?: string }) => /403|queued/i.test(String(e.stderr)));
    await glance('image-update', '--protected', 'True', id);
    // glanceclient prints its own sentence for a 403 on delete
    await assert.rejects(glance('image-delete', id), (e: Error & { stderr?: string }) => /protected|not permitted/i.test(String(e.stderr)));
    await glance('image-update', '--protected', 'False', id);
    await glance('image-delete', id);
  });

  it('adds and removes tags with image-tag-update and image-tag-delete', async () => {
    const id = field(await glance('image-create', '--name', 'cli-tags', '--disk-format', 'raw', '--container-format', 'bare'), 'id')!;
    await glance('image-tag-update', id, 'golden');
    await glance('image-tag-update', id, 'debian');
    assert.match(field(await glance('image-show', id), 'tags') ?? '', /debian.*golden|golden.*debian/);
    await glance('image-tag-delete', id, 'golden');
    assert.equal(field(await glance('image-show', id), 'tags'), '["debian"]');
    await assert.rejects(glance('image-tag-delete', id, 'golden'), (e: Error & { stderr?: string }) => /404|not found|no tag/i.test(String(e.stderr)));
  });

  it('deactivates and reactivates an image (admin token)', async () => {
    const disk = await makeImage(dir, 'raw', { size: '4M' });
    const id = field(await glance('image-create', '--name', 'cli-deact', '--disk-format', 'raw', '--container-format', 'bare', '--file', disk), 'id')!;
    await glance('image-deactivate', id);
    assert.equal(field(await glance('image-show', id), 'status'), 'deactivated');
    await glance('image-reactivate', id);
    assert.equal(field(await glance('image-show', id), 'status'), 'active');
  });

  it('shares an image between two projects: member-create, member-update by the member, member-list, member-delete', async () => {
    const asA = (...args: string[]) => glanceAs(ALICE, ...args);
    const asB = (...args: string[]) => glanceAs(BOB, ...args);
    const stderrMatches = (re: RegExp) => (e: Error & { stderr?: string }) => re.test(String(e.stderr));
    const id = field(await asA('image-create', '--name', 'cli-members', '--disk-format', 'raw', '--container-format', 'bare', '--visibility', 'shared'), 'id')!;
    assert.equal(field(await asA('image-show', id), 'owner'), 'project-a');
    await assert.rejects(asB('image-show', id), stderrMatches(/not found|404/i));
    assert.match(await asA('member-create', id, 'project-b'), /project-b\s*\|\s*pending/);
    await assert.rejects(asA('member-create', id, 'project-b'), stderrMatches(/409|already/i));
    // pending: B sees the image by id, not in its list
    assert.equal(field(await asB('image-show', id), 'name'), 'cli-members');
    assert.doesNotMatch(await asB('image-list'), new RegExp(id));
    // only the member answers the invitation
    await assert.rejects(asA('member-update', id, 'project-b', 'accepted'), stderrMatches(/403|forbidden|only project/i));
    assert.match(await asB('member-update', id, 'project-b', 'accepted'), /project-b\s*\|\s*accepted/);
    assert.match(await asB('image-list'), new RegExp(id));
    assert.match(await asA('member-list', '--image-id', id), /project-b\s*\|\s*accepted/);
    assert.match(await asB('member-get', id, 'project-b'), /accepted/);
    // B may not change A's image, nor share it further
    await assert.rejects(asB('image-update', '--name', 'hijacked', id), stderrMatches(/Policy does not allow/));
    await assert.rejects(asB('member-create', id, 'project-c'), stderrMatches(/Policy does not allow/));
    await asA('member-delete', id, 'project-b');
    assert.doesNotMatch(await asA('member-list', '--image-id', id), /project-b/);
    await assert.rejects(asB('image-show', id), stderrMatches(/not found|404/i));
    const priv = field(await asA('image-create', '--name', 'cli-private', '--visibility', 'private'), 'id')!;
    await assert.rejects(asA('member-create', priv, 'project-b'), stderrMatches(/shared/i));
    await assert.rejects(asB('image-delete', priv), stderrMatches(/not found|404|No image/i));
  });

  it('keeps deactivate for administrators', async () => {
    const disk = await makeImage(dir, 'raw', { size: '4M' });
    const id = field(await glanceAs(ALICE, 'image-create', '--name', 'cli-deact-a', '--disk-format', 'raw', '--container-format', 'bare', '--file', disk), 'id')!;
    await assert.rejects(glanceAs(ALICE, 'image-deactivate', id), (e: Error & { stderr?: string }) => /403|forbidden|administrator/i.test(String(e.stderr)));
    await glance('image-deactivate', id);
    await assert.rejects(glanceAs(ALICE, 'image-download', '--file', join(dir, 'deact.raw'), id), (e: Error & { stderr?: string }) => /403|forbidden|deactivated/i.test(String(e.stderr)));
    await glance('image-reactivate', id);
    await glanceAs(ALICE, 'image-download', '--file', join(dir, 'deact.raw'), id);
  });

  it('manages metadata definitions with md-*: import, show with a resource type prefix, properties, objects, tags, associations, protected namespaces; a member reads public ones only and changes none', async () => {
    const file = join(dir, 'namespace.json');
    await writeFile(file, JSON.stringify({
      namespace: 'PIR::CLI::Compute', display_name: 'Compute options', description: 'Written for the glance CLI test.',
      visibility: 'public', protected: true,
      resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'hw_' }, { name: 'OS::Nova::Flavor', prefix: 'hw:' }],
      properties: { cpu_policy: { title: 'CPU policy', type: 'string', enum: ['shared', 'dedicated'] } },
      objects: [{ name: 'Watchdog', required: ['action'], properties: { action: { title: 'Action', type: 'string', enum: ['reset', 'none'] } } }],
      tags: [{ name: 'compute' }],
    }));
    const ns = 'PIR::CLI::Compute';
    await glance('md-namespace-import', '--file', file);
    const shown = await glance('md-namespace-show', ns, '--resource-type', 'OS::Nova::Flavor');
    assert.equal(field(shown, 'properties'), '["hw:cpu_policy"]');
    assert.equal(field(shown, 'visibility'), 'public');
    assert.match(await glance('md-namespace-list'), /PIR::CLI::Compute/);

    await glance('md-property-create', ns, '--name', 'cores', '--title', 'Cores', '--schema', '{"type": "integer", "minimum": 1}');
    assert.equal(field(await glance('md-property-update', ns, 'cores', '--title', 'CPU cores'), 'title'), 'CPU cores');
    assert.equal(field(await glance('md-property-show', ns, 'cores'), 'minimum'), '1');
    assert.match(await glance('md-property-list', ns), /cores\s*\|\s*CPU cores/);
    await glance('md-object-create', ns, '--name', 'Serial', '--schema', '{"description": "serial ports", "properties": {"count": {"title": "Count", "type": "integer"}}}');
    assert.equal(field(await glance('md-object-property-show', ns, 'Serial', 'count'), 'type'), 'integer');
    assert.match(await glance('md-object-list', ns), /Watchdog/);
    await glance('md-tag-create', ns, '--name', 'fast');
    await glance('md-tag-update', ns, 'fast', '--name', 'faster');
    assert.equal(field(await glance('md-tag-show', ns, 'faster'), 'name'), 'faster');
    await glance('md-tag-create-multiple', ns, '--names', 'x,y');
    assert.deepEqual((await glance('md-tag-list', ns)).match(/^\| (\w+)\s+\|$/gm)?.map((row) => row.replace(/[| ]/g, '')).filter((name) => name !== 'name').sort(), ['x', 'y'], 'create-multiple without --append replaces the tags');
    await glance('md-resource-type-associate', ns, '--name', 'OS::Cinder::Volume', '--prefix', 'vol_');
    assert.match(await glance('md-namespace-resource-type-list', ns), /OS::Cinder::Volume\s*\|\s*vol_/);
    assert.match(await glance('md-resource-type-list'), /OS::Nova::Aggregate/);

    // A member of another project reads the public namespace and changes nothing.
    assert.match(await glanceAs(ALICE, 'md-namespace-show', ns), /PIR::CLI::Compute/);
    await assert.rejects(glanceAs(ALICE, 'md-namespace-create', 'PIR::CLI::Mine'), (error: Error & { stderr?: string }) => /403|administrators/.test(String(error.stderr)));
    await glance('md-namespace-create', 'PIR::CLI::Private', '--visibility', 'private');
    await assert.rejects(glanceAs(ALICE, 'md-namespace-show', 'PIR::CLI::Private'), (error: Error & { stderr?: string }) => /404|not found/i.test(String(error.stderr)));
    assert.doesNotMatch(await glanceAs(ALICE, 'md-namespace-list'), /PIR::CLI::Private/);

    // Protected: nothing in it is deleted until it is unprotected.
    await assert.rejects(glance('md-namespace-delete', ns), (error: Error & { stderr?: string }) => /protected/.test(String(error.stderr)));
    await assert.rejects(glance('md-property-delete', ns, 'cores'), (error: Error & { stderr?: string }) => /protected/.test(String(error.stderr)));
    await glance('md-namespace-update', ns, '--protected', 'False');
    await glance('md-property-delete', ns, 'cores');
    await glance('md-object-delete', ns, 'Serial');
    await glance('md-tag-delete', ns, 'x');
    await glance('md-resource-type-deassociate', ns, 'OS::Cinder::Volume');
    await glance('md-namespace-delete', ns);
    await glance('md-namespace-delete', 'PIR::CLI::Private');
    assert.doesNotMatch(await glance('md-namespace-list'), /PIR::CLI::/);
  });

  it('lists and shows tasks', async () => {
    const list = await glance('task-list');
    const taskId = /([0-9a-f-]{36}\.\d+)/.exec(list)?.[1];
    assert.ok(taskId, list);
    assert.match(await glance('task-show', taskId), /api_image_import/);
  });

  it('glance image-update --visibility public: other projects\' matching subscriptions get image.updated, signed; a non-matching one gets nothing', async () => {
    const subscribe = async (token: string, body: Record<string, unknown>) => {
      const res = await fetch(`${apiUrl}/v2/webhooks`, { method: 'POST', headers: { 'x-auth-token': token, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 201, await res.clone().text());
      return await res.json() as { id: string; secret: string };
    };
    const receiver = async () => { const r = await new WebhookReceiver().start(); receivers.push(r); return r; };
    const disk = await makeImage(dir, 'raw', { size: '4M' });
    const id = field(await glanceAs(ALICE, 'image-create', '--name', 'cli-hook', '--disk-format', 'raw', '--container-format', 'bare', '--file', disk), 'id')!;
    const [bobById, bobPublic, carol] = [await receiver(), await receiver(), await receiver()];
    const subById = await subscribe(BOB, { url: bobById.url, events: ['image.updated'], filters: { image_ids: [id] } });
    const subPublic = await subscribe(BOB, { url: bobPublic.url, events: ['image.*'], filters: { visibility: ['public'], name_prefix: 'cli-hook' } });
    await subscribe(CAROL, { url: carol.url, events: ['image.updated'], filters: { tags: ['no-such-tag'] } }); // does not match
    // while the image is private, bob's project may not see it: an update reaches nobody
    await glanceAs(ALICE, 'image-update', '--property', 'stage=private', id);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(bobById.received.length + bobPublic.received.length, 0, 'no delivery for an image bob cannot see');
    // the real CLI makes it public (publicize_image is admin-only)
    assert.equal(field(await glance('image-update', '--visibility', 'public', id), 'visibility'), 'public');
    for (const [r, sub] of [[bobById, subById], [bobPublic, subPublic]] as const) {
      const [got] = await r.waitFor(1);
      const body = verify(sub.secret, got!);
      assert.equal(body.type, 'image.updated');
      assert.equal(body.data.id, id);
      assert.equal(body.data.visibility, 'public');
      assert.equal(body.data.owner, 'project-a');
      assert.match(String(got!.headers['webhook-id']), /^msg_/);
    }
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(carol.received.length, 0, 'the non-matching subscription gets nothing');
    assert.equal(bobById.received.length, 1, 'exactly one delivery');
  });
});
