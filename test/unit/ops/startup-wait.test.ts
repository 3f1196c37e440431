import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { MongoClient, MongoServerError } from 'mongodb';
import pino from 'pino';
import { loadConfig } from '../../../infra/config.js';
import { KAFKA, MONGODB, ServiceUnreachableError, StartupWait } from '../../../infra/startup-wait.js';
import { isUnreachable } from '../../../infra/unreachable.js';
import { freePort } from '../../support/pir-process.js'; // a loopback port nothing listens on


function refused(): Error {
  return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
}

/** A StartupWait on a fake clock: sleeping moves the clock, and every line it logs is kept. */
function fakeWait(seconds: number) {
  let now = 1_000_000;
  const sleeps: number[] = [];
  const lines: { level: number; msg: string; service?: string; cause?: string }[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => { lines.push(JSON.parse(line)); } });
  const wait = new StartupWait(seconds, log, async (ms) => { sleeps.push(ms); now += ms; }, () => now);
  return { wait, sleeps, lines, advance: (ms: number) => { now += ms; } };
}

describe('start-up waits for the services', () => {
  it('takes the real clients\' errors for an unreachable service as worth waiting for', async () => {
    const port = await freePort();
    const mongo = new MongoClient(`mongodb://127.0.0.1:${port}/x`, { serverSelectionTimeoutMS: 200 });
    const mongoError = await mongo.connect().then(() => null, (error: unknown) => error);
    await mongo.close();
    assert.ok(mongoError instanceof Error);
    assert.equal(mongoError.name, 'MongoServerSelectionError');
    assert.ok(isUnreachable(mongoError));

    const admin = new Kafka({ brokers: [`127.0.0.1:${port}`], retry: { retries: 0 }, logLevel: logLevel.NOTHING }).admin();
    const kafkaError = await admin.connect().then(() => null, (error: unknown) => error);
    assert.ok(kafkaError instanceof Error);
    assert.ok(isUnreachable(kafkaError), `${(kafkaError as Error).name}: ${(kafkaError as Error).message}`);
  });

  it('looks through the causes clients wrap errors in', () => {
    assert.ok(isUnreachable(refused()));
    assert.ok(isUnreachable({ name: 'KafkaJSNumberOfRetriesExceeded', originalError: { name: 'KafkaJSConnectionError' } }));
    assert.ok(isUnreachable(new Error('wrapped', { cause: refused() })));
    assert.ok(isUnreachable(new AggregateError([new Error('x'), refused()])));
    assert.ok(isUnreachable({ name: 'KafkaJSProtocolError', retriable: true, type: 'LEADER_NOT_AVAILABLE' }));
  });

  it('does not wait on errors that waiting cannot fix', () => {
    assert.equal(isUnreachable(new MongoServerError({ errmsg: 'Authentication failed.', code: 18, ok: 0 })), false);
    assert.equal(isUnreachable({ name: 'KafkaJSProtocolError', retriable: false, type: 'TOPIC_AUTHORIZATION_FAILED' }), false);
    assert.equal(isUnreachable(new TypeError('x is not a function')), false);
    assert.equal(isUnreachable(null), false);
    assert.equal(isUnreachable('ECONNREFUSED'), false);
  });

  it('runs a step again with a growing delay until its service answers, and says so', async () => {
    const { wait, sleeps, lines } = fakeWait(60);
    let calls = 0;
    const result = await wait.until(MONGODB, async () => {
      if (++calls < 4) throw refused();
      return 'started';
    });
    assert.equal(result, 'started');
    assert.equal(calls, 4);
    assert.deepEqual(sleeps, [500, 1000, 2000]);
    const waiting = lines.filter((l) => l.msg === 'waiting for the MongoDB-wire server');
    assert.equal(waiting.length, 3);
    assert.equal(waiting[0]!.level, 40);
    assert.match(waiting[0]!.cause!, /ECONNREFUSED/);
    assert.ok(lines.some((l) => l.msg === 'the MongoDB-wire server answered; start-up goes on'));
  });

  it('gives up at the deadline with an error that names the service and its setting', async () => {
    const { wait, sleeps } = fakeWait(10);
    let calls = 0;
    await assert.rejects(wait.until(KAFKA, async () => { calls++; throw refused(); }), (error: unknown) => {
      assert.ok(error instanceof ServiceUnreachableError);
      assert.equal(error.service, KAFKA);
      assert.match(error.message, /^Kafka did not answer within 10 s of start-up \(last error: Error: connect ECONNREFUSED/);
      assert.match(error.message, /PIR_KAFKA_BROKERS/);
      assert.match(error.message, /PIR_STARTUP_WAIT_SECONDS/);
      return true;
    });
    // 0.5 + 1 + 2 + 4 = 7.5 s, then the last 2.5 s (never past the deadline), then one more try.
    assert.deepEqual(sleeps, [500, 1000, 2000, 4000, 2500]);
    assert.equal(calls, 6);
  });

  it('shares one deadline across the steps of a start-up', async () => {
    const { wait, advance } = fakeWait(5);
    advance(6000); // the first service took the whole wait
    await assert.rejects(wait.until(MONGODB, async () => { throw refused(); }), ServiceUnreachableError);
  });

  it('fails at once on any other error, and with 0 s on the first refusal', async () => {
    const { wait, sleeps } = fakeWait(60);
    await assert.rejects(wait.until(MONGODB, async () => { throw new MongoServerError({ errmsg: 'Authentication failed.', code: 18, ok: 0 }); }), /Authentication failed/);
    assert.deepEqual(sleeps, []);
    const none = fakeWait(0);
    await assert.rejects(none.wait.until(MONGODB, async () => { throw refused(); }), ServiceUnreachableError);
    assert.deepEqual(none.sleeps, []);
  });

  it('is configured by PIR_STARTUP_WAIT_SECONDS (default 60, 0 to 3600)', () => {
    assert.equal(loadConfig({}).startupWaitSeconds, 60);
    assert.equal(loadConfig({ PIR_STARTUP_WAIT_SECONDS: '0' }).startupWaitSeconds, 0);
    assert.throws(() => loadConfig({ PIR_STARTUP_WAIT_SECONDS: '-1' }), /PIR_STARTUP_WAIT_SECONDS: "-1" must be a whole number from 0 to 3600/);
    assert.throws(() => loadConfig({ PIR_STARTUP_WAIT_SECONDS: 'soon' }), /PIR_STARTUP_WAIT_SECONDS/);
  });
});
