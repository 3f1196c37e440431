/**
 * `pir webhook …` and `pir job show` against a `pir serve` started here (output in pipes): add
 * prints the secret once, a real receiver gets signed deliveries (standardwebhooks), list,
 * show, update, ping, deliveries, redeliver (same webhook-id), rotate (both secrets sign),
 * remove; `pir job show` prints the stage timeline of a run and of a refusal; exit codes.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { makeTempDir, removeDir } from '../support/images.js';
import { runCli, type CliResult } from '../support/pir-cli.js';
import { freePort, startPirProcess, testLogDir, waitFor, type PirProcess } from '../support/pir-process.js';
import { WebhookReceiver, verify } from '../support/webhook-receiver.js';

const TOKEN = 'e2e-cli-webhooks-token-0123456789abcdef';
const logDir = testLogDir('cli-webhooks');

describe('pir webhook and pir job against pir serve', () => {
  let dir: string;
  let pir: PirProcess;
  let cli: (args: string[]) => Promise<CliResult>;
  const receiver = new WebhookReceiver();

  before(async () => {
    dir = await makeTempDir('pir-e2e-cli-webhooks-');
    const home = join(dir, 'home');
    await mkdir(home);
    const port = await freePort();
    pir = await startPirProcess('serve', {
      PIR_DATA_DIR: join(dir, 'data'), PIR_PORT: String(port), PIR_ADMIN_TOKEN: TOKEN,
      PIR_EGRESS_ALLOWLIST: '127.0.0.1/32', PIR_WEBHOOK_RETRY_SCHEDULE: '200ms',
    }, logDir, 'serve');
    await receiver.start();
    cli = (args) => runCli(args, { HOME: home, PIR_URL: `http://127.0.0.1:${port}`, PIR_TOKEN: TOKEN });
  });
  after(async () => {
    await receiver.stop();
    await pir?.stop();
    if (dir) await removeDir(dir);
  });

  const json = (r: CliResult) => {
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  };

  it('add, list, show, update, ping, deliveries, redeliver, rotate, remove', async () => {
    const help = await cli(['webhook', '--help']);
    assert.equal(help.code, 0);
    for (const sub of ['add', 'list', 'show', 'update', 'remove', 'ping', 'deliveries', 'redeliver', 'rotate']) assert.match(help.stdout, new RegExp(`^\\s+${sub}\\b`, 'm'));

    const added = await cli(['webhook', 'add', receiver.url, '--event', 'image.active', '--event', 'image.killed', '--name-prefix', 'cli-wh-', '--description', 'from the cli']);
    assert.equal(added.code, 0, added.stderr);
    const secret = /^secret\s+(whsec_\S+)$/m.exec(added.stdout)?.[1];
    assert.ok(secret, added.stdout);
    assert.match(added.stderr, /shows it only here/);
    const id = /^id\s+(\S+)$/m.exec(added.stdout)![1]!;
    assert.match(added.stdout, /^filters\s+\{"name_prefix":"cli-wh-"\}$/m);

    const list = await cli(['webhook', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^id\s+url\s+events\s+enabled/);
    assert.match(list.stdout, new RegExp(`^${id}\\s+${receiver.url.replace(/[./]/g, '\\$&')}\\s+image\\.active,image\\.killed\\s+true\\s+0`, 'm'));
    const shown = json(await cli(['webhook', 'show', id, '--format', 'json']));
    assert.equal(shown.description, 'from the cli');
    assert.equal(shown.secret, undefined, 'the secret is not shown again');
    const yamlList = parseYaml((await cli(['webhook', 'list', '--format', 'yaml'])).stdout) as { id: string }[];
    assert.ok(yamlList.some((w) => w.id === id));

    const updated = json(await cli(['webhook', 'update', id, '--event', 'image.active', '--endpoint', `${receiver.url}?v=2`, '--format', 'json']));
    assert.deepEqual(updated.events, ['image.active']);
    assert.equal(updated.url, `${receiver.url}?v=2`);
    assert.equal((await cli(['webhook', 'update', id])).code, 2, 'nothing to change is a usage error');

    const ping = json(await cli(['webhook', 'ping', id, '--format', 'json']));
    assert.match(ping.id, /^msg_/);
    const [first] = await receiver.waitFor(1);
    assert.equal(verify(secret, first!).type, 'webhook.ping');
    await waitFor(async () => json(await cli(['webhook', 'deliveries', id, '--format', 'json']))[0]?.status === 'delivered', 15_000, 'the ping delivered');
    const table = await cli(['webhook', 'deliveries', id]);
    assert.match(table.stdout, /^id\s+event\s+status\s+attempts\s+last_answer/);
    assert.match(table.stdout, new RegExp(`^${ping.id}\\s+webhook\\.ping\\s+delivered\\s+1\\s+HTTP 200`, 'm'));

    const again = await cli(['webhook', 'redeliver', id, ping.id]);
    assert.equal(again.code, 0, again.stderr);
    const [, second] = await receiver.waitFor(2);
    assert.equal(second!.headers['webhook-id'], ping.id, 'a redelivery keeps the webhook-id');

    const rotated = await cli(['webhook', 'rotate', id, '--format', 'json']);
    const newSecret = json(rotated).secret as string;
    assert.match(newSecret, /^whsec_/);
    assert.notEqual(newSecret, secret);
    await cli(['webhook', 'ping', id]);
    const [, , third] = await receiver.waitFor(3);
    assert.equal(verify(newSecret, third!).type, 'webhook.ping');
    assert.equal(verify(secret, third!).type, 'webhook.ping', 'the old secret still signs during the grace period');

    const removed = await cli(['webhook', 'remove', id]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stderr, new RegExp(`removed webhook ${id}`));
    const gone = await cli(['webhook', 'show', id]);
    assert.equal(gone.code, 4, 'not found is exit 4');
    assert.equal((await cli(['webhook', 'redeliver', id, 'msg_nope'])).code, 4);
    assert.equal((await runCli(['webhook', 'list'], { PIR_URL: 'http://127.0.0.1:1', PIR_TOKEN: TOKEN, HOME: dir })).code, 1, 'unreachable is exit 1');
  });

  it('job show: the stage timeline of an active image and the reason of a refused one', async () => {
    const raw = join(dir, 'job.raw');
    await writeFile(raw, randomBytes(1024 * 1024));
    const created = json(await cli(['image', 'create', '--name', 'cli-job', '--disk-format', 'raw', '--file', raw, '--wait', '--format', 'json']));
    const r = await cli(['job', 'show', created.id]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^image ${created.id}  run 1 \\(upload\\)  active$`, 'm'));
    assert.match(r.stdout, /^stage\s+status\s+attempts\s+start\s+duration\s+timeline$/m);
    for (const stage of ['unpack', 'inspect', 'checksum', 'promote']) assert.match(r.stdout, new RegExp(`^${stage}\\s+done\\s+1\\s+\\+\\d+ ms\\s+\\d+ ms\\s+ *█+$`, 'm'));
    const t = json(await cli(['job', 'show', `${created.id}.1`, '--format', 'json']));
    assert.deepEqual(t.stages.map((s: { stage: string }) => s.stage), ['unpack', 'inspect', 'checksum', 'promote']);
    assert.equal(t.run, 1);
    assert.equal((await cli(['job', 'show', `${created.id}.7`])).code, 4, 'a run that is not kept');

    const bad = join(dir, 'bad.qcow2');
    await writeFile(bad, Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(508)]));
    const refused = await cli(['image', 'create', '--name', 'cli-job-bad', '--disk-format', 'qcow2', '--file', bad, '--wait', '--format', 'json']);
    assert.equal(refused.code, 3, refused.stderr);
    const badId = /image ([0-9a-f-]{36})/.exec(refused.stderr)![1]!;
    const shown = await cli(['job', 'show', badId]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /killed$/m);
    assert.match(shown.stdout, /^refused at \w+: .+ \(\w+\)$/m);
    assert.equal((await cli(['job', 'show', '00000000-0000-0000-0000-000000000000'])).code, 4);
  });
});
