import { Worker } from 'node:worker_threads';
import { CairnError, describe } from '../lib/errors.ts';
import { isEngineOutOfMemory } from './duckdbLimits.ts';
import type { ParquetWriterOptions } from './parquetWindowWriter.ts';

export type WriterRequest =
  /** With an `id`, the thread answers when the blocks are staged (or why not) instead of holding a failure. */
  | { type: 'stage'; first: number; packed: Uint8Array; ends: Uint32Array; id?: number }
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
  | { id: number; ok: true; staged: true }
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

/**
 * Bytes of WAL entries one message carries when a window is sent to the thread (it was not staged):
 * the window is read from the WAL and staged piece by piece, each piece staged before the next is
 * read, so neither thread holds more than about this much of it in JavaScript memory.
 */
const SEND_PIECE_BYTES = 8 << 20;
/** Blocks of the first piece (later pieces are sized from the bytes per block seen). */
const FIRST_PIECE_BLOCKS = 16;

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
 * work runs on another core than the receipt store's write path. Requests run in order. An engine
 * out of memory and spill space rejects the write with RESOURCE_EXHAUSTED naming the limits; any
 * other engine failure, a crash of the thread or its exit with a typed IO_FATAL error (the store
 * latches either like any write-path I/O error); after the thread died every later write fails
 * with that same error. `close()` lets the queued work finish, then stops the thread.
 */
export class ArchiveWriterThread {
  private readonly pending = new Map<number, Pending>();
  /** Pieces of a window being sent, waiting for the thread to have staged them. */
  private readonly stageAcks = new Map<
    number,
    { resolve: () => void; reject: (err: unknown) => void; window: Pending }
  >();
  /**
   * Requests made while a window is sent piece by piece, posted once it is (in order): the thread
   * must see the pieces and the window's write without another request between them.
   */
  private held: (() => void)[] | undefined;
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
    this.whenSent(() => this.post({ type: 'stage', first, packed, ends }, [packed.buffer, ends.buffer]));
  }

  /**
   * Writes the files of blocks [first, last]. When the thread has not staged the whole window,
   * `entries(from, to)` (the WAL entries of blocks [from, to]) is called for consecutive pieces of
   * it, synchronously each, and each piece is staged before the next is read (see SEND_PIECE_BYTES).
   */
  write(
    first: number,
    last: number,
    entries: (from: number, to: number) => readonly Uint8Array[],
    receiptsPath: string,
    logsPath: string,
  ): Promise<{ receiptRows: number; logRows: number }> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new CairnError('CLOSED', 'archive writer thread is closed'));
    const covered = this.stagedFirst === first && this.stagedNext > last;
    if (covered && this.stagedNext > last + 1) this.stagedFirst = last + 1;
    else {
      this.stagedFirst = last + 1;
      this.stagedNext = last + 1;
    }
    const request: WriterRequest = {
      type: 'write',
      id: 0,
      first,
      last,
      packed: undefined,
      ends: undefined,
      receiptsPath,
      logsPath,
    };
    return new Promise((resolve, reject) => {
      const p: Pending = { resolve, reject, resend: undefined, first, last };
      if (!covered) {
        this.whenSent(() => this.sendWindow(request, entries, p));
        return;
      }
      // A window the thread should have staged but has not (a staging failed: a damaged entry, an
      // engine error on an append) is written once more from `entries` (the WAL, which holds every
      // block of it): a failure of the in-memory stage alone does not poison the store.
      p.resend = () => {
        p.resend = undefined;
        this.whenSent(() => this.sendWindow(request, entries, p));
      };
      this.whenSent(() => this.postWrite(request, p));
    });
  }

  /** Runs `post` now, or after the window being sent piece by piece (requests keep their order). */
  private whenSent(post: () => void): void {
    if (this.held) this.held.push(post);
    else post();
  }

  private postWrite(request: WriterRequest & { type: 'write' }, p: Pending): void {
    const id = this.nextId++;
    this.pending.set(id, p);
    this.worker.ref();
    this.post({ ...request, id }, []);
  }

  /**
   * Stages the window of `request` from `entries` piece by piece (each piece staged before the next
   * is read), then posts the write. Other requests made meanwhile are held and posted after it.
   */
  private sendWindow(
    request: WriterRequest & { type: 'write' },
    entries: (from: number, to: number) => readonly Uint8Array[],
    p: Pending,
  ): void {
    this.held = [];
    void (async () => {
      try {
        let blocks = FIRST_PIECE_BLOCKS;
        for (let from = request.first; from <= request.last; ) {
          const to = Math.min(request.last, from + blocks - 1);
          const piece = entries(from, to);
          if (piece.length !== to - from + 1) {
            throw new CairnError(
              'DATA_LOSS',
              `asked for the entries of blocks ${from}..${to}, got ${piece.length}`,
            );
          }
          let bytes = 0;
          for (const e of piece) bytes += e.length;
          await this.stageAcked(from, piece, p);
          blocks = Math.max(1, Math.floor((SEND_PIECE_BYTES * piece.length) / Math.max(bytes, 1)));
          from = to + 1;
        }
        if (this.failure) throw this.failure;
        this.postWrite(request, p);
      } catch (err) {
        p.reject(err);
      } finally {
        const held = this.held ?? [];
        this.held = undefined;
        // A held write may start sending its own window: the rest stays held behind it.
        while (held.length > 0) {
          const next = held.shift()!;
          this.whenSent(next);
        }
      }
    })();
  }

  /** Stages one piece and waits until the thread did (its failure rejects, typed). */
  private stageAcked(first: number, piece: readonly Uint8Array[], window: Pending): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const { packed, ends } = pack(piece);
    return new Promise((resolve, reject) => {
      this.stageAcks.set(id, { resolve, reject, window });
      this.worker.ref();
      this.post({ type: 'stage', first, packed, ends, id }, [packed.buffer, ends.buffer]);
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
    const ack = this.stageAcks.get(m.id);
    if (ack !== undefined) {
      this.stageAcks.delete(m.id);
      this.unrefWhenIdle();
      if (m.ok) ack.resolve();
      else {
        ack.reject(this.engineFailure(ack.window, `staging the window's entries: ${m.message}`));
      }
      return;
    }
    const p = this.pending.get(m.id);
    if (p === undefined) return;
    this.pending.delete(m.id);
    this.unrefWhenIdle();
    if (m.ok && 'staged' in m) p.reject(this.engineFailure(p, `answered write ${m.id} as a staging`));
    else if (m.ok) p.resolve({ receiptRows: m.receiptRows, logRows: m.logRows });
    else if ('needsEntries' in m && p.resend) p.resend();
    else p.reject(this.engineFailure(p, m.message));
  }

  private unrefWhenIdle(): void {
    if (this.pending.size === 0 && this.stageAcks.size === 0) this.worker.unref();
  }

  /**
   * The error of a failed window write. Running out of memory and spill space is told apart: the
   * store cannot archive that window with these limits, and the message says which to raise (the
   * window stays in the receipt WAL; a reopen with higher limits archives it).
   */
  private engineFailure(p: Pick<Pending, 'first' | 'last'>, message: string): CairnError {
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
    for (const a of this.stageAcks.values()) a.reject(this.failure);
    this.stageAcks.clear();
  }

  /** Waits for queued requests, then stops the thread. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Writes already posted run before 'close' (requests run in order); their replies arrive first.
      this.worker.ref();
      this.whenSent(() => this.post({ type: 'close' }, []));
      await this.exited;
    })();
    return this.closing;
  }
}
