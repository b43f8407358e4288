/**
 * What one open state store holds, shared by the modules that each do one of its jobs (apply,
 * commit, snapshots, retention, rollback, recovery, views, import, verify), and the discipline they
 * all follow:
 *
 *  - One writer: every mutation runs as a step of one promise queue (`enqueue`); a step waits for
 *    the last commit's engine batch unless it is written to run beside it (apply and commit).
 *  - One latch: a failed write or fsync latches the store and every later step rejects with it.
 *  - Reads see, in order: the pending block, the committed block whose engine batch is still being
 *    written (`inflight`), the read-only overlay of WAL rows above the engine's checkpoint, then the
 *    engine.
 *
 * The fields are plain and writable on purpose: this class is internal to src/state (the facade
 * `stateStore.ts` exposes none of it), and the modules that own a job mutate the fields of that job.
 */
import * as path from 'node:path';
import type { DirLock } from '../io/dirLock.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { removeTree } from '../io/removeTree.ts';
import type { OrderedKv } from '../kv/orderedKv.ts';
import { CairnError, describe, FatalLatch, isCairnError } from '../lib/errors.ts';
import type { Wal } from '../wal/wal.ts';
import { FAMILIES, type Family } from './encoding.ts';
import type { HashPool } from './hashPool.ts';
import type { StateKvHost } from './kvHost.ts';
import { LtHash, type LtHasher } from './ltHash.ts';
import {
  BLOCK_RECORD_FIXED_BYTES,
  emptyMeta,
  type FamilyStats,
  kvKey,
  type MetaRecord,
  type RowChange,
} from './records.ts';
import { type Manifest, SNAPSHOTS_DIR } from './snapshots.ts';
import { KV_DIR, type StateStoreOptions, WAL_DIR } from './storeTypes.ts';

/** A row of the block being built; `kk` (its engine key) when known, to skip re-encoding it. */
export type PendingRow = RowChange & { kk?: Uint8Array };

/** The per-family roots and stats of committed state plus the pending block. */
export interface Working {
  roots: LtHash[];
  stats: FamilyStats[];
}

export function cloneMeta(m: MetaRecord): MetaRecord {
  return { height: m.height, roots: m.roots.map((r) => r.clone()), stats: m.stats.map((s) => ({ ...s })) };
}

/**
 * Node's latin1 decoder applied to a plain Uint8Array: no Buffer object per key (this runs for every
 * row of every block). Same string as `Buffer.from(...).toString('latin1')`, which is the fallback.
 */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (start: number, end: number) => string })
  .latin1Slice;

/** The map key of an engine key: rows of the pending, inflight and overlay maps are found by it. */
export function idOf(kk: Uint8Array): string {
  if (latin1Slice) return latin1Slice.call(kk, 0, kk.length);
  return Buffer.from(kk.buffer, kk.byteOffset, kk.byteLength).toString('latin1');
}

/** A caller error (bad input): it changes nothing and does not latch. */
export function caller(message: string, details: Record<string, unknown> = {}): CairnError {
  return new CairnError('INVALID_ARGUMENT', message, { details });
}

/** An engine error as a typed one (a CairnError from the adapter passes unchanged). */
export function engineReadError(err: unknown): CairnError {
  if (isCairnError(err)) return err;
  return new CairnError('IO_FATAL', `state engine read failed: ${describe(err)}`, { cause: err });
}

export class StoreCore {
  kv: OrderedKv | undefined;
  wal: Wal | undefined;
  committed: MetaRecord = emptyMeta(0);
  working: Working = {
    roots: FAMILIES.map(() => new LtHash()),
    stats: FAMILIES.map(() => ({ keys: 0, bytes: 0 })),
  };
  pending = new Map<string, PendingRow>();
  pendingHeight = 0;
  /** Size the pending block's WAL record will have. */
  pendingRecordBytes = BLOCK_RECORD_FIXED_BYTES;
  /**
   * The last committed block's rows while its engine batch is still being written (its WAL record
   * is durable, so it is committed): reads consult them before the engine.
   */
  inflight: Map<string, PendingRow> | undefined;
  /** That engine write; never rejects (a failure latches the store). */
  engineWrite: Promise<void> | undefined;
  /**
   * Set when such a write failed. Its block was already acknowledged, so no commit reported the
   * failure; close() rejects with it, since close may be the caller's only remaining call.
   */
  engineWriteFailed = false;
  /** Read-only opens: WAL rows above the engine's checkpoint, applied in memory only. */
  overlay = new Map<string, RowChange>();
  lastCheckpoint = 0;
  queue: Promise<unknown> = Promise.resolve();
  /** Snapshot completions running beside later commits (see `snapshotWriter.ts`); never rejects. */
  background: Promise<void> = Promise.resolve();
  /** The first background step that failed, reported once by `settleBackground(true)`. */
  backgroundError: unknown;
  /** An engine flush started ahead of a snapshot (`startCheckpointPreparation`). */
  preparing: Promise<void> | undefined;
  readonly latch = new FatalLatch();
  closing: Promise<void> | undefined;
  viewSeq = 0;
  /** Manifests of the snapshots engines were built from, for `openChecked` to compare against. */
  readonly manifests = new Map<number, Manifest>();
  /** The LtHash worker pool once started (`applyBlock.ts`); closed with the store. */
  pool: HashPool | undefined;
  /** Set when worker threads could not start: hashing stays on the writer thread. */
  poolUnavailable = false;
  /** Read-only opens: the private engine copy, removed at close. */
  scratch: string | undefined;
  readonly warnings: string[] = [];
  readonly snapshotsDir: string;
  readonly kvDir: string;
  readonly walDir: string;
  readonly snapshotInterval: number;
  readonly retainBlocks: number;
  readonly checkpointInterval: number;

  constructor(
    readonly fs: FileSystem,
    readonly host: StateKvHost,
    readonly dataDir: string,
    readonly hasher: LtHasher,
    readonly options: StateStoreOptions,
    public lock: DirLock | undefined,
    /** LtHash worker threads, started with the first block large enough to share (`hashPool`). */
    readonly hashWorkers: number,
  ) {
    this.snapshotsDir = path.join(dataDir, SNAPSHOTS_DIR);
    this.kvDir = path.join(dataDir, KV_DIR);
    this.walDir = path.join(dataDir, WAL_DIR);
    this.snapshotInterval = options.snapshotIntervalBlocks ?? 10_000;
    this.retainBlocks = options.retainBlocks ?? 2 * (this.snapshotInterval || 10_000);
    this.checkpointInterval = options.checkpointIntervalBlocks ?? 64;
    for (const [name, v] of [
      ['snapshotIntervalBlocks', this.snapshotInterval],
      ['retainBlocks', this.retainBlocks],
      ['checkpointIntervalBlocks', this.checkpointInterval],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 0 || (name === 'checkpointIntervalBlocks' && v < 1)) {
        throw caller(`${name} must be a non-negative integer (checkpoint ≥ 1), got ${v}`, { [name]: v });
      }
    }
  }

  // ---- reads ------------------------------------------------------------------------------------

  readonly readRow = (family: Family, physicalKey: Uint8Array): Uint8Array | undefined => {
    const kk = kvKey(family, physicalKey);
    return this.readKk(idOf(kk), kk);
  };

  readonly readCommittedRow = (family: Family, physicalKey: Uint8Array): Uint8Array | undefined => {
    const kk = kvKey(family, physicalKey);
    return this.readKk(idOf(kk), kk, false);
  };

  readKk(id: string, kk: Uint8Array, withPending = true): Uint8Array | undefined {
    const p = (withPending ? this.pending.get(id) : undefined) ?? this.inflight?.get(id);
    if (p) return p.value ?? undefined;
    if (this.overlay.size > 0) {
      const o = this.overlay.get(id);
      if (o) return o.value ?? undefined;
    }
    if (!this.kv) throw new CairnError('CLOSED', 'state store is closed');
    try {
      return this.kv.get(kk);
    } catch (err) {
      throw engineReadError(err);
    }
  }

  /** BLAKE3-256 of the committed LtHash. */
  committedRoot(): Uint8Array {
    return this.hasher.checksum(LtHash.sum(this.committed.roots));
  }

  // ---- the writer queue -------------------------------------------------------------------------

  checkOpen(): void {
    if (this.closing) throw new CairnError('CLOSED', 'state store is closed');
    this.latch.check();
  }

  checkWritable(): void {
    this.checkOpen();
    if (this.options.readOnly) throw caller('the state store was opened read-only');
  }

  /**
   * `besideEngineWrite`: the step may run while the last commit's engine batch is being written
   * (apply and commit, which read through `inflight`); every other step waits for that write first.
   */
  enqueue<T>(fn: () => Promise<T> | T, besideEngineWrite = false): Promise<T> {
    if (this.closing) return Promise.reject(new CairnError('CLOSED', 'state store is closed'));
    return this.queueStep(fn, besideEngineWrite);
  }

  /** Internal steps (snapshot retention) that may still run while close drains the queue. */
  queueStep<T>(fn: () => Promise<T> | T, besideEngineWrite = false): Promise<T> {
    const run = this.queue.then(async () => {
      if (!besideEngineWrite) await this.drainEngineWrite();
      this.latch.check();
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Waits until the last commit's engine batch is written or failed (then the store is latched). */
  async drainEngineWrite(): Promise<void> {
    while (this.engineWrite) await this.engineWrite;
  }

  /** Waits for background snapshot steps; with `rethrow`, reports (once) the first one that failed. */
  async settleBackground(rethrow = false): Promise<void> {
    await this.background;
    const err = this.backgroundError;
    this.backgroundError = undefined;
    if (rethrow && err !== undefined) throw err;
  }

  // ---- engine flush ahead of a snapshot ---------------------------------------------------------

  /** Lets the engine shrink what a snapshot must copy, while commits keep running. */
  startCheckpointPreparation(): void {
    if (this.preparing || !this.kv || !this.host.prepareCheckpoint) return;
    this.preparing = this.host.prepareCheckpoint(this.kv).catch((err) => {
      this.warn('engine flush before a snapshot failed (the snapshot copies more instead)', {
        error: describe(err),
      });
    });
  }

  /** The engine must not be closed while a flush it started is running. */
  async awaitCheckpointPreparation(): Promise<void> {
    const p = this.preparing;
    this.preparing = undefined;
    await p;
  }

  /** Closes the live engine (after any flush it is running) before its directory is replaced. */
  async closeEngine(): Promise<void> {
    await this.awaitCheckpointPreparation();
    if (this.kv) {
      const kv = this.kv;
      this.kv = undefined;
      await kv.close();
    }
  }

  // ---- small shared steps -----------------------------------------------------------------------

  /** Working state = committed state, no pending block. */
  resetWorking(): void {
    this.pending = new Map();
    this.pendingHeight = 0;
    this.pendingRecordBytes = BLOCK_RECORD_FIXED_BYTES;
    this.working = {
      roots: this.committed.roots.map((r) => r.clone()),
      stats: this.committed.stats.map((s) => ({ ...s })),
    };
  }

  removeScratch(): void {
    if (this.scratch === undefined) return;
    try {
      removeTree(this.fs, this.scratch);
      this.scratch = undefined;
    } catch (err) {
      this.warn('could not remove the inspection copy', { dir: this.scratch, error: describe(err) });
    }
  }

  warn(message: string, details: Record<string, unknown> = {}): void {
    this.warnings.push(message);
    this.options.onWarning?.(message, details);
  }
}
