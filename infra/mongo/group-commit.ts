/**
 * Group commit for independent single-document writes: writes asked for while one batch is on
 * its way to the server go together in the next batch, as one `bulkWrite` (unordered). Each
 * caller still waits for its own write to be acknowledged (or to fail): nothing is acknowledged
 * before the server has it. Under load this turns N round trips (and, on FerretDB, N commands)
 * into one; alone, a write goes out at once, as it would without batching.
 */
import { MongoBulkWriteError, type AnyBulkWriteOperation, type Collection, type Document } from 'mongodb';

interface Pending<T extends Document> {
  op: AnyBulkWriteOperation<T>;
  resolve(): void;
  reject(error: unknown): void;
}

export class GroupCommit<T extends Document> {
  private queue: Pending<T>[] = [];
  private flushing = false;

  constructor(private readonly collection: Collection<T>, private readonly maxBatch = 500) {}

  write(op: AnyBulkWriteOperation<T>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ op, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        try {
          await this.collection.bulkWrite(batch.map((p) => p.op), { ordered: false });
          for (const p of batch) p.resolve();
        } catch (error) {
          // Unordered: the operations without a write error of their own were applied.
          // Anything else (a connection lost, a write concern not met) fails the whole batch.
          const failed = new Map<number, unknown>();
          const perOperation = error instanceof MongoBulkWriteError && !error.result?.getWriteConcernError();
          if (perOperation) {
            const errors = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
            for (const e of errors) if (e) failed.set(e.index, e);
          }
          batch.forEach((p, i) => {
            if (!perOperation || failed.size === 0) p.reject(error);
            else if (failed.has(i)) p.reject(failed.get(i));
            else p.resolve();
          });
        }
      }
    } finally {
      this.flushing = false;
    }
  }
}

/**
 * The same for lookups by _id: ids asked for while one lookup is on its way are fetched together
 * with one `find({_id: {$in: …}})`. Each caller gets the document as the server had it when its
 * batch ran, which began after the caller asked: a read never misses a write acknowledged before it.
 */
export class GroupRead<T extends Document & { _id: string }> {
  private queue = new Map<string, { resolve(doc: T | null): void; reject(error: unknown): void }[]>();
  private reading = false;

  constructor(private readonly collection: Collection<T>, private readonly maxBatch = 500) {}

  get(id: string): Promise<T | null> {
    return new Promise<T | null>((resolve, reject) => {
      const waiting = this.queue.get(id);
      if (waiting) waiting.push({ resolve, reject });
      else this.queue.set(id, [{ resolve, reject }]);
      if (!this.reading) void this.read();
    });
  }

  private async read(): Promise<void> {
    this.reading = true;
    try {
      while (this.queue.size > 0) {
        const batch = [...this.queue.entries()].slice(0, this.maxBatch);
        for (const [id] of batch) this.queue.delete(id);
        try {
          const ids = batch.map(([id]) => id);
          const docs = await this.collection.find((ids.length === 1 ? { _id: ids[0] } : { _id: { $in: ids } }) as never).toArray();
          const byId = new Map(docs.map((d) => [(d as unknown as T)._id, d as unknown as T]));
          for (const [id, waiters] of batch) for (const w of waiters) w.resolve(byId.get(id) ?? null);
        } catch (error) {
          for (const [, waiters] of batch) for (const w of waiters) w.reject(error);
        }
      }
    } finally {
      this.reading = false;
    }
  }
}
