/** The `pir` command: PIR's server roles and its command-line client. */
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { completionScript } from './completion.js';
import { seconds } from './args.js';
import { currentConnection, markFinished } from './context.js';
import { signalled } from './interrupt.js';
import { describeError, EXIT, EXIT_CODES_HELP } from './exit-codes.js';
import { imageCommand } from './image-commands.js';
import { jobCommand } from './job-commands.js';
import { galleryCommand } from './gallery-commands.js';
import { FORMATS } from './output.js';
import { serverCommands } from './server-commands.js';
import { webhookCommand } from './webhook-commands.js';
import { metadefCommand } from './metadef-commands.js';
import { CONFIG_HELP, DEFAULT_URL } from './settings.js';

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export function buildProgram(): Command {
  const program = new Command('pir')
    .description('PIR (Pappaya Image Repository): run the servers, or manage images on one')
    .version(version(), '-V, --version')
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ outputError: (text, write) => write(text.startsWith('error:') ? `pir: ${text}` : text) })
    .option('--url <url>', `PIR's address (PIR_URL; default ${DEFAULT_URL})`)
    .option('--token <token>', 'the X-Auth-Token (PIR_TOKEN)')
    .option('--profile <name>', 'a profile of the config file (PIR_PROFILE)')
    .option('--os-auth-url <url>', 'Keystone v3 URL for a password login (OS_AUTH_URL)')
    .option('--os-username <name>', 'Keystone user (OS_USERNAME)')
    .option('--os-password <password>', 'Keystone password (OS_PASSWORD)')
    .option('--os-project-name <name>', 'Keystone project to scope the token to (OS_PROJECT_NAME)')
    .option('--os-project-id <id>', 'Keystone project id, instead of its name (OS_PROJECT_ID)')
    .option('--os-user-domain-name <name>', "the user's domain (OS_USER_DOMAIN_NAME; default Default)")
    .option('--os-project-domain-name <name>', "the project's domain (OS_PROJECT_DOMAIN_NAME; default Default)")
    .option('--os-interface <interface>', 'catalog interface of the image endpoint (OS_INTERFACE; default public)')
    .option('--os-region-name <region>', 'catalog region (OS_REGION_NAME)')
    .option('--http-timeout <seconds>', 'fail a request when its connection carries nothing this long (PIR_HTTP_TIMEOUT; default 600)', seconds)
    .addOption(new Option('--format <format>', 'output: table for people, json or yaml for scripts').choices(FORMATS).default('table'))
    .addHelpText('after', `\n${CONFIG_HELP}\n\n${EXIT_CODES_HELP}\n\nExamples:\n  pir serve\n  pir image create --name debian-12 --disk-format qcow2 --file debian-12.qcow2 --wait\n  pir image list --filter disk_format=qcow2 --all --format json\n  pir image download <id> --file out.qcow2\n  pir image batch ./images --pattern '*.qcow2' --parallel 4\n  source <(pir completion bash)`);
  for (const command of serverCommands()) program.addCommand(command);
  program.addCommand(imageCommand());
  program.addCommand(webhookCommand());
  program.addCommand(jobCommand());
  program.addCommand(galleryCommand());
  program.addCommand(metadefCommand());
  program.addCommand(new Command('completion')
    .description('print a shell completion script: source <(pir completion bash); for zsh, source <(pir completion zsh) in ~/.zshrc')
    .addArgument(new Command().createArgument('<shell>', 'bash or zsh').choices(['bash', 'zsh']))
    .action((shell: 'bash' | 'zsh') => { process.stdout.write(completionScript(program, shell)); }));
  return program;
}

/** Commander's own exits: help and version are success; everything else it refuses is usage. */
function commanderExit(error: CommanderError): number {
  if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return EXIT.ok;
  // `pir help` asked for help (0); `pir image` without a subcommand is shown help as an error.
  if (error.code === 'commander.help') return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (error.code === 'commander.executeSubCommandAsync') return error.exitCode;
  return EXIT.usage;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Every subcommand inherits exitOverride and the output settings from its parent at creation;
  // the ones built before were added with addCommand, so apply them down the tree.
  const apply = (c: Command) => {
    c.exitOverride().showHelpAfterError('(add --help for usage)').configureOutput(program.configureOutput());
    c.commands.forEach(apply);
  };
  program.commands.forEach(apply);
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT.ok;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) return commanderExit(error);
    // A signal cut the work short: its handler says what was left, and exits.
    if (signalled()) return new Promise<number>(() => {});
    const { code, message } = describeError(error, currentConnection);
    process.stderr.write(`pir: ${message}\n`);
    return code;
  }
}

/** Resolves once what pir wrote to standard output is out: a pipe takes it asynchronously, and exit would cut it. */
function stdoutFlushed(): Promise<void> {
  return new Promise((resolve) => process.stdout.write('', () => resolve()));
}

// A reader that stops early (`pir image list | head`, `pir … 2>&1 | head`) closes the pipe: end quietly, with the
// code a shell expects of a command SIGPIPE ended, not with Node's unhandled-error stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT.brokenPipe);
    throw error;
  });
}

main(process.argv.slice(2)).finally(markFinished).then(async (code) => {
  await stdoutFlushed();
  if (!signalled()) process.exit(code); // else the signal's handler exits, once it said what was left
}, (error: unknown) => {
  process.stderr.write(`pir: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(EXIT.failure);
});
