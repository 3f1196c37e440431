/** What a client command needs: a connected client and the output format, from the global flags. */
import type { Command } from 'commander';
import { PirClient } from '../client/index.js';
import { parseFormat, type Format } from './output.js';
import { connect, type ConnectionFlags } from './settings.js';

export interface CommandContext {
  client: PirClient;
  format: Format;
  url: string;
}

/** The last connection (PIR's URL, and whether its token came from a Keystone login), for error messages. */
export let currentConnection: { url: string; keystone: boolean } | undefined;

let finished = false;
let guarded = false;

/** Called when the command's work settled (see the exit guard in contextOf). */
export function markFinished(): void {
  finished = true;
}

export async function contextOf(command: Command): Promise<CommandContext> {
  if (!guarded) {
    guarded = true;
    // A client command whose work stopped without settling (nothing left to wait for: a bug)
    // must not pass for a success.
    process.on('exit', (code) => {
      if (!finished && code === 0) {
        process.stderr.write('pir: internal error: the command stopped before it finished\n');
        process.exitCode = 1;
      }
    });
  }
  const flags = command.optsWithGlobals() as ConnectionFlags & { format?: string };
  const format = parseFormat(flags.format);
  const connection = await connect(flags);
  currentConnection = { url: connection.url, keystone: connection.keystone };
  return { client: new PirClient(connection.url, connection.token, { idleTimeoutMs: connection.idleTimeoutMs }), format, url: connection.url };
}
