/**
 * The state store: flat EVM state in one LevelDB instance, a 32-byte LtHash commitment per block,
 * a state WAL on Cairn's Wal (index == height), snapshots, catch-up, rollback, read-only views and
 * export/import. docs/DATA_FILES.md ("State") describes every byte and the recovery rules; the short
 * version of the durability protocol:
 *
 *  - commit(h): the block's physical row changes and the per-family LtHash after it go into WAL
 *    record h, which is fsynced (group commit) before anything else; then ONE engine batch carries
 *    the rows, the version record and, every `checkpointIntervalBlocks`, the checkpoint record. Only
 *    checkpoint batches are synced. commit(h) resolves once the WAL record is durable; the engine
 *    batch is written behind it while block h+1 is built (reads see its rows in `inflight`).
 *  - LevelDB may keep any subset of the unsynced batches after a power cut. The synced checkpoint at
 *    height C guarantees everything up to C; open then re-applies WAL records C+1..tip in order. Each
 *    record holds the block's complete new rows (puts and deletes, the value bytes as stored) and the
 *    roots after it, so re-applying is a pure overwrite: whichever batches survived, every row touched
 *    after C ends at its tip value, every other row is still at its C value, and the roots are the
 *    recorded ones. No old value is read during replay, so no surviving later batch can mislead it.
 *  - One writer: every mutation runs on one promise queue; reads see committed rows plus the
 *    pending block's overlay.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { acquireDirLock, type DirLock } from '../io/dirLock.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import type { KvBatch, OrderedKv } from '../kv/orderedKv.ts';
import { toHex } from '../lib/bytes.ts';
import { crc32c as crc32cOf } from '../lib/crc32c.ts';
import { CairnError, describe, FatalLatch, ioFatal, isCairnError } from '../lib/errors.ts';
import { runAllThenThrowFirst } from '../lib/lifecycle.ts';
import { Wal } from '../wal/wal.ts';
import { loadBlake3Module } from './blake3Wasm.ts';
import {
  type Account,
  accountIsEmpty,
  accountKey,
  checkStoredValue,
  classifyEvmKey,
  decodeAccount,
  EVM_CODE,
  EVM_MODULE,
  EVM_STORAGE,
  encodeAccount,
  encodeCode,
  encodeMisc,
  encodeStorage,
  evmPhysicalKey,
  FAMILIES,
  FAMILY_INDEX,
  type Family,
  familyOfPhysicalKey,
  isZero,
  miscPhysicalKey,
  zeroAccount,
} from './encoding.ts';
import {
  ExportReader,
  encodeExportHeader,
  encodeExportRow,
  encodeExportTrailer,
  MAX_EXPORT_FIELD_BYTES,
} from './exportFormat.ts';
import {
  ensureDir,
  fileChecksum,
  readRecordFile,
  removeDirAtomic,
  removeFileDurable,
  removeTree,
  sweepLeftovers,
  writeRecordFile,
} from './files.ts';
import { type HashItem, HashPool, PARALLEL_MIN_ELEMENTS } from './hashPool.ts';
import { LevelKvHost, type StateKvHost } from './kvHost.ts';
import { LtHash, type LtHasher, sharedLtHasher } from './ltHash.ts';
import { loadLtKernel } from './ltKernel.ts';
import { readHeightModified, readLogical } from './reader.ts';
import {
  BLOCK_RECORD_FIXED_BYTES,
  blockRecordRowBytes,
  CHECKPOINT_KEY,
  decodeBlockRecord,
  decodeMeta,
  emptyMeta,
  encodeBlockRecord,
  encodeMeta,
  type FamilyStats,
  familyTag,
  kvKey,
  META_BYTES,
  type MetaRecord,
  type RowChange,
  VERSION_KEY,
} from './records.ts';
import {
  listSnapshotHeights,
  type Manifest,
  readCurrent,
  readSnapshot,
  SNAPSHOTS_DIR,
  snapshotName,
  writeCurrent,
  writeManifest,
} from './snapshots.ts';

export interface KVPair {
  key: Uint8Array;
  /** null (or absent) with `delete` unset means "set to the empty value" (spec §1.2). */
  value?: Uint8Array | null;
  delete?: boolean;
}
export interface NamedChangeSet {
  name: string;
  pairs: readonly KVPair[];
}

export interface StateStoreOptions {
  dataDir: string;
  /** File system for everything Cairn writes itself (default: the real one). */
  fs?: FileSystem;
  /** Engine host (default: LevelDB in `<dataDir>/kv` on `fs`). Tests pass an in-memory host. */
  kvHost?: StateKvHost;
  /** Take the directory lock (default: true on the real file system). */
  lockDir?: boolean;
  /** Automatic snapshot when height % interval == 0; 0 disables (default 10,000). */
  snapshotIntervalBlocks?: number;
  /**
   * Rollback / view / export window in blocks: every height in [tip - retainBlocks, tip] stays
   * reachable (a snapshot at or below it plus the WAL above it); older snapshots and WAL records are
   * dropped. Default: 2 × snapshotIntervalBlocks.
   */
  retainBlocks?: number;
  /** Synced checkpoint batch every this many blocks (default 64): bounds replay after a crash. */
  checkpointIntervalBlocks?: number;
  walSegmentBytes?: number;
  /**
   * Worker threads that share a block's LtHash work with the writer thread (default
   * `suggestedHashWorkers()`: cores − 1, at most 3; 0 keeps all hashing on the writer). On the quiet
   * two-core bench machine one worker measured 13–26 % more keys/s in three same-run comparisons,
   * before the SIMD element kernel made hashing ~3× cheaper (`npm run bench -- state` prints both;
   * re-check there); under CPU contention from other processes it is slower (the kernel's writer
   * thread alone then wins), so pass 0 where the node's other threads need the cores. They start
   * with the first block of at least 512 rows. Results are bit-identical either way; a failed worker
   * falls back to the writer thread.
   */
  hashWorkers?: number;
  /**
   * When the engine holds blocks the WAL does not (only possible if the WAL was damaged or deleted,
   * since a block's WAL record is durable before its engine batch is written), open refuses with
   * DATA_LOSS by default. With this set, it instead rebuilds from the newest snapshot and lands on
   * the WAL tail, discarding those blocks (the operator's explicit choice).
   */
  discardBlocksAboveWal?: boolean;
  /**
   * Inspection only: nothing is created, repaired, swept or written in `dataDir` and no lock is
   * taken (so a running writer is never blocked); the engine is read from a private copy in
   * `scratchDir`, and a copy a writer changed underneath is retried, then refused with LOCKED.
   * Mutators fail.
   */
  readOnly?: boolean;
  /** Where read-only opens put their private engine copy (default: the OS temp directory). */
  scratchDir?: string;
  onWarning?: (message: string, details: Record<string, unknown>) => void;
}

export interface SnapshotResult {
  height: number;
  /** Time commits were blocked (sync checkpoint + engine close/link/reopen), ms. */
  stallMs: number;
  files: number;
  created: boolean;
  /** Stall breakdown when the engine host reports it: checkpoint batch, close, copy, reopen (ms). */
  phasesMs?: Record<string, number>;
}

export interface VerifyFamilyReport {
  family: Family;
  rows: number;
  bytes: number;
  ok: boolean;
  expectedRoot: string;
  scannedRoot: string;
  problems: string[];
}
export interface VerifyReport {
  height: number;
  ok: boolean;
  root: string;
  families: VerifyFamilyReport[];
}

export interface ImportOptions {
  /** Refuse to finalize unless the imported root equals this 32-byte root. */
  expectedRoot?: Uint8Array;
  onProgress?: (p: { rows: number; bytes: number }) => void;
}

export const WAL_DIR = 'wal';
export const KV_DIR = 'kv';
export const VIEWS_DIR = 'views';
export const ROLLBACK_INTENT_FILE = 'ROLLBACK_INTENT';
export const IMPORT_MARKER_FILE = 'IMPORT_IN_PROGRESS';
const INTENT_MAGIC = new TextEncoder().encode('CAIRNRBK1');
const IMPORT_MAGIC = new TextEncoder().encode('CAIRNIMP1');
const WAL_MAX_RECORD_BYTES = 48 * 1024 * 1024;
const IMPORT_BATCH_ROWS = 10_000;
const SCAN_CHUNK = 4096;
/** Keys per engine `getMany` when a block reads its rows' old values (bounds one engine request). */
const OLD_VALUE_READ_CHUNK = 8192;
/** Problems a verify report lists per family (the rest are counted). */
const VERIFY_PROBLEMS_KEPT = 20;

/** A row of the block being built; `kk` (its engine key) when known, to skip re-encoding it. */
type PendingRow = RowChange & { kk?: Uint8Array };

interface Working {
  roots: LtHash[];
  stats: FamilyStats[];
}

function cloneMeta(m: MetaRecord): MetaRecord {
  return { height: m.height, roots: m.roots.map((r) => r.clone()), stats: m.stats.map((s) => ({ ...s })) };
}

/**
 * A `hashWorkers` value sized to the machine: one fewer than the cores Node may use (the writer
 * thread hashes a share too), at most 3; 0 on a single core. The default of `hashWorkers`.
 */
export function suggestedHashWorkers(): number {
  return Math.max(0, Math.min(3, os.availableParallelism() - 1));
}

/**
 * Node's latin1 decoder applied to a plain Uint8Array: no Buffer object per key (this runs for every
 * row of every block). Same string as `Buffer.from(...).toString('latin1')`, which is the fallback.
 */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (start: number, end: number) => string })
  .latin1Slice;

function idOf(kk: Uint8Array): string {
  if (latin1Slice) return latin1Slice.call(kk, 0, kk.length);
  return Buffer.from(kk.buffer, kk.byteOffset, kk.byteLength).toString('latin1');
}

function describeType(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

function caller(message: string, details: Record<string, unknown> = {}): CairnError {
  return new CairnError('INVALID_ARGUMENT', message, { details });
}

export class StateStore {
  private kv: OrderedKv | undefined;
  private wal: Wal | undefined;
  private committed: MetaRecord = emptyMeta(0);
  private working: Working = {
    roots: FAMILIES.map(() => new LtHash()),
    stats: FAMILIES.map(() => ({ keys: 0, bytes: 0 })),
  };
  private pending = new Map<string, PendingRow>();
  /**
   * The last committed block's rows while its engine batch is still being written (its WAL record
   * is durable, so it is committed): reads consult them before the engine.
   */
  private inflight: Map<string, PendingRow> | undefined;
  /** That engine write; never rejects (a failure latches the store). */
  private engineWrite: Promise<void> | undefined;
  /**
   * Set when such a write failed. Its block was already acknowledged, so no commit reported the
   * failure; close() rejects with it, since close may be the caller's only remaining call.
   */
  private engineWriteFailed = false;
  private pendingHeight = 0;
  /** Read-only opens: WAL rows above the engine's checkpoint, applied in memory only. */
  private overlay = new Map<string, RowChange>();
  private lastCheckpoint = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private background: Promise<void> = Promise.resolve();
  private readonly latch = new FatalLatch();
  private closing: Promise<void> | undefined;
  private viewSeq = 0;
  readonly warnings: string[] = [];
  private readonly snapshotsDir: string;
  private readonly kvDir: string;
  private readonly walDir: string;
  private readonly snapshotInterval: number;
  private readonly retainBlocks: number;
  private readonly checkpointInterval: number;

  private constructor(
    private readonly fs: FileSystem,
    private readonly host: StateKvHost,
    private readonly dataDir: string,
    private readonly hasher: LtHasher,
    private readonly options: StateStoreOptions,
    private lock: DirLock | undefined,
    /** LtHash worker threads, started with the first block large enough to share (`hashPool`). */
    private readonly hashWorkers: number,
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

  static async open(options: StateStoreOptions): Promise<StateStore> {
    const fs = options.fs ?? realFileSystem;
    const host = options.kvHost ?? new LevelKvHost(fs);
    const dataDir = options.dataDir;
    if (options.readOnly && !fs.exists(dataDir)) {
      throw new CairnError('NOT_FOUND', `no state store at ${dataDir}`, { details: { file: dataDir } });
    }
    // Locking creates files (the lock engine, the pid file): a read-only open never takes it.
    const lock =
      !options.readOnly && (options.lockDir ?? fs === realFileSystem)
        ? await acquireDirLock(dataDir)
        : undefined;
    let store: StateStore | undefined;
    try {
      const hasher = await sharedLtHasher();
      const workers = options.hashWorkers ?? suggestedHashWorkers();
      if (!Number.isSafeInteger(workers) || workers < 0 || workers > 16) {
        throw caller(`hashWorkers must be an integer in [0, 16], got ${workers}`);
      }
      store = new StateStore(fs, host, dataDir, hasher, options, lock, options.readOnly ? 0 : workers);
      if (options.readOnly) await store.recoverReadOnly();
      else await store.recover();
      return store;
    } catch (err) {
      if (store) await store.abandon();
      else await lock?.release().catch(() => undefined);
      if (err instanceof CairnError) throw err;
      throw ioFatal(`opening state store ${dataDir}`, err, { file: dataDir });
    }
  }

  // ---- public read API --------------------------------------------------------------------------

  /** Last committed height (0 = nothing committed). */
  get version(): number {
    return this.committed.height;
  }
  /** Height of the buffered block, or 0. */
  get pendingVersion(): number {
    return this.pendingHeight;
  }

  get(module: string, key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    return readLogical(this.readRow, module, key);
  }
  /**
   * Like `get`, but committed state only: the pending block is ignored. Each engine read is atomic
   * with respect to a commit's single batch, so it never sees half a block.
   */
  getCommitted(module: string, key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    return readLogical(this.readCommittedRow, module, key);
  }

  has(module: string, key: Uint8Array): boolean {
    return this.get(module, key) !== undefined;
  }
  blockHeightModified(module: string, key: Uint8Array): number | undefined {
    this.checkOpen();
    return readHeightModified(this.readRow, module, key);
  }

  /** BLAKE3-256 of the working LtHash (committed state plus the pending block). */
  workingRoot(): Uint8Array {
    return this.hasher.checksum(LtHash.sum(this.working.roots));
  }
  committedRoot(): Uint8Array {
    return this.hasher.checksum(LtHash.sum(this.committed.roots));
  }
  familyRoots(): Record<Family, Uint8Array> {
    const out = {} as Record<Family, Uint8Array>;
    FAMILIES.forEach((f, i) => {
      out[f] = this.hasher.checksum(this.committed.roots[i]!);
    });
    return out;
  }
  familyStats(): Record<Family, FamilyStats> {
    const out = {} as Record<Family, FamilyStats>;
    FAMILIES.forEach((f, i) => {
      out[f] = { ...this.committed.stats[i]! };
    });
    return out;
  }

  /** Snapshot heights on disk and the WAL range, for inspection. */
  describe(): {
    height: number;
    root: string;
    snapshots: number[];
    current: number | undefined;
    wal: { first: number; next: number };
    checkpoint: number;
    rollbackIntent: { target: number; base: number } | undefined;
    importInProgress: number | undefined;
  } {
    return {
      height: this.committed.height,
      root: toHex(this.committedRoot()),
      snapshots: listSnapshotHeights(this.fs, this.snapshotsDir),
      current: readCurrent(this.fs, this.dataDir),
      wal: { first: this.wal?.firstIndex ?? 0, next: this.wal?.nextIndex ?? 0 },
      checkpoint: this.lastCheckpoint,
      rollbackIntent: this.readIntent(),
      importInProgress: this.readImportMarker(),
    };
  }

  // ---- writes -----------------------------------------------------------------------------------

  /** Buffers one block's writes at height `height` (may repeat for the same height). Atomic. */
  applyChangeSets(
    height: number,
    changeSets: readonly (NamedChangeSet | null | undefined)[] | null,
  ): Promise<void> {
    return this.enqueue(() => this.applyNow(height, changeSets ?? []), true);
  }

  /** Persists the buffered block (possibly empty) as `height`; resolves once it is durable. */
  commit(height: number): Promise<number> {
    return this.enqueue(() => this.commitNow(height), true);
  }

  commitBlock(height: number, changeSets: readonly NamedChangeSet[]): Promise<number> {
    return this.enqueue(async () => {
      await this.applyNow(height, changeSets);
      return this.commitNow(height);
    }, true);
  }

  /**
   * Resolves once every committed block's engine batch has been written (commit resolves at the
   * WAL record's durability; the batch follows). Rejects if the store is latched.
   */
  engineWritten(): Promise<void> {
    return this.enqueue(() => undefined);
  }

  /**
   * Seeds an empty store whose history starts at block `first` (> 0): afterwards the store is at
   * height first-1 with the empty root and the next commit is `first`. Atomic: one synced checkpoint
   * batch; the WAL is then positioned at `first` (an open after a crash in between does the same).
   */
  setInitialVersion(first: number): Promise<void> {
    return this.enqueue(async () => {
      this.checkWritable();
      if (!Number.isSafeInteger(first) || first < 1)
        throw caller(`initial version must be ≥ 1, got ${first}`);
      if (this.committed.height !== 0 || this.pendingHeight !== 0 || this.wal!.count > 0) {
        throw new CairnError(
          'CONFLICT',
          'setInitialVersion needs a fresh store (nothing committed, empty WAL)',
          {
            details: { height: this.committed.height },
          },
        );
      }
      if (first === 1) return;
      this.committed = emptyMeta(first - 1);
      await this.writeCheckpoint();
      await this.positionWal();
      this.resetWorking();
    });
  }

  private async applyNow(
    height: number,
    changeSets: readonly (NamedChangeSet | null | undefined)[],
  ): Promise<void> {
    this.checkWritable();
    const expected = this.committed.height + 1;
    if (height !== expected) {
      throw new CairnError('OUT_OF_ORDER', `apply at height ${height}: the next block is ${expected}`, {
        details: { height, expected },
      });
    }
    const overlay = new Map<string, RowChange & { kk: Uint8Array }>();
    /** Rows read before this block touched them (accounts, read-modify-write): their old values. */
    const readBefore = new Map<string, Uint8Array | undefined>();
    // Accounts are read-modify-write: their committed rows are fetched in one engine `getMany`
    // that runs while the other rows are routed, instead of one synchronous read per account.
    const prefetch = this.prefetchAccounts(changeSets);
    const current = (kk: Uint8Array): Uint8Array | undefined => {
      const id = idOf(kk);
      const o = overlay.get(id);
      if (o) return o.value ?? undefined;
      if (readBefore.has(id)) return readBefore.get(id);
      const v = this.readKk(id, kk);
      readBefore.set(id, v);
      return v;
    };
    /** Account writes, applied in their order after the prefetch (other families never share a row). */
    const accountWrites: { kind: 'nonce' | 'codeHash'; key: Uint8Array; value: Uint8Array; del: boolean }[] =
      [];
    const put = (family: Family, key: Uint8Array, value: Uint8Array | null) => {
      // Every row must fit the export format, or an export of this state could never be imported.
      const longest = Math.max(key.length, value?.length ?? 0);
      if (longest > MAX_EXPORT_FIELD_BYTES) {
        throw new CairnError(
          'RECORD_TOO_LARGE',
          `a ${family} row of block ${height} has a ${longest}-byte key or stored value, above the ` +
            `${MAX_EXPORT_FIELD_BYTES}-byte row limit; nothing was applied`,
          { details: { height, family, bytes: longest, limit: MAX_EXPORT_FIELD_BYTES } },
        );
      }
      const kk = kvKey(family, key);
      overlay.set(idOf(kk), { family, key, value, kk });
    };
    for (const cs of changeSets) {
      if (!cs?.pairs || cs.pairs.length === 0) continue;
      if (typeof cs.name !== 'string' || cs.name === '' || cs.name.includes('/')) {
        throw caller(`changeset module name ${JSON.stringify(cs.name)} is empty or contains "/"`);
      }
      for (const pair of cs.pairs) {
        const key = pair?.key;
        if (!(key instanceof Uint8Array)) {
          throw caller(
            `changeset ${JSON.stringify(cs.name)}: a key is ${describeType(key)}, not a Uint8Array`,
          );
        }
        if (pair.value !== undefined && pair.value !== null && !(pair.value instanceof Uint8Array)) {
          throw caller(
            `changeset ${JSON.stringify(cs.name)}: a value is ${describeType(pair.value)}, not a Uint8Array or null`,
          );
        }
        const del = pair.delete === true;
        const value = pair.value ?? new Uint8Array(0);
        if (cs.name !== EVM_MODULE) {
          put('misc', miscPhysicalKey(cs.name, key), del ? null : encodeMisc(height, value));
          continue;
        }
        if (!key || key.length === 0) throw caller('empty key in an evm changeset');
        const kind = classifyEvmKey(key);
        if (kind === 'storage') {
          if (!del && value.length !== 32)
            throw caller(`storage value must be 32 bytes, got ${value.length}`);
          const zero = del || isZero(value);
          put(
            'storage',
            evmPhysicalKey(EVM_STORAGE, key.subarray(1)),
            zero ? null : encodeStorage(height, value),
          );
        } else if (kind === 'code') {
          const empty = del || value.length === 0;
          put('code', evmPhysicalKey(EVM_CODE, key.subarray(1)), empty ? null : encodeCode(height, value));
        } else if (kind === 'misc') {
          put('misc', miscPhysicalKey(EVM_MODULE, key), del ? null : encodeMisc(height, value));
        } else {
          accountWrites.push({ kind, key, value, del });
        }
      }
    }
    // Hash on copies; swap in only after everything succeeded (atomic apply, A20).
    const roots = this.working.roots.map((r) => r.clone());
    const stats = this.working.stats.map((s) => ({ ...s }));
    const pool =
      overlay.size + accountWrites.length >= PARALLEL_MIN_ELEMENTS ? await this.hashPool() : undefined;
    // The rows routed so far (every family but accounts): their old values are read from the engine
    // while their new values are mixed in, and meanwhile the accounts' prefetch completes.
    const routed = overlay.size;
    const routedOlds = this.oldValues(overlay, readBefore, (news) => {
      if (pool && news.length >= PARALLEL_MIN_ELEMENTS) return pool.apply(news, roots);
      this.hasher.mixItems(roots, news);
      return undefined;
    });
    try {
      for (const [id, v] of await prefetch) readBefore.set(id, v);
      for (const { kind, key, value, del } of accountWrites) {
        const phys = accountKey(key.subarray(1));
        const kk = kvKey('account', phys);
        const old = current(kk);
        const acct: Account = old ? decodeAccount(old) : zeroAccount();
        if (kind === 'nonce') {
          if (del) acct.nonce = 0n;
          else {
            if (value.length !== 8) throw caller(`nonce value must be 8 bytes, got ${value.length}`);
            acct.nonce = new DataView(value.buffer, value.byteOffset, 8).getBigUint64(0, false);
          }
        } else {
          if (del) acct.codeHash = new Uint8Array(32);
          else {
            if (value.length !== 32) throw caller(`code hash value must be 32 bytes, got ${value.length}`);
            acct.codeHash = value.slice();
          }
        }
        put('account', phys, accountIsEmpty(acct) ? null : encodeAccount(height, acct));
      }
    } catch (err) {
      // Nothing is left running behind a refused block (the reads and the hash pool finish first).
      await routedOlds.catch(() => undefined);
      throw err;
    }
    const olds = await routedOlds;
    // Refuse a block whose WAL record would exceed the limit now, before the pending block grows:
    // refused at commit, it would be stuck pending with no way forward.
    let recordBytes = this.pendingRecordBytes;
    for (const [id, row] of overlay) {
      const was = this.pending.get(id);
      if (was) recordBytes -= blockRecordRowBytes(was);
      recordBytes += blockRecordRowBytes(row);
    }
    if (recordBytes > WAL_MAX_RECORD_BYTES) {
      throw new CairnError(
        'RECORD_TOO_LARGE',
        `block ${height} would encode to ${recordBytes} bytes, above the state WAL limit of ${WAL_MAX_RECORD_BYTES}; ` +
          'these changes were not applied',
        { details: { height, bytes: recordBytes, limit: WAL_MAX_RECORD_BYTES } },
      );
    }
    // Mix-outs of every row with an old value, and the account rows' mix-ins (an account's value
    // before the block is the one `current` read: from the pending block or the engine).
    const rest: HashItem[] = [];
    let i = 0;
    for (const [id, row] of overlay) {
      const f = FAMILY_INDEX[row.family];
      const old = i < routed ? olds[i] : readBefore.get(id);
      const hasNew = row.value !== null && row.value.length > 0;
      const hasOld = old !== undefined && old.length > 0;
      if (hasOld) {
        stats[f]!.keys--;
        stats[f]!.bytes -= row.key.length + old.length;
      }
      if (hasNew) {
        stats[f]!.keys++;
        stats[f]!.bytes += row.key.length + row.value!.length;
      }
      if (i >= routed && (hasOld || hasNew)) {
        rest.push({
          family: f,
          key: row.key,
          old: hasOld ? old : undefined,
          neu: hasNew ? row.value! : undefined,
        });
      } else if (hasOld) {
        rest.push({ family: f, key: row.key, old });
      }
      i++;
    }
    if (pool && rest.length >= PARALLEL_MIN_ELEMENTS) {
      await pool.apply(rest, roots);
    } else {
      this.hasher.mixItems(roots, rest);
    }
    // The overlay's rows go in as they are (their engine key `kk` saves re-encoding at commit).
    for (const [id, row] of overlay) this.pending.set(id, row);
    this.working = { roots, stats };
    this.pendingHeight = height;
    this.pendingRecordBytes = recordBytes;
  }
  /**
   * The committed rows of the accounts `changeSets` writes that neither the pending block nor the
   * read-only overlay holds, read in one engine `getMany` (by id). Malformed input is skipped here:
   * the apply loop refuses it. Never rejects unhandled: the caller awaits it after routing, and if
   * routing throws first, the read's outcome is dropped.
   */
  private prefetchAccounts(
    changeSets: readonly (NamedChangeSet | null | undefined)[],
  ): Promise<[string, Uint8Array | undefined][]> {
    const ids: string[] = [];
    const kks: Uint8Array[] = [];
    const seen = new Set<string>();
    for (const cs of changeSets) {
      if (cs?.name !== EVM_MODULE || !Array.isArray(cs.pairs)) continue;
      for (const pair of cs.pairs) {
        const key = pair?.key;
        if (!(key instanceof Uint8Array)) continue;
        const kind = classifyEvmKey(key);
        if (kind !== 'nonce' && kind !== 'codeHash') continue;
        const kk = kvKey('account', accountKey(key.subarray(1)));
        const id = idOf(kk);
        if (
          seen.has(id) ||
          this.pending.has(id) ||
          this.inflight?.has(id) ||
          (this.overlay.size > 0 && this.overlay.has(id))
        )
          continue;
        seen.add(id);
        ids.push(id);
        kks.push(kk);
      }
    }
    if (kks.length === 0) return Promise.resolve([]);
    const kv = this.kv;
    if (!kv) return Promise.reject(new CairnError('CLOSED', 'state store is closed'));
    const reads: Promise<(Uint8Array | undefined)[]>[] = [];
    for (let at = 0; at < kks.length; at += OLD_VALUE_READ_CHUNK) {
      reads.push(kv.getMany(kks.slice(at, at + OLD_VALUE_READ_CHUNK)));
    }
    const all = Promise.all(reads).then(
      (chunks) => {
        const out: [string, Uint8Array | undefined][] = [];
        let i = 0;
        for (const chunk of chunks) for (const v of chunk) out.push([ids[i++]!, v]);
        return out;
      },
      (err: unknown) => {
        if (isCairnError(err)) throw err;
        throw new CairnError('IO_FATAL', `state engine read failed: ${describe(err)}`, { cause: err });
      },
    );
    all.catch(() => undefined);
    return all;
  }

  /**
   * The values the block's rows had before it, in `overlay` order: from the pending block, from the
   * reads the block already made, else from the engine in one `getMany` per chunk. `whileReading`
   * gets the rows' mix-ins (new values) and runs while the engine works on its own threads.
   */
  private async oldValues(
    overlay: ReadonlyMap<string, RowChange & { kk: Uint8Array }>,
    readBefore: ReadonlyMap<string, Uint8Array | undefined>,
    whileReading: (news: HashItem[]) => Promise<void> | undefined,
  ): Promise<(Uint8Array | undefined)[]> {
    const kv = this.kv;
    if (!kv) throw new CairnError('CLOSED', 'state store is closed');
    const olds: (Uint8Array | undefined)[] = new Array(overlay.size);
    const missing: number[] = [];
    const missingKeys: Uint8Array[] = [];
    const news: HashItem[] = [];
    let i = 0;
    for (const [id, row] of overlay) {
      const p = this.pending.get(id) ?? this.inflight?.get(id);
      if (p) olds[i] = p.value ?? undefined;
      else if (readBefore.has(id)) olds[i] = readBefore.get(id);
      else if (this.overlay.size > 0 && this.overlay.has(id))
        olds[i] = this.overlay.get(id)!.value ?? undefined;
      else {
        missing.push(i);
        missingKeys.push(row.kk);
      }
      if (row.value !== null && row.value.length > 0) {
        news.push({ family: FAMILY_INDEX[row.family], key: row.key, neu: row.value });
      }
      i++;
    }
    const reads: Promise<(Uint8Array | undefined)[]>[] = [];
    for (let at = 0; at < missingKeys.length; at += OLD_VALUE_READ_CHUNK) {
      reads.push(kv.getMany(missingKeys.slice(at, at + OLD_VALUE_READ_CHUNK)));
    }
    // Settle every read before returning, even if hashing throws, so none is left running.
    const settled = Promise.allSettled(reads);
    let hashing: unknown;
    try {
      await whileReading(news);
    } catch (err) {
      hashing = err;
    }
    const results = await settled;
    if (hashing !== undefined) throw hashing;
    let j = 0;
    for (const r of results) {
      if (r.status === 'rejected') {
        const err = r.reason;
        if (isCairnError(err)) throw err;
        throw new CairnError('IO_FATAL', `state engine read failed: ${describe(err)}`, { cause: err });
      }
      for (const v of r.value) olds[missing[j++]!] = v;
    }
    return olds;
  }

  private pool: HashPool | undefined;
  /** The LtHash worker pool, started on first use; undefined when the store hashes on one thread. */
  private async hashPool(): Promise<HashPool | undefined> {
    if (this.pool || this.hashWorkers === 0 || this.poolUnavailable) return this.pool;
    const onFallback = (reason: string) =>
      this.warn('an LtHash worker failed; hashing continues on the writer thread', { error: reason });
    try {
      const [module, kernel] = await Promise.all([loadBlake3Module(), loadLtKernel()]);
      this.pool = HashPool.create(this.hashWorkers, this.hasher, module, onFallback, kernel);
    } catch (err) {
      // No worker threads here (a restricted runtime): hash on the writer thread, as with 0.
      this.poolUnavailable = true;
      onFallback(describe(err));
    }
    return this.pool;
  }
  private poolUnavailable = false;

  /** Size the pending block's WAL record will have. */
  private pendingRecordBytes = BLOCK_RECORD_FIXED_BYTES;

  private async commitNow(height: number): Promise<number> {
    this.checkWritable();
    const expected = this.committed.height + 1;
    if (height !== expected) {
      throw new CairnError('OUT_OF_ORDER', `commit at height ${height}: the next block is ${expected}`, {
        details: { height, expected },
      });
    }
    const after: MetaRecord = { height, roots: this.working.roots, stats: this.working.stats };
    const rows = [...this.pending.values()];
    const wal = this.wal!;
    const payload = encodeBlockRecord(rows, after);
    if (payload.length > WAL_MAX_RECORD_BYTES) {
      // Refused before anything is written: the pending block stays as it is.
      throw new CairnError(
        'RECORD_TOO_LARGE',
        `block ${height} encodes to ${payload.length} bytes, above the state WAL limit of ${WAL_MAX_RECORD_BYTES}`,
        { details: { height, bytes: payload.length, limit: WAL_MAX_RECORD_BYTES } },
      );
    }
    const checkpoint = height % this.checkpointInterval === 0;
    let syncing: Promise<void>;
    try {
      wal.append([payload], height);
      syncing = wal.sync();
    } catch (err) {
      throw this.latch.latch(err, `state WAL append of block ${height}`);
    }
    // While the record is fsynced, stage the engine batch in memory: nothing of it reaches the
    // engine before the WAL record is durable (a batch is applied only by write()).
    let staged: KvBatch | undefined;
    let stageError: unknown;
    try {
      staged = this.stageBlockBatch(
        this.kv!,
        rows,
        payload.subarray(payload.length - META_BYTES),
        checkpoint,
      );
    } catch (err) {
      stageError = err;
    }
    try {
      await syncing;
    } catch (err) {
      // An unwritten staged batch is dropped; the engine closes it when the store closes.
      throw this.latch.latch(err, `state WAL append of block ${height}`);
    }
    // The record is durable: the block is committed. Its engine batch goes out behind the previous
    // block's (engine batches stay in height order, each after its own WAL record) and is written
    // while the caller builds the next block; until it lands, reads find its rows in `inflight`.
    // A failed batch latches the store: the next call rejects with its cause, and an open replays
    // the block from the WAL.
    await this.drainEngineWrite();
    this.latch.check();
    if (staged === undefined) throw this.latch.latch(stageError, `state engine batch of block ${height}`);
    const batch = staged;
    const rowsById = this.pending;
    const write: Promise<void> = batch
      .write({ sync: checkpoint })
      .then(
        () => {
          if (checkpoint) this.lastCheckpoint = height;
        },
        (err: unknown) => {
          this.latch.latch(err, `state engine batch of block ${height}`);
          this.engineWriteFailed = true;
        },
      )
      .finally(() => {
        if (this.inflight === rowsById) this.inflight = undefined;
        if (this.engineWrite === write) this.engineWrite = undefined;
      });
    this.inflight = rowsById;
    this.engineWrite = write;
    this.committed = cloneMeta(after);
    this.pending = new Map();
    this.pendingHeight = 0;
    this.pendingRecordBytes = BLOCK_RECORD_FIXED_BYTES;
    if (this.snapshotInterval > 0 && height % this.snapshotInterval === 0) this.scheduleAutoSnapshot();
    else if (this.snapshotInterval > 1 && (height + 1) % this.snapshotInterval === 0) {
      // One block ahead of an automatic snapshot, let the engine shrink its log in the background.
      this.startCheckpointPreparation();
    }
    return height;
  }

  private async writeBlockBatch(
    kv: OrderedKv,
    rows: readonly PendingRow[],
    after: MetaRecord,
    sync: boolean,
  ) {
    await this.stageBlockBatch(kv, rows, encodeMeta(after), sync).write({ sync });
  }

  /** One block's engine batch (rows, version record, checkpoint record if `checkpoint`), unwritten. */
  private stageBlockBatch(
    kv: OrderedKv,
    rows: readonly PendingRow[],
    meta: Uint8Array,
    checkpoint: boolean,
  ): KvBatch {
    const batch = kv.batch();
    for (const r of rows) {
      const kk = r.kk ?? kvKey(r.family, r.key);
      if (r.value === null) batch.del(kk);
      else batch.put(kk, r.value);
    }
    batch.put(VERSION_KEY, meta);
    if (checkpoint) batch.put(CHECKPOINT_KEY, meta);
    return batch;
  }

  private async writeCheckpoint(): Promise<void> {
    const meta = encodeMeta(this.committed);
    await this.kv!.batch().put(VERSION_KEY, meta).put(CHECKPOINT_KEY, meta).write({ sync: true });
    this.lastCheckpoint = this.committed.height;
  }

  // ---- snapshots --------------------------------------------------------------------------------

  /** Snapshot of the committed state; a no-op if one exists at this height. */
  async snapshot(): Promise<SnapshotResult> {
    await this.settleBackground();
    // Flush the engine while commits keep running; only the quiesce below blocks the writer.
    this.startCheckpointPreparation();
    await this.preparing;
    const result = await this.enqueue(() => this.snapshotNow());
    await this.settleBackground(true);
    return result;
  }

  private preparing: Promise<void> | undefined;

  private startCheckpointPreparation(): void {
    if (this.preparing || !this.kv || !this.host.prepareCheckpoint) return;
    this.preparing = this.host.prepareCheckpoint(this.kv).catch((err) => {
      this.warn('engine flush before a snapshot failed (the snapshot copies more instead)', {
        error: describe(err),
      });
    });
  }

  /** The engine must not be closed while a flush it started is running. */
  private async awaitCheckpointPreparation(): Promise<void> {
    const p = this.preparing;
    this.preparing = undefined;
    await p;
  }

  private scheduleAutoSnapshot(): void {
    // Runs as the next writer step (the caller's commit has resolved); failures are warnings.
    void this.enqueue(() => this.snapshotNow()).catch((err) => {
      this.warn('automatic snapshot failed; the previous snapshot stays current', { error: describe(err) });
    });
  }

  /** `inline`: finish (manifest, CURRENT, retention) before returning, for callers already on the queue. */
  private async snapshotNow(inline = false): Promise<SnapshotResult> {
    this.checkWritable();
    const height = this.committed.height;
    if (height === 0) throw caller('cannot snapshot a store with nothing committed');
    const finalDir = path.join(this.snapshotsDir, snapshotName(height));
    if (this.fs.exists(finalDir)) return { height, stallMs: 0, files: 0, created: false };
    const tmp = `${finalDir}-tmp`;
    const started = performance.now();
    await this.awaitCheckpointPreparation();
    let files: string[];
    let copyError: unknown;
    let phasesMs: Record<string, number> | undefined;
    try {
      await this.writeCheckpoint();
      const checkpointMs = performance.now() - started;
      ensureDir(this.fs, this.snapshotsDir);
      removeTree(this.fs, tmp);
      ensureDir(this.fs, tmp);
      const r = await this.host.checkpoint(this.kv!, this.kvDir, tmp);
      this.kv = r.kv;
      files = r.files;
      copyError = r.error;
      if (r.phasesMs) phasesMs = { syncedCheckpoint: checkpointMs, ...r.phasesMs };
    } catch (err) {
      // The engine could not be reopened (or the checkpoint batch failed): nothing is trustworthy.
      throw this.latch.latch(err, `snapshot of height ${height}`);
    }
    if (copyError !== undefined) {
      // The engine is back and intact; only this snapshot failed. CURRENT is unchanged.
      try {
        removeTree(this.fs, tmp);
      } catch {
        // swept at the next open
      }
      throw ioFatal(`snapshot of height ${height} (the store keeps committing without it)`, copyError);
    }
    const stallMs = performance.now() - started;
    const meta = cloneMeta(this.committed);
    if (inline) {
      await this.finishSnapshot(tmp, finalDir, meta, files, true);
      return { height, stallMs, files: files.length, created: true, ...(phasesMs ? { phasesMs } : {}) };
    }
    // The rest (checksums of the linked files, manifest, rename, CURRENT, retention) runs beside
    // later commits: the files are immutable now. The chain never rejects; a failure is kept for the
    // next explicit snapshot()/settle and reported as a warning.
    this.background = this.background.then(async () => {
      try {
        await this.finishSnapshot(tmp, finalDir, meta, files);
      } catch (err) {
        try {
          removeTree(this.fs, tmp);
        } catch {
          // swept at the next open
        }
        this.backgroundError ??= err;
        this.warn('snapshot could not be completed; CURRENT unchanged', { height, error: describe(err) });
      }
    });
    return { height, stallMs, files: files.length, created: true, ...(phasesMs ? { phasesMs } : {}) };
  }

  private async finishSnapshot(
    tmp: string,
    finalDir: string,
    meta: MetaRecord,
    files: string[],
    inline = false,
  ): Promise<void> {
    const manifest: Manifest = {
      height: meta.height,
      meta,
      root: this.hasher.checksum(LtHash.sum(meta.roots)),
      files: files.map((name) => ({ name, ...fileChecksum(this.fs, path.join(tmp, name)) })),
    };
    writeManifest(this.fs, tmp, manifest);
    this.fs.syncDir(tmp);
    this.fs.rename(tmp, finalDir);
    this.fs.syncDir(this.snapshotsDir);
    const current = readCurrent(this.fs, this.dataDir);
    if (current === undefined || current < meta.height) writeCurrent(this.fs, this.dataDir, meta.height);
    if (inline) await this.applyRetention();
    else await this.queueStep(() => this.applyRetention());
  }

  /**
   * One height window: keep every snapshot inside [tip - retainBlocks, tip] and the newest one below
   * it (the base for the window's lowest heights); drop WAL records below the oldest kept snapshot
   * (never above the last synced checkpoint, which replay starts from).
   */
  private async applyRetention(): Promise<void> {
    if (this.latch.error) return;
    const tip = this.committed.height;
    const edge = Math.max(0, tip - this.retainBlocks);
    const heights = listSnapshotHeights(this.fs, this.snapshotsDir).filter((h) => h <= tip);
    // The base of the window's lowest height: the newest snapshot at or below the edge, or the empty
    // state (0) when there is none, which needs the WAL from block 1.
    const base = heights.filter((h) => h <= edge).at(-1) ?? 0;
    for (const h of heights) {
      if (h < base) removeDirAtomic(this.fs, path.join(this.snapshotsDir, snapshotName(h)));
    }
    const wal = this.wal!;
    const floor = Math.min(base, this.lastCheckpoint) + 1;
    if (floor > wal.firstIndex && floor <= wal.nextIndex && wal.truncateFrontFreesSegment(floor)) {
      await wal.truncateFront(floor);
    }
  }

  // ---- rollback ---------------------------------------------------------------------------------

  /**
   * Rewinds to `target` (a retained height ≤ the tip): afterwards the store is at `target` with that
   * height's root, and every snapshot, WAL record and row above it is gone. A durable intent record
   * is written first; if the process dies, open finishes the rollback. An unreachable target is
   * refused before anything changes.
   */
  async rollback(target: number): Promise<void> {
    await this.settleBackground();
    await this.enqueue(async () => {
      this.checkWritable();
      if (!Number.isSafeInteger(target) || target < 1)
        throw caller(`rollback target must be ≥ 1, got ${target}`);
      const tip = this.committed.height;
      if (target > tip) {
        throw new CairnError(
          'OUT_OF_RANGE',
          `rollback target ${target} is above the committed height ${tip}`,
          {
            details: { target, tip },
          },
        );
      }
      if (target === tip) {
        this.resetWorking(); // rolling back to the tip discards the pending block, nothing else
        return;
      }
      const base = this.reachableBase(target, 'rollback');
      // Check the base's contents before anything changes: a damaged snapshot refuses the rollback.
      if (base > 0) readSnapshot(this.fs, path.join(this.snapshotsDir, snapshotName(base)), base, true);
      // Only now, with the rollback certain to be attempted, is the pending block dropped: a refused
      // rollback must leave it in place.
      this.resetWorking();
      const previousCurrent = readCurrent(this.fs, this.dataDir);
      this.writeIntent(target, base);
      try {
        this.pointCurrentAt(base);
        this.removeSnapshotsAbove(target);
      } catch (err) {
        // Nothing but cached snapshots changed yet: undo the pointer and the intent (A11).
        try {
          if (previousCurrent === undefined) removeFileDurable(this.fs, path.join(this.dataDir, 'CURRENT'));
          else writeCurrent(this.fs, this.dataDir, previousCurrent);
          removeFileDurable(this.fs, path.join(this.dataDir, ROLLBACK_INTENT_FILE));
        } catch (undoErr) {
          throw this.latch.latch(undoErr, 'undoing a failed rollback');
        }
        throw ioFatal(`rollback to ${target} did not take effect (the WAL still ends at ${tip})`, err);
      }
      try {
        await this.finishRollbackTail(target, base);
      } catch (err) {
        throw this.latch.latch(err, `rollback to ${target}`);
      }
    });
  }

  /** Newest snapshot ≤ height whose manifest is intact, or 0 (empty base); checks WAL coverage. */
  private reachableBase(height: number, what: string): number {
    let base = 0;
    for (const h of listSnapshotHeights(this.fs, this.snapshotsDir).reverse()) {
      if (h > height) continue;
      try {
        readSnapshot(this.fs, path.join(this.snapshotsDir, snapshotName(h)), h, false);
        base = h;
        break;
      } catch (err) {
        this.warn(`skipping damaged snapshot ${h}`, { error: describe(err) });
      }
    }
    if (base === height) return base;
    const wal = this.wal!;
    const last = wal.nextIndex - 1;
    if (wal.count === 0 || wal.firstIndex > base + 1 || last < height) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `${what} to ${height} is unreachable: it needs a snapshot at or below it (newest: ${base || 'none'}) and WAL ` +
          `records ${base + 1}..${height}, but the WAL holds ${wal.count === 0 ? 'nothing' : `${wal.firstIndex}..${last}`}`,
        { details: { height, base, walFirst: wal.firstIndex, walNext: wal.nextIndex } },
      );
    }
    return base;
  }

  private pointCurrentAt(base: number): void {
    if (base > 0) writeCurrent(this.fs, this.dataDir, base);
    else removeFileDurable(this.fs, path.join(this.dataDir, 'CURRENT'));
  }

  private removeSnapshotsAbove(target: number): void {
    const failures: string[] = [];
    for (const h of listSnapshotHeights(this.fs, this.snapshotsDir)) {
      if (h <= target) continue;
      try {
        removeDirAtomic(this.fs, path.join(this.snapshotsDir, snapshotName(h)));
      } catch (err) {
        failures.push(`snapshot ${h}: ${describe(err)}`);
      }
    }
    if (failures.length > 0) throw new Error(`could not remove ${failures.join('; ')}`);
  }

  /** Idempotent: rebuild the engine from `base`, replay to `target`, cut the WAL, drop the intent. */
  private async finishRollbackTail(target: number, base: number): Promise<void> {
    await this.rebuildFrom(base);
    await this.replay(target);
    await this.writeCheckpoint();
    const wal = this.wal!;
    if (wal.nextIndex > target + 1) await wal.truncateBack(target + 1);
    removeFileDurable(this.fs, path.join(this.dataDir, ROLLBACK_INTENT_FILE));
    this.resetWorking();
  }

  /** Working state = committed state, no pending block. */
  private resetWorking(): void {
    this.pending = new Map();
    this.pendingHeight = 0;
    this.pendingRecordBytes = BLOCK_RECORD_FIXED_BYTES;
    this.working = {
      roots: this.committed.roots.map((r) => r.clone()),
      stats: this.committed.stats.map((s) => ({ ...s })),
    };
  }

  private writeIntent(target: number, base: number): void {
    const body = new Uint8Array(16);
    const dv = new DataView(body.buffer);
    dv.setBigUint64(0, BigInt(target), false);
    dv.setBigUint64(8, BigInt(base), false);
    writeRecordFile(this.fs, path.join(this.dataDir, ROLLBACK_INTENT_FILE), INTENT_MAGIC, body);
  }

  private readIntent(): { target: number; base: number } | undefined {
    const body = readRecordFile(this.fs, path.join(this.dataDir, ROLLBACK_INTENT_FILE), INTENT_MAGIC);
    if (body === undefined) return undefined;
    if (body.length !== 16)
      throw new CairnError('CORRUPT', `${ROLLBACK_INTENT_FILE} has a ${body.length}-byte body`);
    const dv = new DataView(body.buffer, body.byteOffset, 16);
    return { target: Number(dv.getBigUint64(0, false)), base: Number(dv.getBigUint64(8, false)) };
  }

  private readImportMarker(): number | undefined {
    const body = readRecordFile(this.fs, path.join(this.dataDir, IMPORT_MARKER_FILE), IMPORT_MAGIC);
    if (body === undefined) return undefined;
    if (body.length !== 8)
      throw new CairnError('CORRUPT', `${IMPORT_MARKER_FILE} has a ${body.length}-byte body`);
    return Number(new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0, false));
  }

  // ---- views and export -------------------------------------------------------------------------

  /** An isolated read-only view of committed state at `height` (0 = the committed tip). */
  async openView(height = 0): Promise<StateView> {
    await this.settleBackground();
    return this.enqueue(async () => {
      this.checkWritable(); // a view clones into <dataDir>/views: not for read-only opens
      const at = height === 0 ? this.committed.height : height;
      if (!Number.isSafeInteger(at) || at < 0 || at > this.committed.height) {
        throw new CairnError(
          'OUT_OF_RANGE',
          `view height ${height} is above the committed height ${this.committed.height}`,
          {
            details: { height, tip: this.committed.height },
          },
        );
      }
      const base = this.reachableBase(at, 'a view');
      ensureDir(this.fs, path.join(this.dataDir, VIEWS_DIR));
      const dir = path.join(this.dataDir, VIEWS_DIR, `view-${process.pid}-${++this.viewSeq}`);
      removeTree(this.fs, dir);
      let kv: OrderedKv | undefined;
      try {
        kv = await this.materialize(base, dir);
        let meta = decodeMetaFrom(kv, CHECKPOINT_KEY, 'checkpoint')!;
        for (const rec of this.walRecords(base, at)) {
          await this.writeBlockBatch(kv, rec.rows, rec.after, false);
          meta = rec.after;
        }
        return new StateView(kv, dir, this.fs, this.hasher, meta);
      } catch (err) {
        await kv?.close().catch(() => undefined);
        removeTree(this.fs, dir);
        throw err;
      }
    });
  }

  /**
   * Streams the committed state at `height` (0 = tip) in the export format to `sink`. Returns the
   * row count and root. Reads a private view, so commits may continue meanwhile.
   */
  async exportState(
    height: number,
    sink: (chunk: Uint8Array) => void | Promise<void>,
    onProgress?: (p: { rows: number; bytes: number }) => void,
  ): Promise<{ height: number; rows: number; root: Uint8Array }> {
    const view = await this.openView(height);
    try {
      let crc = 0;
      let bytes = 0;
      const emit = async (chunk: Uint8Array) => {
        crc = crc32cOf(chunk, crc);
        bytes += chunk.length;
        await sink(chunk);
      };
      await emit(encodeExportHeader(view.version));
      let rows = 0;
      for await (const { key, value } of view.rows()) {
        await emit(encodeExportRow(key, value));
        if (++rows % 50_000 === 0) onProgress?.({ rows, bytes });
      }
      const root = view.committedRoot();
      await sink(encodeExportTrailer(rows, root, crc));
      onProgress?.({ rows, bytes });
      return { height: view.version, rows, root };
    } finally {
      await view.close();
    }
  }

  /**
   * Replaces the whole store with an exported state. The in-progress marker is written first; the
   * store, its snapshots and its WAL are wiped; rows are checked (family routing, value structure,
   * order, heights) and hashed; the stream checksum, the trailer root and `expectedRoot` must all
   * agree before the state is finalized (synced checkpoint, snapshot, WAL positioned at height+1,
   * marker removed). A refused input (malformed stream, unexpected row, root mismatch) leaves the
   * purged store empty at height 0 and usable, and its error passes through unlatched; a store-side
   * failure latches, and the next open wipes the half import.
   */
  async importState(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: ImportOptions = {},
  ): Promise<{ height: number; rows: number; root: Uint8Array }> {
    await this.settleBackground();
    return this.enqueue(async () => {
      this.checkWritable();
      const reader = new ExportReader(source);
      const { height } = await reader.readHeader();
      /** Set when the input was refused (bad stream, unexpected row, root mismatch), not the store. */
      let rejected: unknown;
      const refuse = (err: CairnError): CairnError => {
        rejected = err;
        return err;
      };
      try {
        const body = new Uint8Array(8);
        new DataView(body.buffer).setBigUint64(0, BigInt(height), false);
        writeRecordFile(this.fs, path.join(this.dataDir, IMPORT_MARKER_FILE), IMPORT_MAGIC, body);
        await this.wipeAll();
        this.wal = await this.openWal(height + 1);
        await this.rebuildFrom(0);
        const roots = FAMILIES.map(() => new LtHash());
        const stats = FAMILIES.map(() => ({ keys: 0, bytes: 0 }));
        let batch = this.kv!.batch();
        let rows = 0;
        let prev: Uint8Array | undefined;
        for (;;) {
          let item: Awaited<ReturnType<ExportReader['next']>>;
          try {
            item = await reader.next();
          } catch (err) {
            // The stream itself failed or is malformed: the input's fault, not the store's.
            rejected = err;
            throw err;
          }
          if (item.kind === 'end') {
            if (item.rowCount !== rows) {
              throw refuse(
                new CairnError(
                  'CORRUPT',
                  `export trailer counts ${item.rowCount} rows, the stream had ${rows}`,
                ),
              );
            }
            await batch.write({ sync: false });
            const meta: MetaRecord = { height, roots, stats };
            const root = this.hasher.checksum(LtHash.sum(roots));
            if (toHex(root) !== toHex(item.root)) {
              throw refuse(
                new CairnError(
                  'CORRUPT',
                  `imported rows hash to ${toHex(root)}, the export trailer says ${toHex(item.root)}`,
                ),
              );
            }
            if (options.expectedRoot && toHex(root) !== toHex(options.expectedRoot)) {
              throw refuse(
                new CairnError(
                  'CONFLICT',
                  `imported root ${toHex(root)} differs from the expected root ${toHex(options.expectedRoot)}`,
                  { details: { root: toHex(root), expected: toHex(options.expectedRoot) } },
                ),
              );
            }
            this.committed = meta;
            this.working = { roots: roots.map((r) => r.clone()), stats: stats.map((s) => ({ ...s })) };
            await this.writeCheckpoint();
            if (height > 0) {
              await this.snapshotNow(true);
            }
            removeFileDurable(this.fs, path.join(this.dataDir, IMPORT_MARKER_FILE));
            options.onProgress?.({ rows, bytes: reader.offset });
            return { height, rows, root };
          }
          const family = familyOfPhysicalKey(item.key);
          if (!family)
            throw refuse(
              new CairnError(
                'CORRUPT',
                `import row ${rows}: key ${toHex(item.key.subarray(0, 40))} routes to no family`,
              ),
            );
          const kk = kvKey(family, item.key);
          if (prev && Buffer.compare(prev, kk) >= 0) {
            throw refuse(new CairnError('CORRUPT', `import row ${rows}: keys are not strictly increasing`));
          }
          prev = kk;
          let stamped: number;
          try {
            stamped = checkStoredValue(family, item.value);
          } catch (err) {
            rejected = err;
            throw err;
          }
          if (stamped > height) {
            throw refuse(
              new CairnError(
                'CORRUPT',
                `import row ${rows}: value stamped at height ${stamped} above the import height ${height}`,
              ),
            );
          }
          const f = FAMILY_INDEX[family];
          this.hasher.mixIn(roots[f]!, item.key, item.value);
          stats[f]!.keys++;
          stats[f]!.bytes += item.key.length + item.value.length;
          batch.put(kk, item.value);
          if (++rows % IMPORT_BATCH_ROWS === 0) {
            await batch.write({ sync: false });
            batch = this.kv!.batch();
            options.onProgress?.({ rows, bytes: reader.offset });
          }
        }
      } catch (err) {
        if (err !== rejected) {
          // The store failed mid-import: a half-imported store must never serve. Latch; the next
          // open wipes it (marker present).
          throw this.latch.latch(err, `import at height ${height}`);
        }
        // The input was refused. The purge already happened (spec §5.14: an aborted import leaves
        // the purged store), so finish the purge durably and stay usable at height 0; the refusal
        // reaches the caller unchanged. Only a failure of this cleanup latches.
        try {
          await this.resetToEmpty();
        } catch (cleanupErr) {
          throw this.latch.latch(cleanupErr, `discarding a refused import at height ${height}`);
        }
        throw err;
      }
    });
  }

  // ---- verification -----------------------------------------------------------------------------

  /** Recomputes every family root and its stats by a full scan and compares with the committed ones. */
  async verify(): Promise<VerifyReport> {
    return this.enqueue(async () => {
      this.latch.check();
      if (this.pending.size > 0) throw caller('verify needs a store without pending writes');
      const families: VerifyFamilyReport[] = [];
      for (const family of FAMILIES) {
        const f = FAMILY_INDEX[family];
        const acc = new LtHash();
        let rows = 0;
        let bytes = 0;
        // Bounded: a badly damaged engine must not grow the report with every bad row.
        const problems: string[] = [];
        let problemCount = 0;
        const problem = (text: string) => {
          if (++problemCount <= VERIFY_PROBLEMS_KEPT) problems.push(text);
        };
        const check = (key: Uint8Array, value: Uint8Array) => {
          if (familyOfPhysicalKey(key) !== family)
            problem(`row ${toHex(key.subarray(0, 40))} does not belong to ${family}`);
          try {
            const h = checkStoredValue(family, value);
            if (h > this.committed.height)
              problem(`row ${toHex(key.subarray(0, 40))} stamped at ${h} above the tip`);
          } catch (err) {
            problem(`row ${toHex(key.subarray(0, 40))}: ${describe(err)}`);
          }
          this.hasher.mixIn(acc, key, value);
          rows++;
          bytes += key.length + value.length;
        };
        for await (const { key, value } of scanFamily(this.kv!, family)) {
          if (this.overlay.size > 0 && this.overlay.has(idOf(kvKey(family, key)))) continue;
          check(key, value);
        }
        for (const row of this.overlay.values())
          if (row.family === family && row.value) check(row.key, row.value);
        const expected = this.committed.roots[f]!;
        const st = this.committed.stats[f]!;
        if (st.keys !== rows || st.bytes !== bytes)
          problem(`stats say ${st.keys} rows / ${st.bytes} bytes, scan found ${rows} / ${bytes}`);
        const ok = acc.equals(expected) && problemCount === 0;
        if (problemCount > problems.length)
          problems.push(`… and ${problemCount - problems.length} more problems`);
        if (!acc.equals(expected)) problems.unshift('root mismatch');
        families.push({
          family,
          rows,
          bytes,
          ok,
          expectedRoot: toHex(this.hasher.checksum(expected)),
          scannedRoot: toHex(this.hasher.checksum(acc)),
          problems,
        });
      }
      return {
        height: this.committed.height,
        ok: families.every((f) => f.ok),
        root: toHex(this.committedRoot()),
        families,
      };
    });
  }

  // ---- lifecycle --------------------------------------------------------------------------------

  /** Waits for queued work, writes a synced checkpoint, closes the engine, the WAL and the lock. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.settleBackground();
      await this.queue.catch(() => undefined);
      await this.drainEngineWrite();
      await this.awaitCheckpointPreparation();
      await runAllThenThrowFirst([
        async () => {
          if (
            !this.options.readOnly &&
            !this.latch.error &&
            this.kv &&
            this.committed.height > this.lastCheckpoint
          ) {
            await this.writeCheckpoint();
          }
        },
        () => this.kv?.close(),
        () => this.wal?.close(),
        () => this.lock?.release(),
        () => this.pool?.close(),
        () => this.removeScratch(),
      ]);
      this.kv = undefined;
      this.lock = undefined;
      // An engine batch written behind an acknowledged commit failed (perhaps during this close's
      // own drain): the store is latched and nothing else may have told the caller. The block is
      // safe in the WAL (the next open replays it), but a close that resolved would let a node shut
      // down believing its engine healthy (disk full, EIO). Other latches rejected the call that
      // caused them (a WAL latch also fails the WAL's close above); their close is unchanged.
      if (this.engineWriteFailed && this.latch.error) throw this.latch.error;
    })();
    return this.closing;
  }

  // ---- open and recovery ------------------------------------------------------------------------

  private async recover(): Promise<void> {
    ensureDir(this.fs, this.dataDir);
    for (const [dir, removed] of [
      [this.dataDir, sweepLeftovers(this.fs, this.dataDir)],
      [this.snapshotsDir, sweepLeftovers(this.fs, this.snapshotsDir)],
    ] as const) {
      if (removed.length > 0) this.warn('swept leftovers of an interrupted operation', { dir, removed });
    }
    removeTree(this.fs, path.join(this.dataDir, VIEWS_DIR));
    const importing = this.readImportMarker();
    if (importing !== undefined) {
      this.warn('discarding an interrupted import', { height: importing });
      await this.wipeAll();
      removeFileDurable(this.fs, path.join(this.dataDir, IMPORT_MARKER_FILE));
    }
    this.wal = await this.openWal(1);
    const current = readCurrent(this.fs, this.dataDir);
    if (current !== undefined) {
      // A CURRENT naming a missing or torn snapshot is refused, never treated as empty (W10).
      readSnapshot(this.fs, path.join(this.snapshotsDir, snapshotName(current)), current, false);
    }
    const intent = this.readIntent();
    if (intent) {
      this.warn('finishing an interrupted rollback', intent);
      this.pointCurrentAt(intent.base);
      this.removeSnapshotsAbove(intent.target);
      await this.finishRollbackTail(intent.target, intent.base);
    } else {
      await this.settleEngine(current ?? 0);
    }
    await this.positionWal();
    this.adoptOrphanSnapshots(current);
    this.resetWorking();
  }

  /** Brings the engine to the WAL tip: from its own checkpoint if the WAL covers it, else from a snapshot. */
  private async settleEngine(current: number): Promise<void> {
    const wal = this.wal!;
    const walLast = wal.count > 0 ? wal.nextIndex - 1 : undefined;
    if (this.fs.exists(this.kvDir)) {
      this.kv = await this.host.open(this.kvDir);
      const checkpoint = decodeMetaFrom(this.kv, CHECKPOINT_KEY, 'checkpoint');
      if (!checkpoint) {
        throw new CairnError('CORRUPT', `state engine ${this.kvDir} has no checkpoint record`, {
          details: { file: this.kvDir },
        });
      }
      const version = decodeMetaFrom(this.kv, VERSION_KEY, 'version');
      const ahead =
        version !== undefined &&
        version.height > checkpoint.height &&
        (walLast === undefined || version.height > walLast);
      const covered =
        walLast === undefined || walLast <= checkpoint.height || wal.firstIndex <= checkpoint.height + 1;
      if (!ahead && covered) {
        this.committed = checkpoint;
        this.lastCheckpoint = checkpoint.height;
        if (walLast !== undefined && walLast > checkpoint.height) {
          await this.replay(walLast);
          await this.writeCheckpoint();
        }
        return;
      }
      const details = {
        checkpoint: checkpoint.height,
        version: version?.height,
        walFirst: wal.firstIndex,
        walLast,
      };
      if (ahead && !this.options.discardBlocksAboveWal) {
        throw new CairnError(
          'DATA_LOSS',
          `the state engine holds block ${version!.height} but the state WAL ends at ${walLast ?? 'nothing'}: ` +
            'acknowledged blocks are missing from the WAL (damaged or deleted); refusing to open. ' +
            'Reopen with discardBlocksAboveWal to rebuild from the newest snapshot and drop them.',
          { details },
        );
      }
      this.warn(
        ahead
          ? 'the engine holds blocks the WAL does not: discarding them, rebuilding from the snapshot'
          : 'the WAL does not reach back to the engine checkpoint: rebuilding from the snapshot',
        details,
      );
    }
    await this.rebuildFrom(current);
    if (walLast !== undefined && walLast > current) {
      await this.replay(walLast);
      await this.writeCheckpoint();
    }
  }

  /**
   * Replaces the engine directory by the snapshot at `base` (or an empty engine for 0). The new
   * engine is built (and the snapshot checked) in `kv-tmp` before the old one is removed, so a
   * damaged snapshot leaves the current engine in place.
   */
  private async rebuildFrom(base: number): Promise<void> {
    const tmp = `${this.kvDir}-tmp`;
    await this.buildEngine(base, tmp);
    await this.awaitCheckpointPreparation();
    if (this.kv) {
      const kv = this.kv;
      this.kv = undefined;
      await kv.close();
    }
    removeDirAtomic(this.fs, this.kvDir);
    this.fs.rename(tmp, this.kvDir);
    this.fs.syncDir(this.dataDir);
    this.kv = await this.openChecked(this.kvDir, base);
    this.committed = decodeMetaFrom(this.kv, CHECKPOINT_KEY, 'checkpoint')!;
    this.lastCheckpoint = this.committed.height;
  }

  /** Creates engine dir `dir` holding the state of snapshot `base` (0 = empty), via `-tmp` + rename. */
  private async materialize(base: number, dir: string): Promise<OrderedKv> {
    const tmp = `${dir}-tmp`;
    await this.buildEngine(base, tmp);
    this.fs.rename(tmp, dir);
    this.fs.syncDir(path.dirname(dir));
    return this.openChecked(dir, base);
  }

  /** Writes a complete engine directory at `dir` (removed first if present). */
  private async buildEngine(base: number, dir: string): Promise<void> {
    removeTree(this.fs, dir);
    if (base > 0) {
      const snapDir = path.join(this.snapshotsDir, snapshotName(base));
      const manifest = readSnapshot(this.fs, snapDir, base, true);
      await this.host.clone(
        snapDir,
        manifest.files.map((f) => f.name),
        dir,
      );
      this.manifests.set(base, manifest);
    } else {
      const kv = await this.host.create(dir);
      const meta = encodeMeta(emptyMeta(0));
      await kv.batch().put(VERSION_KEY, meta).put(CHECKPOINT_KEY, meta).write({ sync: true });
      await kv.close();
    }
  }
  private readonly manifests = new Map<number, Manifest>();

  /** Opens an engine built from `base` and checks it holds exactly what the manifest promised. */
  private async openChecked(dir: string, base: number): Promise<OrderedKv> {
    const kv = await this.host.open(dir);
    const checkpoint = decodeMetaFrom(kv, CHECKPOINT_KEY, 'checkpoint');
    const expected = base > 0 ? this.manifests.get(base)?.meta : emptyMeta(0);
    if (
      !checkpoint ||
      !expected ||
      checkpoint.height !== expected.height ||
      !checkpoint.roots.every((r, i) => r.equals(expected.roots[i]!))
    ) {
      await kv.close();
      throw new CairnError('CORRUPT', `snapshot ${base} does not hold the state its manifest describes`, {
        details: { base, found: checkpoint?.height },
      });
    }
    return kv;
  }

  /** Re-applies WAL records committed+1..to onto the engine (pure overwrites; see the file comment). */
  private async replay(to: number): Promise<void> {
    for (const rec of this.walRecords(this.committed.height, to)) {
      await this.writeBlockBatch(this.kv!, rec.rows, rec.after, false);
      this.committed = rec.after;
    }
  }

  /** Decoded WAL records (from, to], refusing a gap (never skipping missing blocks, A5/A7). */
  private *walRecords(from: number, to: number): Generator<{ rows: RowChange[]; after: MetaRecord }> {
    if (to <= from) return;
    const wal = this.wal!;
    if (wal.count === 0 || wal.firstIndex > from + 1 || wal.nextIndex - 1 < to) {
      throw new CairnError(
        'GAP',
        `state WAL holds ${wal.count === 0 ? 'nothing' : `${wal.firstIndex}..${wal.nextIndex - 1}`} but blocks ` +
          `${from + 1}..${to} are needed: refusing to skip missing blocks`,
        { details: { from, to, walFirst: wal.firstIndex, walNext: wal.nextIndex } },
      );
    }
    for (const { index, payload } of wal.iterate(from + 1, to + 1)) {
      const rec = decodeBlockRecord(payload, index);
      yield { rows: rec.rows, after: rec.after };
    }
  }

  /** The WAL's next index must be committed+1 (a fresh, wiped or lagging WAL is moved up to it). */
  private async positionWal(): Promise<void> {
    const wal = this.wal!;
    const next = this.committed.height + 1;
    if (wal.nextIndex === next) return;
    if (wal.nextIndex > next) {
      throw new CairnError(
        'GAP',
        `state WAL continues at ${wal.nextIndex} but the store is at ${this.committed.height}`,
        {
          details: { walNext: wal.nextIndex, height: this.committed.height },
        },
      );
    }
    if (wal.count > 0) {
      this.warn('the WAL ends below the engine checkpoint; restarting it at the checkpoint', {
        walFirst: wal.firstIndex,
        walNext: wal.nextIndex,
        height: this.committed.height,
      });
    }
    await wal.reset(next);
  }

  /** Snapshots above CURRENT that finished (manifest intact) before a crash are adopted (A19). */
  private adoptOrphanSnapshots(current: number | undefined): void {
    let adopt: number | undefined;
    for (const h of listSnapshotHeights(this.fs, this.snapshotsDir)) {
      if (h <= (current ?? 0) || h > this.committed.height) continue;
      try {
        readSnapshot(this.fs, path.join(this.snapshotsDir, snapshotName(h)), h, false);
        adopt = h;
      } catch (err) {
        this.warn(`ignoring damaged snapshot ${h}`, { error: describe(err) });
      }
    }
    if (adopt !== undefined) {
      this.warn('adopting a completed snapshot CURRENT did not name yet', { height: adopt });
      writeCurrent(this.fs, this.dataDir, adopt);
    }
  }

  private async openWal(initialIndex: number): Promise<Wal> {
    return Wal.open({
      fs: this.fs,
      dir: this.walDir,
      initialIndex,
      segmentBytes: this.options.walSegmentBytes ?? 64 * 1024 * 1024,
      maxRecordBytes: WAL_MAX_RECORD_BYTES,
      durability: { mode: 'on-request' },
      ...(this.options.readOnly ? { readOnly: true } : {}),
      onWarning: (m, d) => this.warn(`state WAL: ${m}`, d),
    });
  }

  /** Removes engine, snapshots, CURRENT and WAL (import start, or an interrupted import at open). */
  private async wipeAll(): Promise<void> {
    await this.awaitCheckpointPreparation();
    if (this.kv) {
      const kv = this.kv;
      this.kv = undefined;
      await kv.close();
    }
    if (this.wal) {
      const wal = this.wal;
      this.wal = undefined;
      await wal.close();
    }
    removeDirAtomic(this.fs, this.kvDir);
    removeDirAtomic(this.fs, this.snapshotsDir);
    removeDirAtomic(this.fs, this.walDir);
    removeFileDurable(this.fs, path.join(this.dataDir, 'CURRENT'));
    removeFileDurable(this.fs, path.join(this.dataDir, ROLLBACK_INTENT_FILE));
    this.committed = emptyMeta(0);
    this.lastCheckpoint = 0;
  }

  /** After a refused import: an empty store at height 0 with a fresh WAL, the marker removed last. */
  private async resetToEmpty(): Promise<void> {
    await this.wipeAll();
    this.wal = await this.openWal(1);
    await this.rebuildFrom(0);
    removeFileDurable(this.fs, path.join(this.dataDir, IMPORT_MARKER_FILE));
    this.resetWorking();
  }

  private async recoverReadOnly(): Promise<void> {
    if (!this.fs.exists(this.kvDir)) {
      throw new CairnError(
        'NOT_FOUND',
        `no state engine at ${this.kvDir} (a writable open would rebuild it)`,
        {
          details: { file: this.kvDir },
        },
      );
    }
    if (this.host.openCopy) {
      const scratch = path.join(
        this.options.scratchDir ?? os.tmpdir(),
        `cairn-state-inspect-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e9)}`,
      );
      this.scratch = scratch;
      this.kv = await this.host.openCopy(this.kvDir, scratch);
    } else {
      this.kv = await this.host.open(this.kvDir);
    }
    // The WAL is read after the engine copy: a writer's later commits are then all in the WAL read
    // here (overlaid below), never rows of a block the WAL read does not know.
    this.wal = await this.openWal(1);
    const checkpoint = decodeMetaFrom(this.kv, CHECKPOINT_KEY, 'checkpoint');
    if (!checkpoint) throw new CairnError('CORRUPT', `state engine ${this.kvDir} has no checkpoint record`);
    this.committed = checkpoint;
    this.lastCheckpoint = checkpoint.height;
    const wal = this.wal;
    const walLast = wal.count > 0 ? wal.nextIndex - 1 : 0;
    if (walLast > checkpoint.height) {
      for (const rec of this.walRecords(checkpoint.height, walLast)) {
        for (const r of rec.rows) this.overlay.set(idOf(kvKey(r.family, r.key)), r);
        this.committed = rec.after;
      }
    }
    this.resetWorking();
  }

  // ---- plumbing ---------------------------------------------------------------------------------

  private readonly readRow = (family: Family, physicalKey: Uint8Array): Uint8Array | undefined => {
    const kk = kvKey(family, physicalKey);
    return this.readKk(idOf(kk), kk);
  };

  private readonly readCommittedRow = (family: Family, physicalKey: Uint8Array): Uint8Array | undefined => {
    const kk = kvKey(family, physicalKey);
    return this.readKk(idOf(kk), kk, false);
  };

  private readKk(id: string, kk: Uint8Array, withPending = true): Uint8Array | undefined {
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
      if (isCairnError(err)) throw err;
      throw new CairnError('IO_FATAL', `state engine read failed: ${describe(err)}`, { cause: err });
    }
  }

  private checkOpen(): void {
    if (this.closing) throw new CairnError('CLOSED', 'state store is closed');
    this.latch.check();
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.options.readOnly) throw caller('the state store was opened read-only');
  }

  /**
   * `besideEngineWrite`: the step may run while the last commit's engine batch is being written
   * (apply and commit, which read through `inflight`); every other step waits for that write first.
   */
  private enqueue<T>(fn: () => Promise<T> | T, besideEngineWrite = false): Promise<T> {
    if (this.closing) return Promise.reject(new CairnError('CLOSED', 'state store is closed'));
    return this.queueStep(fn, besideEngineWrite);
  }

  /** Internal steps (snapshot retention) that may still run while close drains the queue. */
  private queueStep<T>(fn: () => Promise<T> | T, besideEngineWrite = false): Promise<T> {
    const run = this.queue.then(async () => {
      if (!besideEngineWrite) await this.drainEngineWrite();
      this.latch.check();
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Waits until the last commit's engine batch is written or failed (then the store is latched). */
  private async drainEngineWrite(): Promise<void> {
    while (this.engineWrite) await this.engineWrite;
  }

  /** Waits for background snapshot steps; with `rethrow`, reports (once) the first one that failed. */
  private async settleBackground(rethrow = false): Promise<void> {
    await this.background;
    const err = this.backgroundError;
    this.backgroundError = undefined;
    if (rethrow && err !== undefined) throw err;
  }
  private backgroundError: unknown;

  /** Read-only opens: the private engine copy, removed at close. */
  private scratch: string | undefined;
  private removeScratch(): void {
    if (this.scratch === undefined) return;
    try {
      removeTree(this.fs, this.scratch);
      this.scratch = undefined;
    } catch (err) {
      this.warn('could not remove the inspection copy', { dir: this.scratch, error: describe(err) });
    }
  }

  private warn(message: string, details: Record<string, unknown> = {}): void {
    this.warnings.push(message);
    this.options.onWarning?.(message, details);
  }

  /** Releases everything after a failed open. */
  private async abandon(): Promise<void> {
    await this.drainEngineWrite();
    await this.awaitCheckpointPreparation().catch(() => undefined);
    await runAllThenThrowFirst([
      () => this.kv?.close(),
      () => this.wal?.close(),
      () => this.lock?.release(),
      () => this.pool?.close(),
    ]).catch(() => undefined);
    this.removeScratch();
  }
}

/** A read-only view of committed state at one height, on a private engine clone. */
export class StateView {
  private closed = false;

  constructor(
    private kv: OrderedKv,
    private readonly dir: string,
    private readonly fs: FileSystem,
    private readonly hasher: LtHasher,
    private readonly meta: MetaRecord,
  ) {}

  get version(): number {
    return this.meta.height;
  }
  private readonly readRow = (family: Family, key: Uint8Array): Uint8Array | undefined => {
    if (this.closed) throw new CairnError('CLOSED', 'state view is closed');
    return this.kv.get(kvKey(family, key));
  };
  get(module: string, key: Uint8Array): Uint8Array | undefined {
    return readLogical(this.readRow, module, key);
  }
  blockHeightModified(module: string, key: Uint8Array): number | undefined {
    return readHeightModified(this.readRow, module, key);
  }
  committedRoot(): Uint8Array {
    return this.hasher.checksum(LtHash.sum(this.meta.roots));
  }
  familyRoots(): Record<Family, Uint8Array> {
    const out = {} as Record<Family, Uint8Array>;
    FAMILIES.forEach((f, i) => {
      out[f] = this.hasher.checksum(this.meta.roots[i]!);
    });
    return out;
  }
  /** Physical rows in engine order (family, then key). */
  async *rows(): AsyncGenerator<{ family: Family; key: Uint8Array; value: Uint8Array }> {
    for (const family of FAMILIES) {
      for await (const r of scanFamily(this.kv, family)) yield { family, ...r };
    }
  }
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.kv.close();
    removeTree(this.fs, this.dir);
  }
}

/** All rows of one family, physical keys (tag stripped), in bounded chunks. */
async function* scanFamily(
  kv: OrderedKv,
  family: Family,
): AsyncGenerator<{ key: Uint8Array; value: Uint8Array }> {
  const tag = familyTag(family);
  let gt: Uint8Array | undefined;
  const lt = new Uint8Array([tag + 1]);
  for (;;) {
    const chunk = await kv.range({
      ...(gt ? { gt } : { gte: new Uint8Array([tag]) }),
      lt,
      limit: SCAN_CHUNK,
    });
    for (const e of chunk) yield { key: e.key.subarray(1), value: e.value };
    if (chunk.length < SCAN_CHUNK) return;
    gt = chunk[chunk.length - 1]!.key;
  }
}

function decodeMetaFrom(kv: OrderedKv, key: Uint8Array, what: string): MetaRecord | undefined {
  const bytes = kv.get(key);
  return bytes === undefined ? undefined : decodeMeta(bytes, what);
}
