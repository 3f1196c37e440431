/** `pir serve | api | worker`: PIR's server roles (configured by PIR_* variables, infra/config.ts). */
import { Command } from 'commander';
import { EXIT } from './exit-codes.js';

const ROLES = {
  serve: { roles: { api: true, worker: true }, about: 'run PIR: API and workers in one process (embedded mode unless PIR_KAFKA_BROKERS, PIR_REDIS_URL and PIR_MONGODB_URL are set)' },
  api: { roles: { api: true, worker: false }, about: 'run only the API role (distributed mode)' },
  worker: { roles: { api: false, worker: true }, about: 'run only the worker role: pipeline stages, dispatcher, sweepers (distributed mode)' },
} as const;

export function serverCommands(): Command[] {
  const roles = (Object.keys(ROLES) as (keyof typeof ROLES)[]).map((name) =>
    new Command(name)
      .description(ROLES[name].about)
      .addHelpText('after', '\nConfiguration comes from PIR_* environment variables; see README.md ("Modes and configuration").')
      .action(() => runRole(name)));
  const doctor = new Command('doctor')
    .description('check the configuration (PIR_* variables) and every dependency PIR needs; says what is wrong and how to fix it (exit 1 on a problem)')
    .action(async (_options: unknown, command: Command) => {
      const { runDoctor, formatFindings } = await import('../infra/telemetry/doctor.js');
      const findings = await runDoctor();
      const format = (command.optsWithGlobals() as { format?: string }).format;
      process.stdout.write(format === 'json' || format === 'yaml' ? `${JSON.stringify({ ok: findings.every((f) => f.level !== 'problem'), findings }, null, 2)}\n` : formatFindings(findings));
      process.exitCode = findings.some((f) => f.level === 'problem') ? EXIT.failure : EXIT.ok;
    });
  const cache = new Command('cache')
    .description('run a read-through image cache near the consumers: downloads from a local verified copy, every other call passed to the upstream PIR')
    .option('--upstream <url>', 'the upstream PIR (or PIR_CACHE_UPSTREAM)')
    .addHelpText('after', '\nConfiguration: PIR_HOST, PIR_PORT, PIR_DATA_DIR and PIR_CACHE_* variables; see README.md ("Cache role").')
    .action((options: { upstream?: string }) => runCache(options.upstream));
  return [...roles, cache, doctor];
}

/** `pir cache`: the cache role (cache/), which needs none of PIR's stores. */
async function runCache(upstreamOption: string | undefined): Promise<void> {
  const { ConfigError, brokers, loadConfig } = await import('../infra/config.js');
  const { createLogger } = await import('../infra/logger.js');
  const { loadCacheConfig } = await import('../cache/cache-config.js');
  const { startCache } = await import('../cache/run-cache.js');
  let pirConfig;
  let cacheConfig;
  try {
    // The cache uses Kafka (events) without Redis or MongoDB: the distributed-mode rule does not apply.
    pirConfig = { ...loadConfig({ ...process.env, PIR_KAFKA_BROKERS: '', PIR_REDIS_URL: '', PIR_MONGODB_URL: '' }), kafkaBrokers: brokers(process.env) };
    cacheConfig = loadCacheConfig(process.env, upstreamOption);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`pir: configuration error: ${error.message}\n`);
    process.exit(EXIT.usage);
  }
  const log = createLogger(pirConfig.logLevel, 'cache');
  const cache = await startCache(pirConfig, cacheConfig, log).catch((error: Error) => {
    process.stderr.write(`pir cache: ${listenFailure(error, pirConfig.metricsPort, pirConfig.host) ?? error.message}\n`);
    process.exit(EXIT.failure);
  });
  const onSignal = (signal: string) => {
    log.info({ signal }, 'signal received');
    exitIfStoppingHangs(log, pirConfig.shutdownTimeoutSeconds);
    cache.stop().then(() => process.exit(0), (error: unknown) => {
      log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  await new Promise<never>(() => {});
}

/** Starts the role and keeps the process running until SIGTERM or SIGINT. */
async function runRole(name: keyof typeof ROLES): Promise<void> {
  // Loaded here, not at the top: client commands start without the server's dependencies.
  const { ConfigError, distributedUrls, loadConfig } = await import('../infra/config.js');
  const { createLogger } = await import('../infra/logger.js');
  const configFailure = (error: unknown): never => {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`pir: configuration error: ${error.message}\n`);
    process.exit(EXIT.usage);
  };
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    configFailure(error);
  }
  if (name !== 'serve' && !distributedUrls(config!)) {
    process.stderr.write(`pir ${name}: the ${name} role runs on its own only in distributed mode; set PIR_KAFKA_BROKERS, PIR_REDIS_URL and PIR_MONGODB_URL, or use 'pir serve'.\n`);
    process.exit(EXIT.usage);
  }
  // Tracing starts before the runtime (fastify, kafkajs, ioredis, mongodb, BullMQ) is imported:
  // its ESM loader hook patches those modules only as they are first loaded.
  const { tracingWanted } = await import('../infra/telemetry/tracing-wanted.js');
  const stopTracing = tracingWanted() ? await (await import('../infra/telemetry/tracing.js')).startTracing(name) : null;
  const { startPir } = await import('../infra/runtime.js');
  const log = createLogger(config!.logLevel, name);
  const { ServiceUnreachableError } = await import('../infra/startup-wait.js');
  const { StartupError } = await import('../infra/startup-error.js');
  const pir = await startPir(config!, ROLES[name].roles, log).catch((error: unknown) => {
    const taken = listenFailure(error, config!.metricsPort, config!.host);
    if (taken) {
      process.stderr.write(`pir ${name}: ${taken}\n`);
      process.exit(EXIT.failure);
    }
    if (!(error instanceof ServiceUnreachableError || error instanceof StartupError)) return configFailure(error);
    process.stderr.write(`pir ${name}: ${error.message}\n`);
    process.exit(EXIT.failure);
  });
  if (stopTracing) log.info({ exporter: process.env.OTEL_TRACES_EXPORTER ?? 'otlp' }, 'tracing on');
  const onSignal = (signal: string) => {
    log.info({ signal }, 'signal received');
    exitIfStoppingHangs(log, config!.shutdownTimeoutSeconds);
    pir.stop().then(() => stopTracing?.()).then(() => process.exit(0), (error: unknown) => {
      log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  await new Promise<never>(() => {}); // runs until a signal ends the process
}

/**
 * A port PIR could not listen on, in one line that names the variable to change (a stack trace
 * said nothing a person could act on); null for any other error.
 */
export function listenFailure(error: unknown, metricsPort: number | null, host?: string): string | null {
  const e = error as NodeJS.ErrnoException & { address?: string; port?: number; hostname?: string };
  if (e?.syscall === 'getaddrinfo' && (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN' || e.code === 'EAI_FAIL')) {
    return `PIR_HOST=${host ?? e.hostname ?? '?'} does not resolve to an address (${e.code}); set PIR_HOST to an address of this machine, e.g. 127.0.0.1, 0.0.0.0 or ::`;
  }
  if (e?.syscall === 'listen' && e.code === 'EADDRNOTAVAIL') {
    return `PIR_HOST=${host ?? e.address ?? '?'} is not an address of this machine (EADDRNOTAVAIL); set PIR_HOST to one of its addresses, e.g. 127.0.0.1, 0.0.0.0 or ::`;
  }
  if (e?.syscall !== 'listen' || (e.code !== 'EADDRINUSE' && e.code !== 'EACCES')) return null;
  const variable = e.port !== undefined && e.port === metricsPort ? 'PIR_METRICS_PORT' : 'PIR_PORT';
  const where = `port ${e.port ?? '?'}${e.address ? ` of ${e.address}` : ''}`;
  return e.code === 'EADDRINUSE'
    ? `${where} is taken (EADDRINUSE): stop what listens there, or choose another port with ${variable}`
    : `${where} may not be listened on (EACCES: ports below 1024 need privileges); choose another port with ${variable}`;
}

/**
 * Stopping waits for requests and jobs in flight (up to 30 s) and then closes the clients; one
 * stuck on a service that went silent (no reset, no answer) would keep the process up forever.
 * Past PIR_SHUTDOWN_TIMEOUT_SECONDS the process exits 1 anyway (what it cut off is resumed by the
 * sweepers, as after a crash).
 */
function exitIfStoppingHangs(log: { error(o: object, msg: string): void }, seconds: number): void {
  setTimeout(() => {
    log.error({ seconds }, 'stopping did not finish in time; exiting anyway');
    process.exit(1);
  }, seconds * 1000).unref();
}
