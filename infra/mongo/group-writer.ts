/**
 * Group commit for single-document writes (infra/group-commit.ts): callers queue one write each;
 * whatever is queued while the previous command is in flight goes out as the next single
 * bulkWrite (unordered). Each caller's promise settles with its own statement's outcome, so a write
 * is acknowledged only once the server has it (nothing is buffered past a crash).
 *
 * Why: on FerretDB every command costs a round trip and a transaction; 100 webhook deliveries
 * finishing together were 100 update commands, now a handful.
 */
import { GroupCommit } from '../group-commit.js';
import { MongoBulkWriteError, MongoNetworkError, MongoServerError, type AnyBulkWriteOperation, type Collection, type Document, type MongoClient } from 'mongodb';
import { forgetCommand, lastRequestId, stuckCommands } from './stuck-commands.js';

/**
 * Statements per command. FerretDB 1.24 (PostgreSQL backend) stops answering for good, on every
 * connection, after one update command of 64 statements (measured: 48 pass, 64 and 100 hang);
 * 16 keeps far from that and still turns 100 writes into 7 commands.
 */
export const MAX_STATEMENTS = 16;

/** Deletes documents by `_id`, MAX_STATEMENTS per command; returns how many were there. */
export async function deleteByIds(collection: Collection<any>, ids: readonly unknown[]): Promise<number> {
  let deleted = 0;
  for (let i = 0; i < ids.length; i += MAX_STATEMENTS) {
    const batch = ids.slice(i, i + MAX_STATEMENTS);
    deleted += (await collection.bulkWrite(batch.map((_id) => ({ deleteOne: { filter: { _id } } })), { ordered: false })).deletedCount;
  }
  return deleted;
}

/**
 * The server's error code and message of a failed write, whether the command failed
 * (MongoServerError) or only its statement (the driver's WriteError, which GroupWriter rejects
 * that statement's caller with; the driver does not export its class).
 */
export function writeFailure(err: unknown): { code: number | undefined; message: string } {
  if (err instanceof MongoServerError) return { code: typeof err.code === 'number' ? err.code : undefined, message: err.message };
  if (typeof err === 'object' && err !== null && 'errmsg' in err) {
    const { code, errmsg } = err as { code?: unknown; errmsg?: unknown };
    return { code: typeof code === 'number' ? code : undefined, message: String(errmsg ?? '') };
  }
  return { code: undefined, message: err instanceof Error ? err.message : String(err) };
}

interface Pending<T extends Document> {
  op: AnyBulkWriteOperation<T>;
  resolve(): void;
  reject(error: unknown): void;
}

/** How often a batch still in flight looks for a command of its own that the driver will never settle. */
export const STUCK_CHECK_MS = 1000;

/**
 * `sent`, or a MongoNetworkError once one of its commands (on `collection`, started after
 * `after`) is stuck on a closed connection (infra/mongo/stuck-commands.ts): the write's outcome
 * is then unknown, as after any dropped connection.
 */
function settledOrStuck<R>(sent: Promise<R>, client: MongoClient, collection: Collection<any>, after: number): Promise<R> {
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    const look = () => {
      const hung = stuckCommands(client).find((c) => c.requestId > after && c.collection === collection.collectionName && c.database === collection.dbName);
      if (!hung) return void (timer = setTimeout(look, STUCK_CHECK_MS));
      forgetCommand(client, hung.requestId);
      reject(new MongoNetworkError(`the connection closed while a ${hung.command} on ${collection.collectionName} was being sent, and the MongoDB driver would wait for it forever; its outcome is unknown`));
    };
    timer = setTimeout(look, STUCK_CHECK_MS);
  });
  return Promise.race([sent, stuck]).finally(() => clearTimeout(timer));
}

export class GroupWriter<T extends Document> extends GroupCommit<Pending<T>> {
  /** `client`: the collection's, which must follow its commands (monitoredClient) for a stuck batch to be given up. */
  constructor(private readonly collection: Collection<T>, private readonly client: MongoClient, private readonly maxBatch = MAX_STATEMENTS) {
    super();
  }

  write(op: AnyBulkWriteOperation<T>): Promise<void> {
    return new Promise<void>((resolve, reject) => this.enqueue({ op, resolve, reject }));
  }

  protected take(): Pending<T>[] {
    return this.queue.splice(0, this.maxBatch);
  }

  protected async commit(batch: Pending<T>[]): Promise<void> {
    try {
      const after = lastRequestId(this.client);
      await settledOrStuck(this.collection.bulkWrite(batch.map((p) => p.op), { ordered: false }), this.client, this.collection, after);
      for (const p of batch) p.resolve();
    } catch (error) {
      // Unordered: the statements without an error of their own were applied.
      const failed = new Map<number, unknown>();
      if (error instanceof MongoBulkWriteError && error.writeErrors) {
        const errors = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
        for (const e of errors) failed.set(e.index, e);
      }
      // Each failed statement is rejected with its own error (its code: 11000 for a duplicate _id).
      const perStatement = failed.size > 0 && error instanceof MongoBulkWriteError && !error.writeConcernError;
      batch.forEach((p, i) => (!perStatement ? p.reject(error) : failed.has(i) ? p.reject(failed.get(i)) : p.resolve()));
    }
  }
}
