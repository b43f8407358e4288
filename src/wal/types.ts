import type { FileSystem } from '../io/fileSystem.ts';

/**
 * Public contract of the segmented write-ahead log. Consumers (consensus persisters, block store,
 * receipt store) depend on this file only; `Wal` in `wal.ts` implements it.
 *
 * Indices are domain indices (block number, road index, ...): a log may start at any index and
 * `reset(n)` re-positions an empty log, so callers never translate between WAL offsets and their
 * own numbering.
 */

export type Durability =
  /** `sync()` makes everything appended before it durable (group-committed). The default. */
  | { mode: 'on-request' }
  /** As on-request, plus a background sync every `intervalMs` while anything is unsynced. */
  | { mode: 'interval'; intervalMs: number }
  /** Never fsync (data another layer can rebuild). `sync()` only writes buffered data to the OS. */
  | { mode: 'none' };

export interface WalOptions {
  fs: FileSystem;
  /** Directory of the log; created (durably) if missing. */
  dir: string;
  /** Target segment size; a segment is sealed when the next record would not fit. Default 64 MiB. */
  segmentBytes?: number;
  /** Largest payload accepted; larger appends fail with RECORD_TOO_LARGE. Default 16 MiB. */
  maxRecordBytes?: number;
  durability?: Durability;
  /**
   * Run fdatasync on the libuv thread pool instead of the main thread. Use it when many logs sync
   * concurrently (one per lane) so their fsyncs overlap; leave it off for a single hot log, where
   * the synchronous call is ~50-90 µs faster. Default false.
   */
  syncOffThread?: boolean;
  /** Preallocate each segment with zeros at creation (cheaper fsyncs on overwrite). Default true. */
  preallocate?: boolean;
  /**
   * When the next segment (the spare, preallocated logs only) is prepared in the background:
   *  - 'at-half-full' (default): once the tail is half full, zeros written 1 MiB per event-loop
   *    turn and fsynced once. Cheapest in disk space and fastest to prepare.
   *  - 'always-ready': at open and right after every seal, so a burst that fills a segment never
   *    waits for one; zeros written and fsynced 256 KiB at a time, so preparing never holds up the
   *    fsyncs of the other files on the disk (for many small logs syncing concurrently, such as
   *    one log per consensus lane). Costs one extra segment of disk per log.
   */
  spareSegment?: 'at-half-full' | 'always-ready';
  /** Index the first record of a brand-new (empty, never written) log gets. Default 0. */
  initialIndex?: number;
  /**
   * Open for inspection only: nothing on disk is created, repaired or deleted (a torn tail is
   * reported through `onWarning` and ignored), and every mutating call fails. Default false.
   */
  readOnly?: boolean;
  /**
   * An fsync of the log slower than this is reported through `onWarning` (message starting
   * "slow fsync", details with `fsyncMs`), at most once per `slowFsyncWarnIntervalMs` with the count
   * of slow fsyncs since the last report. Defaults 500 ms and 60 s.
   */
  slowFsyncWarnMs?: number;
  slowFsyncWarnIntervalMs?: number;
  /** Warnings (torn tail repaired, slow fsync, ...). Default: silent. */
  onWarning?: (message: string, details: Record<string, unknown>) => void;
}

export interface WalRecord {
  index: number;
  payload: Uint8Array;
}

export interface SegmentInfo {
  file: string;
  firstIndex: number;
  /** Index after the segment's last record (== firstIndex when empty). */
  nextIndex: number;
  bytes: number;
  sealed: boolean;
  /**
   * Segment format version: 3 (frames carry the synced index, CRCs seeded with the segment's salt),
   * or 2 / 1 (written by earlier builds).
   */
  formatVersion: number;
}

export interface VerifyReport {
  segments: number;
  records: number;
  bytes: number;
  firstIndex: number;
  nextIndex: number;
}

export interface WriteAheadLog {
  /** Index of the oldest retained record (== nextIndex when empty). */
  readonly firstIndex: number;
  /** Index the next appended record gets. */
  readonly nextIndex: number;
  /** nextIndex - firstIndex. */
  readonly count: number;
  /** Highest index known durable (all records below it survived / will survive a crash). */
  readonly durableIndex: number;

  /**
   * Appends records in order and returns the index of the first one. Visible to readers at once;
   * durable only after a `sync()` that starts after this call. With `expectedIndex`, fails with
   * OUT_OF_ORDER unless it equals `nextIndex` (callers that own the numbering use it as a check).
   */
  append(payloads: readonly Uint8Array[], expectedIndex?: number): number;
  /**
   * Resolves when every record appended before this call is durable. Concurrent callers share one
   * fsync (group commit). Rejects with the latched error if any write or fsync failed.
   */
  sync(): Promise<void>;
  /**
   * `sync()` with a callback (no promise per call, for hot paths): `done` runs in a microtask once
   * every record appended before this call is durable, or with the latched error. Optional: callers
   * fall back to `sync()` for logs without it. `startNow`: the caller has appended everything it
   * has for now (a single writer with its own batching), so the group commit may write and issue
   * its fsync inside this call instead of in a microtask (`done` still runs later, never inside).
   */
  syncThen?(done: (err?: unknown) => void, startNow?: boolean): void;
  /** Reads one record; OUT_OF_RANGE outside [firstIndex, nextIndex). */
  read(index: number): Uint8Array;
  /** Records in [from, to) in order (defaults: the whole log). */
  iterate(from?: number, to?: number): Iterable<WalRecord>;
  /**
   * Drops every record below `newFirst` (newFirst in [firstIndex, nextIndex]). The new first index is
   * made durable before any file is deleted; whole segments are deleted, retained data is never
   * rewritten.
   */
  truncateFront(newFirst: number): Promise<void>;
  /** Drops every record at or above `newNext` (newNext in [firstIndex, nextIndex]); durable on return. */
  truncateBack(newNext: number): Promise<void>;
  /**
   * Drops every record and positions the empty log at `nextIndex` (default: the current nextIndex,
   * which must not go backwards). The position survives a reopen. Durable on return.
   */
  reset(nextIndex?: number): Promise<void>;
  /** Segments, for inspection. */
  segments(): SegmentInfo[];
  /**
   * Whether `truncateFront(newFirst)` would delete at least one segment file (lazy pruning asks
   * this on every batch, so it allocates nothing).
   */
  truncateFrontFreesSegment(newFirst: number): boolean;
  /** Re-reads and checks every record on disk; throws WAL_CORRUPT naming file and offset. */
  verify(): VerifyReport;
  /** Syncs (unless durability is none) and closes. Idempotent: every call gets the same result. */
  close(): Promise<void>;
}
