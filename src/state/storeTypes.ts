/**
 * The state store's public shapes (options, change sets, reports) and the names of what it keeps in
 * its data directory. They live apart from the store's code so every module of it can name them
 * without importing the facade (`stateStore.ts`), which imports all of those modules.
 */
import type { FileSystem } from '../io/fileSystem.ts';
import type { Family } from './encoding.ts';
import type { StateKvHost } from './kvHost.ts';

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

/** What the store keeps in its data directory (docs/DATA_FILES.md §8 describes each). */
export const WAL_DIR = 'wal';
export const KV_DIR = 'kv';
export const VIEWS_DIR = 'views';
export const ROLLBACK_INTENT_FILE = 'ROLLBACK_INTENT';
export const IMPORT_MARKER_FILE = 'IMPORT_IN_PROGRESS';
