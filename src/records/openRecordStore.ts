import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import { mkdirDurable } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import { ClassicLevelKv } from '../kv/classicLevelKv.ts';
import type { OrderedKv } from '../kv/orderedKv.ts';
import { Wal } from '../wal/wal.ts';
import { RecordStore } from './recordStore.ts';

/** Sub-directories of a record store directory. */
export const VALUE_LOG_DIR = 'values';
export const INDEX_DIR = 'index';

export interface OpenRecordStoreOptions {
  /** Store directory: `<dir>/values` (value log) and `<dir>/index` (LevelDB). */
  dir: string;
  /** File system of the value log (default: the real one). */
  fs?: FileSystem | undefined;
  /** Index engine; default classic-level at `<dir>/index`. Tests pass a MemoryKv. */
  kv?: OrderedKv | undefined;
  /** Value-log segment size: the granularity at which pruned data is reclaimed. */
  segmentBytes: number;
  /** Largest value-log entry. */
  maxRecordBytes: number;
  /** Largest record value the store accepts (below maxRecordBytes, leaving room for the frame). */
  maxValueBytes: number;
  rangedKinds: readonly number[];
  pointKinds: readonly number[];
  /** Open the value log read-only (CLI inspection). */
  readOnly?: boolean | undefined;
  onWarning?: ((message: string, details: Record<string, unknown>) => void) | undefined;
}

/**
 * Opens a record store: the index first (LevelDB's LOCK file makes the directory single-owner),
 * then the value log (torn-tail repair), then the record layer (re-indexes the log tail). On
 * failure whatever was opened is closed again. The store owns the log and the index.
 */
export async function openRecordStore(options: OpenRecordStoreOptions): Promise<RecordStore> {
  const fs = options.fs ?? realFileSystem;
  if (!options.readOnly) mkdirDurable(fs, options.dir, path);
  const kv = options.kv ?? (await ClassicLevelKv.open(path.join(options.dir, INDEX_DIR)));
  let log: Wal | undefined;
  try {
    log = await Wal.open({
      fs,
      dir: path.join(options.dir, VALUE_LOG_DIR),
      segmentBytes: options.segmentBytes,
      maxRecordBytes: options.maxRecordBytes,
      durability: { mode: 'on-request' },
      ...(options.readOnly ? { readOnly: true } : {}),
      ...(options.onWarning ? { onWarning: options.onWarning } : {}),
    });
    return await RecordStore.open({
      log,
      kv,
      name: options.dir,
      rangedKinds: options.rangedKinds,
      pointKinds: options.pointKinds,
      maxValueBytes: options.maxValueBytes,
    });
  } catch (err) {
    await log?.close().catch(() => undefined);
    await kv.close().catch(() => undefined);
    throw err;
  }
}
