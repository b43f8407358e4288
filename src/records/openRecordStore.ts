import * as path from 'node:path';
import { openAbFile } from '../io/abFile.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { mkdirDurable } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import { ClassicLevelKv } from '../kv/classicLevelKv.ts';
import { openIndexCopy } from '../kv/indexCopy.ts';
import type { OrderedKv } from '../kv/orderedKv.ts';
import { CairnError, isCairnError } from '../lib/errors.ts';
import { Wal } from '../wal/wal.ts';
import { decodeFloorFile, encodeFloorFile, RecordStore } from './recordStore.ts';

/** Sub-directories of a record store directory. */
export const VALUE_LOG_DIR = 'values';
export const INDEX_DIR = 'index';
/** Cairn's own copy of the prune floor: `<dir>/floor.a` and `<dir>/floor.b` (A/B file). */
export const FLOOR_FILE = 'floor';

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
  if (options.readOnly && !fs.exists(path.join(options.dir, VALUE_LOG_DIR))) {
    throw new CairnError('NOT_FOUND', `no record store at ${options.dir} (no ${VALUE_LOG_DIR}/ directory)`, {
      details: { file: options.dir },
    });
  }
  if (!options.readOnly) mkdirDurable(fs, options.dir, path);
  const floorFile = openAbFile(fs, options.dir, FLOOR_FILE, { readOnly: options.readOnly ?? false });
  const floor = decodeFloorFile(floorFile.loaded.payload, path.join(options.dir, FLOOR_FILE));
  for (const w of floorFile.loaded.warnings)
    options.onWarning?.(w, { file: path.join(options.dir, FLOOR_FILE) });
  let kv: OrderedKv;
  try {
    const indexDir = path.join(options.dir, INDEX_DIR);
    // Read-only: LevelDB cannot open in place without writing, so inspection works on a scratch
    // copy (re-indexed from the value log like any index, and deleted on close).
    kv =
      options.kv ?? (options.readOnly ? await openIndexCopy(indexDir) : await ClassicLevelKv.open(indexDir));
  } catch (err) {
    floorFile.file.close();
    if (isCairnError(err) && (err.code === 'CORRUPT' || err.code === 'IO_FATAL')) {
      // The index is derived data: say how to get out, not only what broke.
      throw new CairnError(
        err.code,
        `${err.message}; the index is derived from the value log: stop the node and rebuild it ` +
          '(`cairn blocks reindex --data-dir <dir>` for a block store)',
        { cause: err, details: err.details },
      );
    }
    throw err;
  }
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
    const store = await RecordStore.open({
      log,
      kv,
      name: options.dir,
      rangedKinds: options.rangedKinds,
      pointKinds: options.pointKinds,
      maxValueBytes: options.maxValueBytes,
      floorFile: { file: floorFile.file, floor },
    });
    // A store pruned before the floor file existed: copy the index's floor into it now, so that
    // losing the index later cannot lose the floor.
    if (!options.readOnly && (floor ?? 0) < store.floor) {
      try {
        await floorFile.file.writeAsync(encodeFloorFile(store.floor));
      } catch (err) {
        await store.close().catch(() => undefined);
        throw err;
      }
    }
    return store;
  } catch (err) {
    await log?.close().catch(() => undefined);
    await kv.close().catch(() => undefined);
    floorFile.file.close();
    throw err;
  }
}
