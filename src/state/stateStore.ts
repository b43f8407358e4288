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
 *
 * This file is the public API (everything callers import from src/state comes from here) and does
 * little itself: `storeCore.ts` holds one open store's state and its writer queue, and each job has
 * its own module: applyBlock (change sets → rows, LtHash), commitBlock (WAL first, engine batch
 * behind the ack), blockBatch, stateWal, engineRebuild (snapshot clone + replay), snapshotWriter,
 * retention, rollback, markerFiles, recovery (open), stateView, exportState, importState, verify.
 */
import * as os from 'node:os';
import { acquireDirLock } from '../io/dirLock.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import { toHex } from '../lib/bytes.ts';
import { CairnError, ioFatal } from '../lib/errors.ts';
import { runAllThenThrowFirst } from '../lib/lifecycle.ts';
import { applyBlock } from './applyBlock.ts';
import { writeCheckpoint } from './blockBatch.ts';
import { commitPendingBlock } from './commitBlock.ts';
import { FAMILIES, type Family } from './encoding.ts';
import { exportState } from './exportState.ts';
import { importState } from './importState.ts';
import { LevelKvHost } from './kvHost.ts';
import { LtHash, sharedLtHasher } from './ltHash.ts';
import { readImportMarker, readRollbackIntent } from './markerFiles.ts';
import { readHeightModified, readLogical } from './reader.ts';
import { emptyMeta, type FamilyStats } from './records.ts';
import { recoverReadOnly, recoverWritable } from './recovery.ts';
import { rollbackTo } from './rollback.ts';
import { listSnapshotHeights, readCurrent } from './snapshots.ts';
import { takeSnapshot } from './snapshotWriter.ts';
import { openView, type StateView } from './stateView.ts';
import { positionWal } from './stateWal.ts';
import { caller, StoreCore } from './storeCore.ts';
import type {
  ImportOptions,
  NamedChangeSet,
  SnapshotResult,
  StateStoreOptions,
  VerifyReport,
} from './storeTypes.ts';
import { verifyState } from './verify.ts';

export { StateView } from './stateView.ts';
export {
  IMPORT_MARKER_FILE,
  type ImportOptions,
  KV_DIR,
  type KVPair,
  type NamedChangeSet,
  ROLLBACK_INTENT_FILE,
  type SnapshotResult,
  type StateStoreOptions,
  type VerifyFamilyReport,
  type VerifyReport,
  VIEWS_DIR,
  WAL_DIR,
} from './storeTypes.ts';

/**
 * A `hashWorkers` value sized to the machine: one fewer than the cores Node may use (the writer
 * thread hashes a share too), at most 3; 0 on a single core. The default of `hashWorkers`.
 */
export function suggestedHashWorkers(): number {
  return Math.max(0, Math.min(3, os.availableParallelism() - 1));
}

/**
 * The public face of the store: reads answer here; every other call hands the work to the module
 * that does that job (see the file comment). What one open store holds is `StoreCore`.
 */
export class StateStore {
  readonly warnings: string[];

  private constructor(private readonly core: StoreCore) {
    this.warnings = core.warnings;
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
      store = new StateStore(
        new StoreCore(fs, host, dataDir, hasher, options, lock, options.readOnly ? 0 : workers),
      );
      if (options.readOnly) await recoverReadOnly(store.core);
      else await recoverWritable(store.core);
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
    return this.core.committed.height;
  }
  /** Height of the buffered block, or 0. */
  get pendingVersion(): number {
    return this.core.pendingHeight;
  }

  get(module: string, key: Uint8Array): Uint8Array | undefined {
    this.core.checkOpen();
    return readLogical(this.core.readRow, module, key);
  }
  /**
   * Like `get`, but committed state only: the pending block is ignored. Each engine read is atomic
   * with respect to a commit's single batch, so it never sees half a block.
   */
  getCommitted(module: string, key: Uint8Array): Uint8Array | undefined {
    this.core.checkOpen();
    return readLogical(this.core.readCommittedRow, module, key);
  }

  has(module: string, key: Uint8Array): boolean {
    return this.get(module, key) !== undefined;
  }
  blockHeightModified(module: string, key: Uint8Array): number | undefined {
    this.core.checkOpen();
    return readHeightModified(this.core.readRow, module, key);
  }

  /** BLAKE3-256 of the working LtHash (committed state plus the pending block). */
  workingRoot(): Uint8Array {
    return this.core.hasher.checksum(LtHash.sum(this.core.working.roots));
  }
  committedRoot(): Uint8Array {
    return this.core.committedRoot();
  }
  familyRoots(): Record<Family, Uint8Array> {
    const out = {} as Record<Family, Uint8Array>;
    FAMILIES.forEach((f, i) => {
      out[f] = this.core.hasher.checksum(this.core.committed.roots[i]!);
    });
    return out;
  }
  familyStats(): Record<Family, FamilyStats> {
    const out = {} as Record<Family, FamilyStats>;
    FAMILIES.forEach((f, i) => {
      out[f] = { ...this.core.committed.stats[i]! };
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
      height: this.core.committed.height,
      root: toHex(this.committedRoot()),
      snapshots: listSnapshotHeights(this.core.fs, this.core.snapshotsDir),
      current: readCurrent(this.core.fs, this.core.dataDir),
      wal: { first: this.core.wal?.firstIndex ?? 0, next: this.core.wal?.nextIndex ?? 0 },
      checkpoint: this.core.lastCheckpoint,
      rollbackIntent: readRollbackIntent(this.core.fs, this.core.dataDir),
      importInProgress: readImportMarker(this.core.fs, this.core.dataDir),
    };
  }

  // ---- writes -----------------------------------------------------------------------------------

  /** Buffers one block's writes at height `height` (may repeat for the same height). Atomic. */
  applyChangeSets(
    height: number,
    changeSets: readonly (NamedChangeSet | null | undefined)[] | null,
  ): Promise<void> {
    return this.core.enqueue(() => applyBlock(this.core, height, changeSets ?? []), true);
  }

  /** Persists the buffered block (possibly empty) as `height`; resolves once it is durable. */
  commit(height: number): Promise<number> {
    return this.core.enqueue(() => commitPendingBlock(this.core, height), true);
  }

  commitBlock(height: number, changeSets: readonly NamedChangeSet[]): Promise<number> {
    return this.core.enqueue(async () => {
      await applyBlock(this.core, height, changeSets);
      return commitPendingBlock(this.core, height);
    }, true);
  }

  /**
   * Resolves once every committed block's engine batch has been written (commit resolves at the
   * WAL record's durability; the batch follows). Rejects if the store is latched.
   */
  engineWritten(): Promise<void> {
    return this.core.enqueue(() => undefined);
  }

  /**
   * Seeds an empty store whose history starts at block `first` (> 0): afterwards the store is at
   * height first-1 with the empty root and the next commit is `first`. Atomic: one synced checkpoint
   * batch; the WAL is then positioned at `first` (an open after a crash in between does the same).
   */
  setInitialVersion(first: number): Promise<void> {
    return this.core.enqueue(async () => {
      this.core.checkWritable();
      if (!Number.isSafeInteger(first) || first < 1)
        throw caller(`initial version must be ≥ 1, got ${first}`);
      if (this.core.committed.height !== 0 || this.core.pendingHeight !== 0 || this.core.wal!.count > 0) {
        throw new CairnError(
          'CONFLICT',
          'setInitialVersion needs a fresh store (nothing committed, empty WAL)',
          {
            details: { height: this.core.committed.height },
          },
        );
      }
      if (first === 1) return;
      this.core.committed = emptyMeta(first - 1);
      await writeCheckpoint(this.core);
      await positionWal(this.core);
      this.core.resetWorking();
    });
  }

  // ---- snapshots, rollback, views, export/import, verification ----------------------------------

  /** Snapshot of the committed state; a no-op if one exists at this height. */
  snapshot(): Promise<SnapshotResult> {
    return takeSnapshot(this.core);
  }

  /**
   * Rewinds to `target` (a retained height ≤ the tip): afterwards the store is at `target` with that
   * height's root, and every snapshot, WAL record and row above it is gone. A durable intent record
   * is written first; if the process dies, open finishes the rollback. An unreachable target is
   * refused before anything changes.
   */
  rollback(target: number): Promise<void> {
    return rollbackTo(this.core, target);
  }

  /** An isolated read-only view of committed state at `height` (0 = the committed tip). */
  openView(height = 0): Promise<StateView> {
    return openView(this.core, height);
  }

  /**
   * Streams the committed state at `height` (0 = tip) in the export format to `sink`. Returns the
   * row count and root. Reads a private view, so commits may continue meanwhile.
   */
  exportState(
    height: number,
    sink: (chunk: Uint8Array) => void | Promise<void>,
    onProgress?: (p: { rows: number; bytes: number }) => void,
  ): Promise<{ height: number; rows: number; root: Uint8Array }> {
    return exportState(this.core, height, sink, onProgress);
  }

  /**
   * Replaces the whole store with an exported state (see `importState.ts`). A refused input leaves
   * the purged store empty at height 0 and usable, and its error passes through unlatched; a
   * store-side failure latches, and the next open wipes the half import.
   */
  importState(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: ImportOptions = {},
  ): Promise<{ height: number; rows: number; root: Uint8Array }> {
    return importState(this.core, source, options);
  }

  /** Recomputes every family root and its stats by a full scan and compares with the committed ones. */
  verify(): Promise<VerifyReport> {
    return verifyState(this.core);
  }

  // ---- lifecycle --------------------------------------------------------------------------------

  /** Waits for queued work, writes a synced checkpoint, closes the engine, the WAL and the lock. */
  close(): Promise<void> {
    this.core.closing ??= (async () => {
      await this.core.settleBackground();
      await this.core.queue.catch(() => undefined);
      await this.core.drainEngineWrite();
      await this.core.awaitCheckpointPreparation();
      await runAllThenThrowFirst([
        async () => {
          if (
            !this.core.options.readOnly &&
            !this.core.latch.error &&
            this.core.kv &&
            this.core.committed.height > this.core.lastCheckpoint
          ) {
            await writeCheckpoint(this.core);
          }
        },
        () => this.core.kv?.close(),
        () => this.core.wal?.close(),
        () => this.core.lock?.release(),
        () => this.core.pool?.close(),
        () => this.core.removeScratch(),
      ]);
      this.core.kv = undefined;
      this.core.lock = undefined;
      // An engine batch written behind an acknowledged commit failed (perhaps during this close's
      // own drain): the store is latched and nothing else may have told the caller. The block is
      // safe in the WAL (the next open replays it), but a close that resolved would let a node shut
      // down believing its engine healthy (disk full, EIO). Other latches rejected the call that
      // caused them (a WAL latch also fails the WAL's close above); their close is unchanged.
      if (this.core.engineWriteFailed && this.core.latch.error) throw this.core.latch.error;
    })();
    return this.core.closing;
  }

  /** Releases everything after a failed open. */
  private async abandon(): Promise<void> {
    await this.core.drainEngineWrite();
    await this.core.awaitCheckpointPreparation().catch(() => undefined);
    await runAllThenThrowFirst([
      () => this.core.kv?.close(),
      () => this.core.wal?.close(),
      () => this.core.lock?.release(),
      () => this.core.pool?.close(),
    ]).catch(() => undefined);
    this.core.removeScratch();
  }
}
