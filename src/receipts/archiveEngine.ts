import type { NormalizedFilter } from './logFilter.ts';
import type { BlockEntry, Log, StoredReceipt } from './types.ts';

/**
 * What the receipt store needs from the engine that writes and reads its archive files. The store
 * owns everything around the engine: temporary names, checksums, fsync, rename, the manifest and
 * reference counts; the engine only turns rows into a file and answers queries over given files.
 * Production: DuckDB writing Parquet (duckdbArchive.ts). Simulated power-loss tests use a model
 * engine that writes through the simulated file system.
 */
export interface ArchiveEngine {
  /**
   * Writes the receipts and logs of `blocks` (consecutive, in order) to two new files at the given
   * paths (which do not exist). The files need not be durable on return; the store fsyncs them.
   */
  writeWindow(
    blocks: readonly BlockEntry[],
    receiptsPath: string,
    logsPath: string,
  ): Promise<{ receiptRows: number; logRows: number }>;
  /**
   * Optional: the encoded receipt-WAL entries (codec.ts) of blocks just acknowledged, consecutive
   * from `first`, offered so the engine can prepare their window's files before it closes (for
   * DuckDB: on another thread). Never throws; a failure shows as the next window write's error.
   */
  stageEntries?(first: number, entries: readonly Uint8Array[]): void;
  /**
   * Optional form of `writeWindow` taking the window's encoded receipt-WAL entries: `entries(from,
   * to)` gives those of blocks [from, to] ⊆ [first, last]. It is called only if the engine has not
   * staged the whole window through `stageEntries`, for consecutive pieces of the window (so that
   * the whole window need not be in memory at once), each call synchronous, once per piece; and
   * once more per piece at most if a staging failed. The rows written must be those of the entries.
   */
  writeWindowEntries?(
    first: number,
    last: number,
    entries: (from: number, to: number) => readonly Uint8Array[],
    receiptsPath: string,
    logsPath: string,
  ): Promise<{ receiptRows: number; logRows: number }>;
  /**
   * Logs matching `f` (range included) from the given logs files, in (block, logIndex) order, at
   * most `limit` of them (the caller asks for one more than it accepts to detect an overflow).
   * An abort of `signal` stops the query (ABORTED) instead of letting it run to completion.
   */
  queryLogs(
    logsPaths: readonly string[],
    f: NormalizedFilter,
    limit: number,
    signal?: AbortSignal,
  ): Promise<Log[]>;
  /** One receipt and its logs, or undefined if the file has no such row. */
  readReceipt(
    receiptsPath: string,
    logsPath: string,
    block: number,
    txIndex: number,
  ): Promise<{ blockHash: Uint8Array; receipt: StoredReceipt } | undefined>;
  /** Every (block, tx hash) of a receipts file (to retire its tx-hash index entries). */
  readTxHashes(receiptsPath: string): Promise<Uint8Array[]>;
  /**
   * Every block of the window as stored, in order, including blocks without receipts (their hashes
   * are kept in the file too, so that a rebuilt hot tier still resolves them by block hash).
   */
  readBlocks(receiptsPath: string, logsPath: string): Promise<BlockEntry[]>;
  close(): Promise<void>;
}
