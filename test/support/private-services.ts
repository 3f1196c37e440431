/**
 * Private instances of Redis, Kafka and FerretDB for tests that stop and start a service mid-run
 * (the shared ones on the default ports belong to every engineer's tests). They are started by
 * infra/local/services.sh itself with its own state directory (PIR_LOCAL_DIR) and free ports, so
 * they run exactly like the shared ones; data directories survive a restart, as a server's would.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './pir-process.js';

const run = promisify(execFile);
/** The source tree's script (dist/test/support → ../../../infra). */
const SERVICES_SH = fileURLToPath(new URL('../../../infra/local/services.sh', import.meta.url));

export type PrivateService = 'redis' | 'kafka' | 'ferretdb';

export class PrivateServices {
  private constructor(readonly dir: string, private readonly ports: Record<string, number>) {}

  static async create(): Promise<PrivateServices> {
    const dir = await mkdtemp(join(tmpdir(), 'pir-private-services-'));
    const ports = { redis: await freePort(), kafka: await freePort(), kafkaController: await freePort(), ferretdb: await freePort() };
    return new PrivateServices(dir, ports);
  }

  get redisUrl(): string { return `redis://127.0.0.1:${this.ports.redis}`; }
  get kafkaBroker(): string { return `127.0.0.1:${this.ports.kafka}`; }
  mongodbUrl(db: string): string { return `mongodb://127.0.0.1:${this.ports.ferretdb}/${db}`; }

  private env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      PIR_LOCAL_DIR: this.dir,
      PIR_REDIS_PORT: String(this.ports.redis),
      PIR_REDIS_APPENDONLY: 'yes',
      PIR_KAFKA_PORT: String(this.ports.kafka),
      PIR_KAFKA_CONTROLLER_PORT: String(this.ports.kafkaController),
      PIR_FERRETDB_PORT: String(this.ports.ferretdb),
      PIR_FERRETDB_DEBUG_ADDR: '-',
      KAFKA_HEAP_OPTS: '-Xms128m -Xmx384m',
    };
  }

  private async services(command: 'start' | 'stop' | 'clean', name: PrivateService): Promise<void> {
    try {
      await run('bash', [SERVICES_SH, command, name], { env: this.env(), timeout: 180_000 });
    } catch (error) {
      const e = error as Error & { stderr?: string };
      throw new Error(`services.sh ${command} ${name} (private, ${this.dir}) failed: ${e.stderr ?? e.message}`);
    }
  }

  start(name: PrivateService): Promise<void> { return this.services('start', name); }
  stop(name: PrivateService): Promise<void> { return this.services('stop', name); }

  /** Stops the service, keeps it down for `downMs`, starts it again on the same port and data. */
  async restart(name: PrivateService, downMs = 2000): Promise<void> {
    await this.stop(name);
    await new Promise((r) => setTimeout(r, downMs));
    await this.start(name);
  }

  async startAll(): Promise<void> {
    await Promise.all((['redis', 'ferretdb', 'kafka'] as const).map((s) => this.start(s)));
  }

  async destroy(): Promise<void> {
    for (const s of ['kafka', 'ferretdb', 'redis'] as const) await this.services('clean', s).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}
