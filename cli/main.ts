/** The `pir` command. */
import { ConfigError, distributedUrls, loadConfig } from '../infra/config.js';
import { createLogger } from '../infra/logger.js';
import { startPir, type Roles } from '../infra/runtime.js';

const USAGE = `Usage: pir <command>

Commands:
  serve    run PIR: API and workers in one process (embedded mode unless the
           PIR_KAFKA_BROKERS, PIR_REDIS_URL and PIR_MONGODB_URL are set)
  api      run only the API role (distributed mode)
  worker   run only the worker role: pipeline stages, dispatcher, sweepers (distributed mode)
  help     show this text

Configuration comes from PIR_* environment variables; see README.md.`;

async function main(argv: string[]): Promise<number> {
  const command = argv[0] ?? 'help';
  const roles: Record<string, Roles> = {
    serve: { api: true, worker: true },
    api: { api: true, worker: false },
    worker: { api: false, worker: true },
  };
  if (command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (!(command in roles)) {
    process.stderr.write(`pir: unknown command '${command}'\n\n${USAGE}\n`);
    return 2;
  }
  const config = loadConfig();
  if (command !== 'serve' && !distributedUrls(config)) {
    process.stderr.write(`pir ${command}: the ${command} role runs on its own only in distributed mode; set PIR_KAFKA_BROKERS, PIR_REDIS_URL and PIR_MONGODB_URL, or use 'pir serve'.\n`);
    return 2;
  }
  const log = createLogger(config.logLevel, command);
  const pir = await startPir(config, roles[command], log);
  const onSignal = (signal: string) => {
    log.info({ signal }, 'signal received');
    pir.stop().then(() => process.exit(0), (error: unknown) => {
      log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  return -1; // keep running
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exit(code);
}, (error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`pir: configuration error: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`pir: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
