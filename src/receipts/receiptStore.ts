import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openAbFile } from '../io/abFile.ts';
import type { AbSnapshotFile } from '../io/abFile.types.ts';
import { acquireDirLock, type DirLock } from '../io/dirLock.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import { ClassicLevelKv } from '../kv/classicLevelKv.ts';
import { settleCompaction } from '../kv/compactionBacklog.ts';
import { openIndexCopy, removeTreeBestEffort as removeTree } from '../kv/indexCopy.ts';
import type { OrderedKv } from '../kv/orderedKv.ts';
import { bytesEqual } from '../lib/bytes.ts';
import { CairnError, FatalLatch, ioFatal, isCairnError } from '../lib/errors.ts';
import { Wal } from '../wal/wal.ts';
import type { ArchiveEngine } from './archiveEngine.ts';
import { checkArchiveFile, crcOfOpenFile, crcOfOpenFileSync, type FileSum } from './archiveFileCheck.ts';
import { loadBloomHasher } from './bloom.ts';
import {
  decodeBlockEntry,
  type EncodedBlock,
  encodeBlock,
  encodeBlockEntry,
  entryChecksum,
} from './codec.ts';
import { DuckDbArchive, type DuckDbArchiveOptions } from './duckdbArchive.ts';
import { HotTier } from './hotTier.ts';
import {
  type ArchiveFileEntry,
  decodeState,
  emptyState,
  encodeState,
  type FileRef,
  type StoreState,
} from './manifest.ts';
import { DEFAULT_POSTING_BUCKET_BLOCKS, MAX_POSTING_BUCKET_BLOCKS } from './postings.ts';
import { type LiveFile, ReceiptReads, type View } from './receiptReads.ts';
import type { BlockEntry, BlockReceiptsInput, Log, LogFilter, LogQueryOptions, Receipt } from './types.ts';
import { type QueuedWrite, WriteQueue } from './writeQueue.ts';

export interface ReceiptStoreOptions {
  /** Data directory: `wal/`, `hot/` (LevelDB) and `archive/` (Parquet files + MANIFEST) live here. */
  dir: string;
  /** Cairn's own files (WAL, manifest, archive files' fsync/rename). Default: the real file system. */
  fs?: FileSystem;
  /**
   * Take the directory lock (`LOCK`, `.lock/`: one writer process per directory; a second opener
   * gets LOCKED before it touches the WAL). Default: on for writable opens on the real file system.
   */
  lockDir?: boolean;
  /** Hot-tier engine. Default: classic-level at `<dir>/hot`. */
  kv?: OrderedKv;
  /** LevelDB block cache of the default hot-tier engine. Default 64 MiB. */
  hotCacheBytes?: number;
  /**
   * LevelDB memtable of the default hot-tier engine (flushed to a table file when full). Default
   * HOT_WRITE_BUFFER_BYTES.
   */
  hotWriteBufferBytes?: number;
  /** Archive engine. Default: DuckDB writing Parquet. */
  archive?: ArchiveEngine;
  /**
   * Options of the default archive engine (ignored with `archive`): memory limit and spill cap of
   * its two DuckDB instances, threads, row groups. The spill directory is always the store's own.
   */
  duckdb?: Omit<DuckDbArchiveOptions, 'spillDirectory'>;
  /** Blocks per archive file; files start at multiples of it (the first may start later). Default 1,000. */
  blocksPerFile?: number;
  /**
   * Blocks per posting bucket of the hot tier (postings.ts), ≤ 65,536. Default 1,024. Part of the
   * hot tier's layout: opening with another value rebuilds the hot tier. Tests use small ones.
   */
  postingBucketBlocks?: number;
  /** Blocks the hot tier keeps (older ones are answered by the archive). Default: all. */
  hotRetentionBlocks?: number;
  /** Blocks kept at all; older archive files are deleted. Default: all. */
  archiveRetentionBlocks?: number;
  /** Writes that may wait in the queue before BACKPRESSURE. Default 1,024. */
  maxQueuedWrites?: number;
  /** Widest block range one log query may cover. Default 100,000. */
  maxBlockRange?: number;
  /** Most logs one query may return. Default 10,000. */
  maxResults?: number;
  /** Most bytes (approximate) one query may return. Default 64 MiB. */
  maxResultBytes?: number;
  /** WAL segment size. Default 64 MiB. */
  walSegmentBytes?: number;
  /**
   * Largest encoded block entry (a block's receipts and logs) accepted: the receipt WAL's record
   * limit. A larger block is refused with RECORD_TOO_LARGE and nothing is written. Default 16 MiB;
   * chains whose blocks carry more log data raise it. Only appends check it, so lowering it never
   * makes stored blocks unreadable.
   */
  maxBlockEntryBytes?: number;
  /**
   * Archive windows that completed before the last stop (default true). Inspection tools pass false
   * so that opening a directory never writes an archive file under a span they do not know.
   */
  rotateAtOpen?: boolean;
  /**
   * Inspection (the CLI): nothing in `dir` is created, written, repaired or deleted. The WAL and
   * manifest are read in place, the hot tier is opened on a private scratch copy (LevelDB rewrites
   * its files at open), recovery runs in memory only, a damaged archive file is CORRUPT instead of
   * rebuilt, and writes and prunes are refused. A missing directory is NOT_FOUND.
   */
  readOnly?: boolean;
}

/** Where the store stands; every field is a block number (-1: none). */
export interface ReceiptRanges {
  /** First block ever accepted (-1 while empty). */
  first: number;
  /** Reads below this fail with PRUNED. */
  floor: number;
  /** Blocks below this (and ≥ floor) are served by the archive. */
  hotFloor: number;
  /** Highest block of a closed archive file (-1: none). */
  archivedThrough: number;
  /** Highest acknowledged block (-1: none). */
  latest: number;
}

const MANIFEST = 'MANIFEST';
/** DuckDB's spill files (scratch; see DuckDbArchiveOptions.spillDirectory). */
export const SPILL_DIR = 'duckdb-spill';
const WRITE_GROUP = 256;
/**
 * The hot tier's default LevelDB memtable: LevelDB's own 4 MiB. Measured with the receipts bench
 * (1M logs, 2-core machine shared with other work): 32 MiB cuts the compaction during ingest (10k
 * blocks: 26 level-0 tables and 92 MB compacted at 4 MiB, 4 tables and none at 32 MiB; 40k blocks:
 * ~500 MB versus ~280 MB compacted), but the compaction it defers then runs after a reopen, and
 * the archive-only 10k-block query measured 14-22 ms p50 instead of 9-12 ms alongside it. Ingest
 * gains were within the noise of the loaded machine, so the default stays; `hotWriteBufferBytes`
 * sets it.
 */
export const HOT_WRITE_BUFFER_BYTES = 4 << 20;
/**
 * Longest a close waits for the hot tier's due compaction (settleHotTier). Measured after the 1M-log
 * bench's ingest: see bench/receipts.ts (closeAfterIngestMs).
 */
export const HOT_SETTLE_MAX_WAIT_MS = 10_000;

/** A window whose files are being written: temporary names until finishConversion lists them. */
interface Conversion {
  first: number;
  last: number;
  names: { receipts: string; logs: string };
  tmp: { receipts: string; logs: string };
  rows: Promise<{ receiptRows: number; logRows: number }>;
  /**
   * Both temporary files checksummed and fsynced once the engine is done (receipts, logs). Runs as
   * soon as `rows` resolves, off the write loop: the fsyncs no longer hold up the writes queued
   * behind the rotation's task. Rejects with the typed I/O error; finishConversion latches it.
   * Crash order is unchanged: finishConversion renames only after this fsync completed, so a listed
   * file's bytes are durable; a crash before the rename leaves unlisted `.tmp` files (deleted at open).
   */
  sealed: Promise<FileSum[]>;
  /** Rewrites the trailing listed file (recovery) instead of adding one. */
  replaces?: boolean;
}

/** A write group's hot-tier batch in flight, and what the next group needs to know of it. */
interface HotWrite {
  /** The block after the group's last one. */
  next: number;
  /** The group's blocks (hash, entry CRC), for re-submissions that arrive meanwhile. */
  pending: Map<number, { hash: Uint8Array; crc: number }>;
  /** Settles once the batch is written and the group acknowledged (or the store latched); never rejects. */
  done: Promise<void>;
}

export class ReceiptStore {
  private state: StoreState;
  private latest: number;
  private view: View;
  /** Reference-counted handles of every listed file (also those below the floor, until retired). */
  private readonly live = new Map<ArchiveFileEntry, LiveFile>();
  /** Views with reads in progress (the lowest hot floor among them bounds the hot-body prune). */
  private readonly readViews = new Set<View>();
  /** Hot bodies below this may be deleted; from it on they are all there. Memory only (see pruneHotBodies). */
  private bodiesPrunedTo: number;
  /** A deferred hot-body prune is queued on the write loop. */
  private hotPruneQueued = false;
  /** Close waiting for the reads in progress to release their views. */
  private readsDrained: (() => void) | undefined;
  private readonly latch = new FatalLatch();
  private readonly queue: WriteQueue<EncodedBlock>;
  private closing: Promise<void> | undefined;
  private closed = false;
  /** How the close's wait for the hot tier's compaction went (diagnostics: tests, the bench). */
  lastHotSettle: { waitedMs: number; settled: boolean } | undefined;
  /** The window whose files the engine is writing, if any (one at a time; see rotateDue). */
  private conversion: Conversion | undefined;
  /** The last write group's hot-tier write, while it is in flight (see writeGroup). */
  private hotWrite: HotWrite | undefined;
  /** A rotation task is queued (see queueRotationIfDue). */
  private rotationQueued = false;
  /** Held from open to close (writable opens on the real file system, see `lockDir`). */
  private dirLock: DirLock | undefined;
  /** A read-only open's own spill directory (outside the store), removed at close. */
  private privateSpill: string | undefined;
  private readonly blocksPerFile: number;
  private readonly archiveDir: string;
  /** The read path (receiptReads.ts), on this store's views. */
  private readonly reads: ReceiptReads;

  private constructor(
    private readonly fs: FileSystem,
    private readonly options: ReceiptStoreOptions,
    private readonly manifest: AbSnapshotFile,
    state: StoreState,
    private readonly wal: Wal,
    private readonly hot: HotTier,
    private readonly engine: ArchiveEngine,
  ) {
    this.state = state;
    this.blocksPerFile = options.blocksPerFile ?? 1000;
    this.archiveDir = path.join(options.dir, 'archive');
    this.latest = -1;
    this.view = { floor: 0, hotFloor: 0, latest: -1, files: [], readers: 0 };
    this.bodiesPrunedTo = state.hotFloor;
    this.queue = new WriteQueue(
      options.maxQueuedWrites ?? 1024,
      WRITE_GROUP,
      (g) => this.writeGroup(g),
      () => this.settleWrites(),
    );
    this.reads = new ReceiptReads({
      checkReadable: () => this.checkReadable(),
      acquire: () => this.acquire(),
      release: (v) => this.release(v),
      checkBeforeRead: (files) => this.checkBeforeRead(files),
      hotFloor: () => this.state.hotFloor,
      bodiesPrunedTo: () => this.bodiesPrunedTo,
      hot,
      engine,
      guards: options,
    });
  }

  static async open(options: ReceiptStoreOptions): Promise<ReceiptStore> {
    checkPositive(options.blocksPerFile, 'blocksPerFile');
    checkPositive(options.hotRetentionBlocks, 'hotRetentionBlocks');
    checkPositive(options.archiveRetentionBlocks, 'archiveRetentionBlocks');
    checkPositive(options.maxQueuedWrites, 'maxQueuedWrites');
    checkPositive(options.maxBlockRange, 'maxBlockRange');
    checkPositive(options.maxResults, 'maxResults');
    checkPositive(options.maxResultBytes, 'maxResultBytes');
    checkPositive(options.postingBucketBlocks, 'postingBucketBlocks');
    if ((options.postingBucketBlocks ?? 0) > MAX_POSTING_BUCKET_BLOCKS) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `postingBucketBlocks must be at most ${MAX_POSTING_BUCKET_BLOCKS}, got ${options.postingBucketBlocks}`,
      );
    }
    const fs = options.fs ?? realFileSystem;
    // Before anything is read or repaired: a second writer would recover (cut) a live WAL.
    const lock =
      !options.readOnly && (options.lockDir ?? fs === realFileSystem)
        ? await acquireDirLock(options.dir)
        : undefined;
    try {
      const store = await ReceiptStore.openLocked(options, fs);
      store.dirLock = lock;
      return store;
    } catch (err) {
      await lock?.release().catch(() => undefined);
      throw err;
    }
  }

  private static async openLocked(options: ReceiptStoreOptions, fs: FileSystem): Promise<ReceiptStore> {
    const archiveDir = path.join(options.dir, 'archive');
    if (options.readOnly) {
      if (!fs.exists(archiveDir)) {
        throw new CairnError('NOT_FOUND', `${options.dir} is not a receipt store (no archive/ directory)`, {
          details: { dir: options.dir },
        });
      }
    } else {
      try {
        const created = !fs.exists(archiveDir);
        fs.mkdir(archiveDir);
        if (created) {
          fs.syncDir(options.dir);
          fs.syncDir(path.dirname(options.dir));
        }
      } catch (err) {
        throw ioFatal(`creating ${archiveDir}`, err, { file: archiveDir });
      }
    }
    await loadBloomHasher();
    const { file: manifest, loaded } = openAbFile(fs, archiveDir, MANIFEST, {
      maxPayloadBytes: 8 << 20,
      readOnly: options.readOnly,
    });
    const state = loaded.payload ? decodeState(loaded.payload) : emptyState();
    const opened: { close(): unknown }[] = [manifest];
    try {
      const wal = await Wal.open({
        fs,
        dir: path.join(options.dir, 'wal'),
        durability: { mode: 'on-request' },
        // The group's fdatasync runs on the thread pool: meanwhile this thread validates and
        // encodes the blocks that keep arriving (putBlock) instead of waiting in the kernel (on
        // this thread, fdatasync was 130-390 ms of a 10,000-block ingest's CPU profile, a few ms
        // per group). Acknowledgement still follows the fsync (writeGroup).
        syncOffThread: true,
        segmentBytes: options.walSegmentBytes ?? 64 * 1024 * 1024,
        ...(options.maxBlockEntryBytes === undefined ? {} : { maxRecordBytes: options.maxBlockEntryBytes }),
        initialIndex: state.firstBlock ?? 0,
        readOnly: options.readOnly,
      });
      opened.push(wal);
      const kv =
        options.kv ??
        (options.readOnly ? await openIndexCopy(path.join(options.dir, 'hot')) : undefined) ??
        (await ClassicLevelKv.open(path.join(options.dir, 'hot'), {
          cacheBytes: options.hotCacheBytes ?? 64 << 20,
          writeBufferBytes: options.hotWriteBufferBytes ?? HOT_WRITE_BUFFER_BYTES,
        }));
      opened.push(kv);
      let engine = options.archive;
      let privateSpill: string | undefined;
      if (engine === undefined) {
        // DuckDB spills inside the store (not under the process's working directory); what a
        // killed process left there is scratch, removed before the engine starts. A read-only
        // open writes nothing in the store (a writer may own it) and must not share DuckDB's
        // default `.tmp` under the working directory with other processes either (same-named
        // spill files, see SPILL_SUBDIRS): it spills into a private scratch directory, removed
        // at close (a killed process leaves it in the system's temporary directory).
        if (options.readOnly) {
          privateSpill = path.join(
            tmpdir(),
            `cairn-receipts-spill-${process.pid}-${randomBytes(6).toString('hex')}`,
          );
          const scratch = privateSpill;
          opened.push({ close: () => removeTree(fs, scratch) });
        } else {
          removeTree(fs, path.join(options.dir, SPILL_DIR));
        }
        const spillDirectory = privateSpill ?? path.join(options.dir, SPILL_DIR);
        // DuckDB creates only the last level of each instance's own subdirectory in it.
        try {
          fs.mkdir(spillDirectory);
        } catch (err) {
          throw ioFatal(`creating ${spillDirectory}`, err, { file: spillDirectory });
        }
        engine = await DuckDbArchive.open({ ...options.duckdb, spillDirectory });
      }
      opened.push(engine);
      const store = new ReceiptStore(
        fs,
        options,
        manifest,
        state,
        wal,
        new HotTier(kv, options.postingBucketBlocks ?? DEFAULT_POSTING_BUCKET_BLOCKS),
        engine,
      );
      store.privateSpill = privateSpill;
      await store.recover();
      return store;
    } catch (err) {
      for (const o of opened.reverse()) {
        try {
          await o.close();
        } catch {
          // The open error is the one to report.
        }
      }
      throw err;
    }
  }

  // ---------------------------------------------------------------- recovery

  private archivedThrough(): number {
    return this.state.firstBlock === undefined ? -1 : this.state.nextToArchive - 1;
  }

  private async recover(): Promise<void> {
    const fs = this.fs;
    // 1. Archive directory: the manifest lists every file; anything else (a temporary file, a file
    //    renamed just before a crash, a file whose deletion was interrupted) is deleted unread.
    const listed = new Set<string>([`${MANIFEST}.a`, `${MANIFEST}.b`]);
    for (const f of this.state.files) {
      listed.add(f.receipts.name);
      listed.add(f.logs.name);
    }
    const readOnly = this.options.readOnly === true;
    let removed = false;
    for (const name of fs.readdir(this.archiveDir)) {
      if (listed.has(name) || readOnly) continue;
      this.fsCall(`deleting unlisted archive file ${name}`, () =>
        fs.unlink(path.join(this.archiveDir, name)),
      );
      removed = true;
    }
    if (removed) this.fsCall('fsync of the archive directory', () => fs.syncDir(this.archiveDir));

    const wal = this.wal;
    if (this.state.firstBlock === undefined && wal.count > 0) {
      const first = wal.firstIndex;
      const next = { ...this.state, firstBlock: first, floor: first, hotFloor: first, nextToArchive: first };
      if (readOnly) this.state = next;
      else await this.writeState(next);
    }
    const archivedThrough = this.archivedThrough();
    if (wal.count > 0 && wal.firstIndex > archivedThrough + 1) {
      throw new CairnError(
        'DATA_LOSS',
        `receipt store: blocks ${archivedThrough + 1}..${wal.firstIndex - 1} are neither archived nor in the WAL`,
      );
    }
    if (wal.count === 0 && wal.nextIndex > archivedThrough + 1) {
      throw new CairnError(
        'DATA_LOSS',
        `receipt store: the WAL ended at ${wal.nextIndex - 1} but the archive only reaches ${archivedThrough}`,
      );
    }
    this.latest = wal.count > 0 ? wal.nextIndex - 1 : archivedThrough;

    // 2. Every listed file must exist with its recorded size; the trailing one (whose blocks the
    //    WAL still holds) is checksummed and rewritten from the WAL if it is damaged or missing.
    const files = this.state.files;
    for (let i = 0; i < files.length; i++) {
      const f = files[i]!;
      if (f.last < this.state.floor) continue; // retired below
      const trailing = i === files.length - 1;
      const problem = trailing ? this.checkFileFully(f) : this.checkFileSize(f);
      if (problem === undefined) continue;
      if (wal.count > 0 && wal.firstIndex <= f.first && trailing && !readOnly) {
        await this.rewriteTrailing(f);
        continue;
      }
      throw new CairnError('CORRUPT', `archive file for blocks ${f.first}..${f.last}: ${problem}`, {
        details: { first: f.first, last: f.last },
      });
    }
    // The WAL keeps the trailing file's window (so a damaged trailing file can be rebuilt) and
    // everything after it.
    const lastFile = files[files.length - 1];
    const keepFrom = lastFile && lastFile.last === archivedThrough ? lastFile.first : archivedThrough + 1;
    if (wal.count > 0 && wal.firstIndex < keepFrom && !readOnly) {
      await this.walCall('truncation', () => wal.truncateFront(Math.min(keepFrom, wal.nextIndex)));
    }

    // 3. Retired files (below the floor) whose index cleanup may have been interrupted.
    if (!readOnly) for (const f of [...this.state.files]) if (f.last < this.state.floor) await this.retire(f);

    // 4. Hot tier: re-apply everything not covered by its synced checkpoint, from the archive where
    //    the WAL no longer has it, then from the WAL; finish an interrupted prune.
    const first = this.state.firstBlock ?? 0;
    // A hot tier of an older layout is emptied here and rebuilt below like a lost one.
    await this.hot.ensureLayout();
    let synced = this.hot.syncedThrough() ?? -1;
    // The checkpoint is only as good as the engine files around it: a LevelDB that lost CURRENT or
    // its MANIFEST starts over and replays whatever log files remain, which may hold nothing but
    // the checkpoint. Spot-check the blocks it vouches for; a hot tier that fails is rebuilt.
    if (synced >= 0 && !this.hotHoldsCheckpoint(synced)) synced = -1;
    // A hot tier without a checkpoint (new, or deleted by an operator) is rebuilt from the floor: the
    // tx-hash and block-hash indexes cover archive-only blocks too; bodies below the hot floor are
    // then removed by the prune catch-up below.
    let from = Math.max(synced + 1, synced < 0 ? this.state.floor : this.state.hotFloor, first);
    const walFrom = wal.count > 0 ? wal.firstIndex : this.latest + 1;
    if (from < walFrom && from <= this.latest) {
      await this.hot.resetPostings(from);
      for (const f of this.state.files) {
        if (f.last < from || f.first >= walFrom) continue;
        // Open checked only this file's size: its checksum goes first, since an engine handed
        // damaged bytes may return altered values, and they would go into the indexes as the chain's.
        const problem = this.checkFileFully(f);
        if (problem !== undefined) {
          throw new CairnError(
            'CORRUPT',
            `archive file for blocks ${f.first}..${f.last}: ${problem} (needed to rebuild the hot tier)`,
            { details: { first: f.first, last: f.last } },
          );
        }
        const blocks = await this.engine.readBlocks(this.filePath(f.receipts), this.filePath(f.logs));
        await this.applyToHot(
          blocks.filter((b) => b.number >= from && b.number < walFrom).map((entry) => ({ entry })),
        );
      }
      from = walFrom;
    }
    await this.hot.resetPostings(Math.max(from, walFrom));
    let pending: { entry: BlockEntry; payload: Uint8Array }[] = [];
    for (const rec of wal.iterate(Math.max(from, wal.firstIndex), wal.nextIndex)) {
      pending.push({ entry: decodeBlockEntry(rec.payload), payload: rec.payload });
      if (pending.length >= WRITE_GROUP) {
        await this.applyToHot(pending);
        pending = [];
      }
    }
    await this.applyToHot(pending);
    if (this.latest >= 0) await this.hot.writeSyncedCheckpoint(this.latest);
    const prunedTo = synced < 0 ? Math.min(this.hot.prunedTo(), this.state.floor) : this.hot.prunedTo();
    if (prunedTo < this.state.hotFloor) await this.hot.pruneBodies(prunedTo, this.state.hotFloor);
    this.bodiesPrunedTo = this.state.hotFloor;

    this.publish();
    // 5. Windows that were complete but not archived when the process stopped.
    if (this.options.rotateAtOpen !== false && !readOnly) await this.rotateDue();
  }

  /**
   * Whether the hot tier holds the first retained block and the last block its checkpoint claims
   * (matching the WAL where the WAL still has them). Cheap: a few point reads at open.
   */
  private hotHoldsCheckpoint(synced: number): boolean {
    if (this.state.firstBlock === undefined) return true;
    const probes = new Set([
      Math.max(this.state.floor, this.state.firstBlock),
      Math.min(synced, this.latest),
    ]);
    for (const block of probes) {
      if (block < this.state.floor || block > this.latest) continue;
      const meta = this.hot.blockMeta(block);
      if (meta === undefined) return false;
      if (block >= this.wal.firstIndex && block < this.wal.nextIndex) {
        for (const rec of this.wal.iterate(block, block + 1)) {
          if (entryChecksum(rec.payload) !== meta.entryCrc) return false;
        }
      }
    }
    return true;
  }

  /**
   * Stages blocks into the hot tier in one batch. `payload`: the block's encoded entry when the
   * caller has it (a WAL record: stored as read, not re-encoded from its decoded form).
   */
  private async applyToHot(blocks: readonly { entry: BlockEntry; payload?: Uint8Array }[]): Promise<void> {
    if (blocks.length === 0) return;
    const batch = this.hot.kv.batch();
    for (const { entry, payload = encodeBlockEntry(entry).payload } of blocks) {
      this.hot.stageBlock(batch, payload, entryChecksum(payload));
    }
    await this.hot.writeBatch(batch, false, 'apply');
    this.hot.postingsWritten();
  }

  private filePath(ref: FileRef): string {
    return path.join(this.archiveDir, ref.name);
  }

  private checkFileSize(f: ArchiveFileEntry): string | undefined {
    for (const ref of [f.receipts, f.logs]) {
      const p = this.filePath(ref);
      if (!this.fs.exists(p)) return `${ref.name} is missing`;
      const size = this.fs.stat(p).size;
      if (size !== ref.bytes) return `${ref.name} is ${size} bytes, the manifest says ${ref.bytes}`;
    }
    return undefined;
  }

  private checkFileFully(f: ArchiveFileEntry): string | undefined {
    const sizeProblem = this.checkFileSize(f);
    if (sizeProblem) return sizeProblem;
    for (const ref of [f.receipts, f.logs]) {
      const { crc } = this.checksumFile(this.filePath(ref));
      if (crc !== ref.crc32c) return `${ref.name} fails its checksum`;
    }
    return undefined;
  }

  /**
   * CRC-32C and size of each file, each fsynced. Both run without holding the event loop (the sum a
   * chunk per turn, the fsync on the thread pool), so the write path keeps serving meanwhile. Errors
   * are typed I/O errors; the caller latches them.
   */
  private async sealTmpFiles(files: readonly string[]): Promise<FileSum[]> {
    const out: FileSum[] = [];
    for (const file of files) {
      try {
        const h = this.fs.open(file, {});
        try {
          const sum = await crcOfOpenFile(h);
          await h.syncAsync();
          out.push(sum);
        } finally {
          h.close();
        }
      } catch (err) {
        throw ioFatal(`checksumming and syncing ${file}`, err, { file });
      }
    }
    return out;
  }

  /** CRC-32C and size of a file read through Cairn's file system. */
  private checksumFile(file: string): FileSum {
    return this.fsCall(`checksumming ${file}`, () => {
      const h = this.fs.open(file, { readOnly: true });
      try {
        return crcOfOpenFileSync(h);
      } finally {
        h.close();
      }
    });
  }

  private async rewriteTrailing(f: ArchiveFileEntry): Promise<void> {
    const c = this.startConversion(f.first, f.last);
    c.replaces = true;
    await this.finishConversion(c);
  }

  // ---------------------------------------------------------------- write path

  /**
   * Stores one block's receipts. Resolves once the block is durable (WAL fsynced) and visible to
   * reads. Blocks must arrive in order (latest + 1); re-sending a stored block with identical
   * content is acknowledged without writing, different content is a CONFLICT.
   */
  putBlock(input: BlockReceiptsInput): Promise<void> {
    if (this.closed || this.closing) return Promise.reject(closedError());
    if (this.options.readOnly) return Promise.reject(readOnlyError());
    if (this.latch.error) return Promise.reject(this.latch.error);
    let block: EncodedBlock;
    try {
      // Validated and encoded now, in the caller's turn: the queue holds no reference to its objects.
      block = encodeBlock(input);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.queue.write(block);
  }

  /**
   * One group of queued writes, pipelined with the group before it. Steps, and why this order is
   * crash-safe:
   *  1. Each new block is encoded and appended to the receipt WAL, then the WAL is fsynced. This
   *     runs while the previous group's hot-tier batch may still be being written by LevelDB (on
   *     the thread pool): the WAL is the truth, so a WAL entry that is durable before the hot tier
   *     has the block before it is what a crash between the two steps leaves anyway, and recovery
   *     replays every WAL entry above the hot tier's checkpoint.
   *  2. Only once the previous group's batch is written is this group's batch staged and written:
   *     batches reach LevelDB one at a time in block order, and a group's posting buckets are
   *     handed to the KV store by its own write (postingsWritten).
   *  3. Once this group's batch is written, `latest` moves to its last block and its writes are
   *     acknowledged: an ack follows both the WAL fsync (1) and the hot-tier write (read your writes).
   * The hot tier's synced checkpoint names `latest` and is written only by queued tasks, which wait
   * for the hot-tier write in flight (`settleWrites`), so it never claims a block whose batch has
   * not been written; a synced LevelDB write also makes every earlier batch durable.
   * A failure at any step latches the store and rejects the writes of this group and the next.
   */
  private async writeGroup(group: QueuedWrite<EncodedBlock>[]): Promise<void> {
    const prior = this.hotWrite;
    const accepted: QueuedWrite<EncodedBlock>[] = [];
    const pending = new Map<number, { hash: Uint8Array; crc: number }>();
    // Identical re-submissions: acknowledged with this group (after every earlier block's ack).
    const resubmitted: QueuedWrite<EncodedBlock>[] = [];
    let next = prior ? prior.next : this.latest + 1;
    try {
      this.latch.check();
      for (const w of group) {
        const e = w.item;
        if (this.state.firstBlock === undefined) {
          await this.writeState({
            ...this.state,
            firstBlock: e.number,
            floor: e.number,
            hotFloor: e.number,
            nextToArchive: e.number,
          });
          if (this.wal.nextIndex !== e.number) await this.walCall('reset', () => this.wal.reset(e.number));
          next = e.number;
          this.latest = e.number - 1;
          this.publish();
        }
        if (e.number > next) {
          w.reject(
            new CairnError(
              'OUT_OF_ORDER',
              `block ${e.number} is ahead of the store: the next block is ${next}`,
              {
                details: { expected: next, got: e.number },
              },
            ),
          );
          continue;
        }
        if (e.number < next) {
          const err = this.resubmission(e, e.crc, pending, prior?.pending);
          if (err) w.reject(err);
          else resubmitted.push(w);
          continue;
        }
        try {
          this.wal.append([e.payload], e.number);
        } catch (err) {
          // A block over the WAL's record limit is bad input, refused before anything was written.
          if (isCairnError(err, 'RECORD_TOO_LARGE')) {
            w.reject(err);
            continue;
          }
          throw this.latch.latch(err, 'receipt WAL append');
        }
        accepted.push(w);
        pending.set(e.number, e);
        next++;
      }
      if (accepted.length > 0) await this.walCall('fsync', () => this.wal.sync());
      if (prior) await prior.done;
      this.latch.check();
    } catch (err) {
      const latched = this.latch.latch(err, 'receipt write');
      for (const a of accepted) a.reject(latched);
      for (const w of resubmitted) w.reject(latched);
      throw latched;
    }
    if (accepted.length === 0) {
      for (const w of resubmitted) w.resolve();
      return;
    }
    let written: Promise<void>;
    try {
      const batch = this.hot.kv.batch();
      for (const a of accepted) this.hot.stageBlock(batch, a.item.payload, a.item.crc);
      written = this.hot.writeBatch(batch, false, 'apply');
    } catch (err) {
      written = Promise.reject(err);
    }
    const hotWrite: HotWrite = { next, pending, done: Promise.resolve() };
    const last = next - 1;
    hotWrite.done = written.then(
      () => {
        if (this.hotWrite === hotWrite) this.hotWrite = undefined;
        this.hot.postingsWritten();
        this.latest = last;
        this.publish();
        for (const a of accepted) a.resolve();
        for (const w of resubmitted) w.resolve();
        try {
          // Acknowledged blocks go to the archive engine ahead of their window's rotation (for
          // DuckDB: a writer thread stages them while this thread takes the next writes).
          this.engine.stageEntries?.(
            accepted[0]!.item.number,
            accepted.map((a) => a.item.payload),
          );
          this.queueRotationIfDue();
        } catch (err) {
          // `done` never rejects; the next write or task sees the latch.
          this.latch.latch(err, 'archive staging');
        }
      },
      (err: unknown) => {
        if (this.hotWrite === hotWrite) this.hotWrite = undefined;
        const latched = this.latch.latch(err, 'receipt write');
        for (const a of accepted) a.reject(latched);
        for (const w of resubmitted) w.reject(latched);
      },
    );
    this.hotWrite = hotWrite;
  }

  /**
   * Waits for the hot-tier write in flight (see writeGroup), so that a queued task sees every
   * acknowledged block in the hot tier and `latest`. Never rejects (a failure has latched the store).
   */
  private settleWrites(): Promise<void> | undefined {
    return this.hotWrite?.done;
  }

  /**
   * Queues the rotation of a window that the last acknowledgement completed (one task at a time):
   * rotation runs on the write loop, after the writes queued before it.
   */
  private queueRotationIfDue(): void {
    if (this.rotationQueued || this.state.firstBlock === undefined) return;
    const pending = this.conversion;
    const first = pending ? pending.last + 1 : this.archivedThrough() + 1;
    if (this.windowEnd(first) > this.latest) return;
    this.rotationQueued = true;
    this.queue
      .task(async () => {
        this.rotationQueued = false;
        if (this.closed || this.latch.error) return;
        try {
          await this.rotateDue(true);
        } catch (err) {
          this.latch.latch(err, 'archive rotation');
        }
      })
      .catch(() => undefined);
  }

  /** Re-submission of a block at or below latest: identical content is fine, anything else is not. */
  private resubmission(
    e: { number: number; hash: Uint8Array },
    crc: number,
    pending: Map<number, { hash: Uint8Array; crc: number }>,
    priorPending: Map<number, { hash: Uint8Array; crc: number }> | undefined,
  ): CairnError | undefined {
    const first = this.state.firstBlock ?? 0;
    if (e.number < first) {
      return new CairnError('OUT_OF_RANGE', `block ${e.number} is before the store's first block ${first}`);
    }
    if (e.number < this.state.floor) {
      return new CairnError('PRUNED', `block ${e.number} is below the floor ${this.state.floor}`, {
        details: { floor: this.state.floor },
      });
    }
    const stored = pending.get(e.number) ?? priorPending?.get(e.number) ?? this.hot.blockMeta(e.number);
    if (stored === undefined) {
      return new CairnError('CORRUPT', `hot tier has no metadata for stored block ${e.number}`);
    }
    const hash = 'hash' in stored ? stored.hash : undefined;
    const storedCrc = 'crc' in stored ? stored.crc : (stored as { entryCrc: number }).entryCrc;
    if (hash && bytesEqual(hash, e.hash) && storedCrc === crc) return undefined;
    return new CairnError('CONFLICT', `block ${e.number} is already stored with different receipts`, {
      details: { block: e.number },
    });
  }

  private windowEnd(first: number): number {
    return Math.floor(first / this.blocksPerFile) * this.blocksPerFile + this.blocksPerFile - 1;
  }

  /**
   * Archives every complete window. Runs on the write loop (or during open). In the background mode
   * (after a write group) a window's files are written off the write loop: the engine converts
   * while later blocks are written, and the rest of the rotation (checksums, rename, manifest, WAL
   * truncation) runs as a queued task once it is done. One window converts at a time, so the
   * archive lags the latest block by at most one window plus the blocks written meanwhile; a second
   * due window waits for the first (backpressure on the writes).
   */
  private async rotateDue(background = false): Promise<void> {
    for (;;) {
      if (this.state.firstBlock === undefined) return;
      const pending = this.conversion;
      const first = pending ? pending.last + 1 : this.archivedThrough() + 1;
      const last = this.windowEnd(first);
      if (pending) {
        if (last > this.latest && background) return;
        await this.finishConversion(pending);
        continue;
      }
      if (last > this.latest) return;
      const c = this.startConversion(first, last);
      if (!background) continue;
      c.rows.then(
        () => this.finishLater(c),
        () => this.finishLater(c),
      );
      return;
    }
  }

  /** Queues the end of a background rotation (and any window that became due meanwhile). */
  private finishLater(c: Conversion): void {
    this.queue
      .task(async () => {
        if (this.conversion !== c || this.closed) return;
        try {
          await this.finishConversion(c);
          await this.rotateDue(true);
        } catch (err) {
          this.latch.latch(err, 'archive rotation');
        }
      })
      .catch(() => undefined);
  }

  /** Window [first, last] from the WAL, as stored (encoded entries). */
  private walEntries(first: number, last: number): Uint8Array[] {
    const entries: Uint8Array[] = [];
    for (const rec of this.wal.iterate(first, last + 1)) entries.push(rec.payload);
    if (entries.length !== last - first + 1) {
      throw new CairnError('DATA_LOSS', `receipt WAL holds ${entries.length} of blocks ${first}..${last}`);
    }
    return entries;
  }

  /** Starts writing the files of [first, last] under temporary names (the engine works on its own). */
  private startConversion(first: number, last: number): Conversion {
    const names = { receipts: `receipts_${first}_${last}.parquet`, logs: `logs_${first}_${last}.parquet` };
    const tmp = {
      receipts: path.join(this.archiveDir, `${names.receipts}.tmp`),
      logs: path.join(this.archiveDir, `${names.logs}.tmp`),
    };
    for (const p of [
      tmp.receipts,
      tmp.logs,
      path.join(this.archiveDir, names.receipts),
      path.join(this.archiveDir, names.logs),
    ]) {
      if (this.fs.exists(p)) this.fsCall(`deleting stale ${p}`, () => this.fs.unlink(p));
    }
    let rows: Promise<{ receiptRows: number; logRows: number }>;
    try {
      const engine = this.engine;
      rows = engine.writeWindowEntries
        ? engine.writeWindowEntries(
            first,
            last,
            (from, to) => this.walEntries(from, to),
            tmp.receipts,
            tmp.logs,
          )
        : engine.writeWindow(
            this.walEntries(first, last).map((e) => decodeBlockEntry(e)),
            tmp.receipts,
            tmp.logs,
          );
    } catch (err) {
      rows = Promise.reject(err);
    }
    // Observed by finishConversion; until then a rejection must not count as unhandled.
    rows.catch(() => undefined);
    const sealed = rows.then(() => this.sealTmpFiles([tmp.receipts, tmp.logs]));
    sealed.catch(() => undefined);
    const c: Conversion = { first, last, names, tmp, rows, sealed };
    this.conversion = c;
    return c;
  }

  /**
   * Ends a rotation: the files are fsynced, checksummed and renamed, the manifest lists them, the
   * WAL drops the window before. On a latched store it only waits for the engine to stop.
   */
  private async finishConversion(c: Conversion): Promise<void> {
    if (this.conversion !== c) return;
    // `sealed` starts once `rows` resolved and rejects when it rejects, so one await serves the
    // engine's failure and the sealing's alike, and the files are settled (nothing touches them)
    // whichever way it ends. On a latched store nothing of this window is listed.
    let rows: { receiptRows: number; logRows: number };
    let sums: FileSum[];
    try {
      [rows, sums] = await Promise.all([c.rows, c.sealed]);
    } catch (err) {
      this.conversion = undefined;
      if (this.latch.error) return;
      throw this.latch.latch(err, 'archive rotation');
    }
    if (this.latch.error) {
      this.conversion = undefined;
      return;
    }
    const refs: FileRef[] = [];
    for (const [i, which] of (['receipts', 'logs'] as const).entries()) {
      const name = c.names[which];
      const { crc, bytes } = sums[i]!;
      this.fsCall(`renaming ${name}`, () => this.fs.rename(c.tmp[which], path.join(this.archiveDir, name)));
      refs.push({ name, bytes, crc32c: crc });
    }
    this.fsCall('fsync of the archive directory', () => this.fs.syncDir(this.archiveDir));
    const entry: ArchiveFileEntry = {
      first: c.first,
      last: c.last,
      receiptRows: rows.receiptRows,
      logRows: rows.logRows,
      receipts: refs[0]!,
      logs: refs[1]!,
    };
    if (c.replaces) {
      const files = [...this.state.files];
      files[files.length - 1] = entry;
      await this.writeState({ ...this.state, files });
      this.conversion = undefined;
      return;
    }
    await this.writeState({ ...this.state, files: [...this.state.files, entry], nextToArchive: c.last + 1 });
    this.conversion = undefined;
    // The hot tier must hold everything the WAL is about to drop.
    await this.hot.writeSyncedCheckpoint(this.latest);
    // Keep this window in the WAL until the next one closes: a damaged trailing file is rebuilt from it.
    if (this.wal.firstIndex < c.first)
      await this.walCall('truncation', () => this.wal.truncateFront(c.first));
    this.publish();
    await this.applyRetention();
  }

  /** Every complete window archived, its files listed (for callers that measure or hand over). */
  waitForArchive(): Promise<void> {
    if (this.closed || this.closing) return Promise.reject(closedError());
    return this.queue.task(async () => {
      this.latch.check();
      if (this.options.readOnly) return;
      await this.rotateDue(false);
      this.latch.check();
    });
  }

  private async applyRetention(): Promise<void> {
    const hotKeep = this.options.hotRetentionBlocks;
    if (hotKeep !== undefined) {
      const target = Math.min(this.latest - hotKeep + 1, this.archivedThrough() + 1);
      if (target > this.state.hotFloor) await this.raiseHotFloor(target);
    }
    const keep = this.options.archiveRetentionBlocks;
    if (keep !== undefined) await this.pruneInternal(this.latest - keep + 1);
  }

  private async raiseHotFloor(target: number): Promise<void> {
    await this.writeState({ ...this.state, hotFloor: target });
    this.publish();
    await this.pruneHotBodies();
  }

  /**
   * Deletes the hot bodies below the hot floor that no reader can still reach: a view taken before
   * the floor moved sends its blocks from its own (lower) hot floor on to the hot tier, so their
   * bodies stay until its last reader is done (then `release` queues this again). The writer never
   * waits for a reader; bodies left behind by a crash are deleted at open (the persisted hot floor
   * against the hot tier's prune checkpoint). Runs on the write loop.
   */
  private async pruneHotBodies(): Promise<void> {
    let target = this.state.hotFloor;
    for (const v of this.readViews) target = Math.min(target, v.hotFloor);
    if (target <= this.bodiesPrunedTo) return;
    await this.hot.pruneBodies(this.bodiesPrunedTo, target);
    this.bodiesPrunedTo = target;
  }

  /** After the last reader below the hot floor left: the prune it held back, on the write loop. */
  private queueDeferredHotPrune(): void {
    if (this.hotPruneQueued || this.closing || this.closed || this.options.readOnly) return;
    if (this.bodiesPrunedTo >= this.state.hotFloor) return;
    this.hotPruneQueued = true;
    this.queue
      .task(async () => {
        this.hotPruneQueued = false;
        if (this.closed || this.latch.error) return;
        try {
          await this.pruneHotBodies();
        } catch (err) {
          this.latch.latch(err, 'hot-tier prune');
        }
      })
      .catch(() => {
        // Latched above; the next write or prune reports it.
      });
  }

  /**
   * Raises the floor to `block` (capped at the first block not yet archived, since the archive is
   * the only copy of older blocks once the hot tier drops them). The new floor is persisted and
   * honoured by reads before anything is deleted. Windows still converting in the background are
   * archived first. Resolves with the floor in effect.
   */
  pruneBelow(block: number): Promise<number> {
    if (!Number.isSafeInteger(block) || block < 0) {
      return Promise.reject(
        new CairnError('INVALID_ARGUMENT', `prune target must be a block number, got ${block}`),
      );
    }
    if (this.closed || this.closing) return Promise.reject(closedError());
    if (this.options.readOnly) return Promise.reject(readOnlyError());
    return this.queue.task(async () => {
      this.latch.check();
      try {
        // Windows converting in the background are listed first: a prune sees every due window
        // archived, as it would if rotation ran inline on the write path.
        await this.rotateDue(false);
        await this.pruneInternal(block);
      } catch (err) {
        throw this.latch.latch(err, 'prune');
      }
      return this.state.floor;
    });
  }

  private async pruneInternal(block: number): Promise<void> {
    const target = Math.min(block, this.archivedThrough() + 1);
    if (target <= this.state.floor) return;
    const hotFloor = Math.max(this.state.hotFloor, target);
    await this.writeState({ ...this.state, floor: target, hotFloor });
    this.publish();
    await this.pruneHotBodies();
    for (const f of [...this.state.files]) if (f.last < target) await this.retire(f);
  }

  /** Removes a file below the floor: its index entries, then its manifest entry, then (unreferenced) the file. */
  private async retire(f: ArchiveFileEntry): Promise<void> {
    const receiptsPath = this.filePath(f.receipts);
    if (this.fs.exists(receiptsPath)) {
      // The engine parses only a file that matches the manifest (open never checked a file below the
      // floor); summed a chunk per turn, since a prune runs on the write loop. A damaged one, about
      // to be deleted anyway, must not stop the prune (and latch the store): its tx-hash entries
      // stay, and answer PRUNED (their blocks are below the floor).
      const damaged = await checkArchiveFile(this.fs, receiptsPath, f.receipts);
      const hashes = damaged === undefined ? await this.engine.readTxHashes(receiptsPath) : [];
      await this.hot.pruneIndexes(f.first, f.last, hashes);
    }
    await this.writeState({ ...this.state, files: this.state.files.filter((x) => x !== f) });
    const live = this.live.get(f);
    this.live.delete(f);
    this.publish();
    if (live) {
      live.doomed = true;
      if (live.refs === 0) this.deleteFile(live);
    } else {
      this.deleteFile({ entry: f, receiptsPath, logsPath: this.filePath(f.logs), refs: 0, doomed: true });
    }
  }

  /** Best effort: a file left behind is unlisted and deleted at the next open. */
  private deleteFile(live: LiveFile): void {
    try {
      for (const p of [live.receiptsPath, live.logsPath]) if (this.fs.exists(p)) this.fs.unlink(p);
      this.fs.syncDir(this.archiveDir);
    } catch {
      // Unlisted now; open removes it.
    }
  }

  private async writeState(next: StoreState): Promise<void> {
    try {
      await this.manifest.writeAsync(encodeState(next));
    } catch (err) {
      throw this.latch.latch(err, 'manifest write');
    }
    this.state = next;
  }

  private publish(): void {
    const files: LiveFile[] = [];
    for (const f of this.state.files) {
      let live = this.live.get(f);
      if (!live) {
        live = {
          entry: f,
          receiptsPath: this.filePath(f.receipts),
          logsPath: this.filePath(f.logs),
          refs: 0,
          doomed: false,
        };
        this.live.set(f, live);
      }
      if (f.last >= this.state.floor) files.push(live);
    }
    this.view = {
      floor: this.state.floor,
      hotFloor: this.state.hotFloor,
      latest: this.latest,
      files,
      readers: 0,
    };
  }

  private acquire(): View {
    const v = this.view;
    for (const f of v.files) f.refs++;
    v.readers++;
    this.readViews.add(v);
    return v;
  }

  private release(v: View): void {
    for (const f of v.files) {
      f.refs--;
      if (f.refs === 0 && f.doomed) this.deleteFile(f);
    }
    v.readers--;
    if (v.readers === 0) {
      this.readViews.delete(v);
      if (v.hotFloor < this.state.hotFloor) this.queueDeferredHotPrune();
      if (this.readViews.size === 0) this.readsDrained?.();
    }
  }

  /**
   * Resolves once both files of each pair matched the manifest's size and checksum; CORRUPT if one
   * did not. Open only checks the sizes of older files, and a Parquet
   * reader handed damaged bytes may fail with a parse error or, worse, return altered values, so
   * the engine never reads a file before this. Each file is checked once per process (files are
   * immutable), by the first read that needs it, concurrent reads sharing the check; the check
   * yields to the event loop between reads (archiveFileCheck.ts), so a first read of a large file
   * delays only itself. An I/O error fails the reads waiting for it and the next read checks
   * again; a mismatch stays CORRUPT.
   */
  private async checkBeforeRead(files: readonly LiveFile[]): Promise<void> {
    const pending: Promise<void>[] = [];
    for (const f of files) {
      for (const w of ['receipts', 'logs'] as const) {
        f.checks ??= {};
        const checks = f.checks;
        let p = checks[w];
        if (p === undefined) {
          p = this.checkFile(f, w);
          checks[w] = p;
          // Observed here so that a check nobody awaits any more (its read was aborted) is not an
          // unhandled rejection; an I/O failure is forgotten so that a later read tries again.
          p.catch((err: unknown) => {
            if (!isCairnError(err, 'CORRUPT') && checks[w] === p) checks[w] = undefined;
          });
        }
        pending.push(p);
      }
    }
    await Promise.all(pending);
  }

  private async checkFile(f: LiveFile, which: 'receipts' | 'logs'): Promise<void> {
    const ref = f.entry[which];
    const problem = await checkArchiveFile(this.fs, which === 'receipts' ? f.receiptsPath : f.logsPath, ref);
    if (problem !== undefined) {
      throw new CairnError(
        'CORRUPT',
        `archive file for blocks ${f.entry.first}..${f.entry.last}: ${problem}`,
        {
          details: { first: f.entry.first, last: f.entry.last },
        },
      );
    }
  }

  private fsCall<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw this.latch.latch(ioFatal(what, err), what);
    }
  }

  private async walCall<T>(what: string, fn: () => Promise<T> | T): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.latch.latch(err, `receipt WAL ${what}`);
    }
  }

  // ---------------------------------------------------------------- reads

  ranges(): ReceiptRanges {
    return {
      first: this.state.firstBlock ?? -1,
      floor: this.state.floor,
      hotFloor: this.state.hotFloor,
      archivedThrough: this.archivedThrough() >= (this.state.firstBlock ?? 0) ? this.archivedThrough() : -1,
      latest: this.latest,
    };
  }

  /** Reads start only before close is called; those already running finish first (see close). */
  private checkReadable(): void {
    if (this.closed || this.closing) throw closedError();
  }

  // The read path itself (its rules, its guards, its comments) is in receiptReads.ts.

  /** The receipt of a transaction (see ReceiptReads.getReceipt). */
  getReceipt(txHash: Uint8Array): Promise<Receipt | undefined> {
    return this.reads.getReceipt(txHash);
  }

  /** eth_getLogs on the view the query starts on (see ReceiptReads.getLogs). */
  getLogs(filter: LogFilter, options: LogQueryOptions = {}): Promise<Log[]> {
    return this.reads.getLogs(filter, options);
  }

  /** Archive-only query, under getLogs' guards (see ReceiptReads.getArchivedLogs). */
  getArchivedLogs(filter: LogFilter & { fromBlock: number; toBlock: number }): Promise<Log[]> {
    return this.reads.getArchivedLogs(filter);
  }

  /**
   * The closed archive files (manifest entries) currently visible to readers: a snapshot of names
   * only. Nothing keeps these files: a prune (this store's or its write loop's retention) may delete
   * any of them right after the call. To read the files themselves, use `leaseArchiveFiles`.
   */
  archiveFiles(): ArchiveFileRef[] {
    return this.view.files.map(archiveFileRef);
  }

  /**
   * The closed archive files visible to readers now, pinned: a prune may unlist them, but this
   * store deletes none of them before the lease's `release()` (idempotent). A lease holds back
   * neither hot-tier prunes nor close; close() ends every lease (once the directory is unlocked,
   * the next open removes unlisted files), so release before closing. CLOSED on a closing store.
   */
  leaseArchiveFiles(): ArchiveFilesLease {
    this.checkReadable();
    const pinned = this.view.files;
    for (const f of pinned) f.refs++;
    let released = false;
    return {
      files: pinned.map(archiveFileRef),
      release: () => {
        if (released) return;
        released = true;
        for (const f of pinned) {
          f.refs--;
          // After close a doomed file stays on disk: unlisted, the next open deletes it.
          if (f.refs === 0 && f.doomed && !this.closed) this.deleteFile(f);
        }
      },
    };
  }

  // ---------------------------------------------------------------- verification

  /**
   * Full check: every listed file's size and checksum and row counts (through the engine), every
   * WAL entry against the hot tier's block metadata, every hot-tier body of the WAL's blocks.
   */
  async verify(): Promise<VerifyReport> {
    this.checkReadable();
    const problems: string[] = [];
    const view = this.acquire();
    let archiveRows = 0;
    let walBlocks = 0;
    try {
      for (const f of view.files) {
        const p = this.checkFileFully(f.entry);
        if (p) {
          problems.push(`archive ${f.entry.first}..${f.entry.last}: ${p}`);
          continue;
        }
        const blocks = await this.engine.readBlocks(f.receiptsPath, f.logsPath);
        let receipts = 0;
        let logs = 0;
        for (const b of blocks) {
          receipts += b.receipts.length;
          for (const r of b.receipts) logs += r.logs.length;
          if (b.number < view.hotFloor) continue;
          const meta = this.hot.blockMeta(b.number);
          if (!meta || meta.entryCrc !== entryChecksum(encodeBlockEntry(b).payload)) {
            problems.push(`block ${b.number}: archive and hot tier disagree`);
          }
        }
        archiveRows += logs;
        if (receipts !== f.entry.receiptRows || logs !== f.entry.logRows) {
          problems.push(
            `archive ${f.entry.first}..${f.entry.last}: ${receipts}/${logs} rows, the manifest says ${f.entry.receiptRows}/${f.entry.logRows}`,
          );
        }
      }
      try {
        this.wal.verify();
      } catch (err) {
        problems.push(`WAL: ${(err as Error).message}`);
      }
      // The WAL entries of the view's blocks, one at a time: a rotation meanwhile may drop the
      // WAL's first entries (archived by then), and the view keeps the hot bodies it checks.
      for (let index = this.wal.firstIndex; ; index++) {
        index = Math.max(index, this.wal.firstIndex);
        if (index > view.latest || index >= this.wal.nextIndex) break;
        const [rec] = [...this.wal.iterate(index, index + 1)];
        if (!rec) break;
        walBlocks++;
        const crc = entryChecksum(rec.payload);
        const meta = this.hot.blockMeta(rec.index);
        if (rec.index < view.floor) continue;
        if (!meta || meta.entryCrc !== crc) {
          problems.push(`block ${rec.index}: WAL entry and hot tier disagree`);
          continue;
        }
        if (rec.index >= view.hotFloor) {
          const entry = decodeBlockEntry(rec.payload);
          const bodies = await this.hot.blockBodies(rec.index);
          const again = entryChecksum(
            encodeBlockEntry({ number: entry.number, hash: meta.hash, receipts: bodies }).payload,
          );
          if (again !== crc) problems.push(`block ${rec.index}: hot-tier receipts differ from the WAL`);
        }
      }
    } finally {
      this.release(view);
    }
    return {
      ranges: this.ranges(),
      archiveFiles: view.files.length,
      archiveLogRows: archiveRows,
      walBlocks,
      problems,
    };
  }

  // ---------------------------------------------------------------- close

  /**
   * A clean close of a writable store lets the hot tier's LevelDB finish the compaction it has due
   * (at most HOT_SETTLE_MAX_WAIT_MS; see kv/compactionBacklog.ts): abandoned at close, it would run
   * again right after the next open, on the same cores as that store's first reads.
   */
  private async settleHotTier(): Promise<void> {
    const kv = this.hot.kv;
    if (this.latch.error || this.options.readOnly || !(kv instanceof ClassicLevelKv)) return;
    this.lastHotSettle = await settleCompaction(kv, { maxWaitMs: HOT_SETTLE_MAX_WAIT_MS });
  }

  /**
   * Waits for queued work and for the reads in progress (a read started before close finishes on
   * its view; reads started after it are CLOSED), checkpoints the hot tier and releases
   * everything. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.queue
      .task(async () => {
        let first: unknown;
        const step = async (fn: () => unknown): Promise<void> => {
          try {
            await fn();
          } catch (err) {
            first ??= err;
          }
        };
        // A window still converting finishes (or, on a latched store, stops) before anything closes.
        const converting = this.conversion;
        if (converting) await step(() => this.finishConversion(converting));
        if (!this.latch.error && this.latest >= 0)
          await step(() => this.hot.writeSyncedCheckpoint(this.latest));
        this.closed = true;
        if (this.readViews.size > 0) {
          await new Promise<void>((resolve) => {
            this.readsDrained = resolve;
          });
        }
        await step(() => this.wal.close());
        await step(() => this.settleHotTier());
        await step(() => this.hot.kv.close());
        await step(() => this.engine.close());
        const spill = this.privateSpill;
        if (spill !== undefined) removeTree(this.fs, spill);
        await step(() => this.manifest.close());
        await step(() => this.dirLock?.release());
        const err = this.latch.error ?? first;
        if (err) throw err;
      })
      .finally(() => {
        this.closed = true;
      });
    return this.closing;
  }
}

/** A closed archive file: its manifest entry and the paths of its two files. */
export interface ArchiveFileRef {
  entry: ArchiveFileEntry;
  receiptsPath: string;
  logsPath: string;
}

/** Archive files pinned against deletion until `release()` (see `ReceiptStore.leaseArchiveFiles`). */
export interface ArchiveFilesLease {
  readonly files: readonly ArchiveFileRef[];
  release(): void;
}

function archiveFileRef(f: LiveFile): ArchiveFileRef {
  return { entry: f.entry, receiptsPath: f.receiptsPath, logsPath: f.logsPath };
}

export interface VerifyReport {
  ranges: ReceiptRanges;
  archiveFiles: number;
  archiveLogRows: number;
  walBlocks: number;
  problems: string[];
}

function readOnlyError(): CairnError {
  return new CairnError('INVALID_ARGUMENT', 'receipt store was opened read-only (inspection)');
}

function closedError(): CairnError {
  return new CairnError('CLOSED', 'receipt store is closed');
}

function checkPositive(v: number | undefined, name: string): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v <= 0)) {
    throw new CairnError('INVALID_ARGUMENT', `${name} must be a positive integer, got ${v}`);
  }
}
