import { Worker } from 'node:worker_threads';
import { CairnError, describe } from '../lib/errors.ts';
import { isEngineOutOfMemory } from './duckdbLimits.ts';
import type { ParquetWriterOptions } from './parquetWindowWriter.ts';

export type WriterRequest =
  | { type: 'stage'; first: number; packed: Uint8Array; ends: Uint32Array }
  | {
      type: 'write';
      id: number;
      first: number;
      last: number;
      packed: Uint8Array | undefined;
      ends: Uint32Array | undefined;
      receiptsPath: string;
      logsPath: string;
    }
  | { type: 'close' };

export type WriterReply =
  | { id: number; ok: true; receiptRows: number; logRows: number }
  | { id: number; ok: false; message: string }
  /** The window was not (fully) staged, as after a failed staging: send its entries. */
  | { id: number; ok: false; needsEntries: true; message: string };

interface Pending {
  resolve: (rows: { receiptRows: number; logRows: number }) => void;
  reject: (err: unknown) => void;
  /** Sends the window again with its entries; undefined once they were sent (one retry at most). */
  resend: (() => void) | undefined;
  first: number;
  last: number;
}

/** Packs entries into one transferable buffer (a view may sit in a larger buffer a clone would copy whole). */
function pack(entries: readonly Uint8Array[]): {
  packed: Uint8Array<ArrayBuffer>;
  ends: Uint32Array<ArrayBuffer>;
} {
  let size = 0;
  for (const e of entries) size += e.length;
  const packed = new Uint8Array(size);
  const ends = new Uint32Array(entries.length);
  let at = 0;
  for (let i = 0; i < entries.length; i++) {
    packed.set(entries[i]!, at);
    at += entries[i]!.length;
    ends[i] = at;
  }
  return { packed, ends };
}

/**
 * The parent's side of the archive writer thread: a worker with its own DuckDB instance that stages
 * acknowledged blocks and writes a window's Parquet files (parquetWindowWriter.ts), so that this
 * work runs on another core than the receipt store's write path. Requests run in order. Any engine
 * failure, a crash of the thread or its exit rejects the write with a typed IO_FATAL error (the
 * store latches it like any write-path I/O error); after the thread died every later write fails
 * with that same error. `close()` lets the queued work finish, then stops the thread.
 */
export class ArchiveWriterThread {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: CairnError | undefined;
  private closing: Promise<void> | undefined;
  private readonly exited: Promise<void>;
  /** Mirror of the thread's staged range [stagedFirst, stagedNext) (requests run in order). */
  private stagedFirst = 0;
  private stagedNext = 0;

  private constructor(
    private readonly worker: Worker,
    private readonly options: ParquetWriterOptions,
  ) {
    worker.unref();
    worker.on('message', (m: WriterReply) => this.onReply(m));
    worker.on('error', (err) => this.fail(`failed: ${describe(err)}`, err));
    this.exited = new Promise((resolve) => {
      worker.once('exit', (code) => {
        if (this.closing === undefined) this.fail(`exited unexpectedly (code ${code})`);
        else this.fail('was closed');
        resolve();
      });
    });
  }

  /**
   * Starts the thread. `script`: a prebuilt JavaScript bundle of archiveWriterWorker.ts, for a
   * process that is itself bundled (no TypeScript sources beside it); default: the TypeScript module
   * beside this one.
   */
  static start(options: ParquetWriterOptions, script?: string): ArchiveWriterThread {
    if (script !== undefined) {
      return new ArchiveWriterThread(new Worker(script, { workerData: options }), options);
    }
    // The thread runs a TypeScript module; tsx (a runtime dependency) loads it whether or not this
    // process was started with tsx's loader.
    const entry = new URL('./archiveWriterWorker.ts', import.meta.url).href;
    const tsx = import.meta.resolve('tsx/esm/api');
    const source =
      `const { tsImport } = await import(${JSON.stringify(tsx)});\n` +
      `await tsImport(${JSON.stringify(entry)}, ${JSON.stringify(entry)});\n`;
    const url = new URL(`data:text/javascript,${encodeURIComponent(source)}`);
    return new ArchiveWriterThread(new Worker(url, { workerData: options }), options);
  }

  /** Offers blocks [first, first + entries.length) for staging. Never throws: a failure shows at the next write. */
  stage(first: number, entries: readonly Uint8Array[]): void {
    if (this.failure || this.closing || entries.length === 0) return;
    if (first !== this.stagedNext) this.stagedFirst = first;
    this.stagedNext = first + entries.length;
    const { packed, ends } = pack(entries);
    this.post({ type: 'stage', first, packed, ends }, [packed.buffer, ends.buffer]);
  }

  /**
   * Writes the files of blocks [first, last]. `entries` is called (synchronously, at most once) only
   * when the thread has not staged the whole window.
   */
  write(
    first: number,
    last: number,
    entries: () => readonly Uint8Array[],
    receiptsPath: string,
    logsPath: string,
  ): Promise<{ receiptRows: number; logRows: number }> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new CairnError('CLOSED', 'archive writer thread is closed'));
    const covered = this.stagedFirst === first && this.stagedNext > last;
    const given = covered ? undefined : pack(entries());
    if (covered && this.stagedNext > last + 1) this.stagedFirst = last + 1;
    else {
      this.stagedFirst = last + 1;
      this.stagedNext = last + 1;
    }
    const send = (
      entriesGiven: { packed: Uint8Array<ArrayBuffer>; ends: Uint32Array<ArrayBuffer> } | undefined,
      p: Pending,
    ): void => {
      const id = this.nextId++;
      this.pending.set(id, p);
      this.worker.ref();
      const request: WriterRequest = {
        type: 'write',
        id,
        first,
        last,
        packed: entriesGiven?.packed,
        ends: entriesGiven?.ends,
        receiptsPath,
        logsPath,
      };
      this.post(request, entriesGiven ? [entriesGiven.packed.buffer, entriesGiven.ends.buffer] : []);
    };
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject, resend: undefined, first, last };
      // A window the thread should have staged but has not (a staging failed: a damaged entry, an
      // engine error on an append) is written once more from `entries` (the WAL, which holds every
      // block of it): a failure of the in-memory stage alone does not poison the store.
      if (covered) {
        p.resend = () => {
          p.resend = undefined;
          let again: ReturnType<typeof pack>;
          try {
            again = pack(entries());
          } catch (err) {
            reject(err);
            return;
          }
          send(again, p);
        };
      }
      send(given, p);
    });
  }

  private post(m: WriterRequest, transfer: ArrayBuffer[]): void {
    try {
      this.worker.postMessage(m, transfer);
    } catch (err) {
      this.fail(`refused a request: ${describe(err)}`, err);
    }
  }

  private onReply(m: WriterReply): void {
    const p = this.pending.get(m.id);
    if (p === undefined) return;
    this.pending.delete(m.id);
    if (this.pending.size === 0) this.worker.unref();
    if (m.ok) p.resolve({ receiptRows: m.receiptRows, logRows: m.logRows });
    else if ('needsEntries' in m && p.resend) p.resend();
    else p.reject(this.engineFailure(p, m.message));
  }

  /**
   * The error of a failed window write. Running out of memory and spill space is told apart: the
   * store cannot archive that window with these limits, and the message says which to raise (the
   * window stays in the receipt WAL; a reopen with higher limits archives it).
   */
  private engineFailure(p: Pending, message: string): CairnError {
    if (!isEngineOutOfMemory(message)) {
      return new CairnError('IO_FATAL', `archive engine (DuckDB, writer thread) failed: ${message}`, {
        details: { reason: message },
      });
    }
    const { memoryLimit, maxSpillSize } = this.options;
    return new CairnError(
      'RESOURCE_EXHAUSTED',
      `archive writer (DuckDB) ran out of memory and spill space writing blocks ${p.first}..${p.last} ` +
        `(memoryLimit ${memoryLimit}, maxSpillSize ${maxSpillSize ?? "DuckDB's default"}): raise them ` +
        '(ReceiptStoreOptions.duckdb) and reopen; the window stays in the receipt WAL and is archived ' +
        `at the next open. DuckDB: ${message}`,
      { details: { reason: message, first: p.first, last: p.last, memoryLimit, maxSpillSize } },
    );
  }

  private fail(what: string, cause?: unknown): void {
    this.failure ??= new CairnError('IO_FATAL', `archive writer thread ${what}`, { cause });
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }

  /** Waits for queued requests, then stops the thread. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Writes already posted run before 'close' (requests run in order); their replies arrive first.
      this.worker.ref();
      this.post({ type: 'close' }, []);
      await this.exited;
    })();
    return this.closing;
  }
}
