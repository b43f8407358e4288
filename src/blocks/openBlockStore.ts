import type { FileSystem } from '../io/fileSystem.ts';
import type { OrderedKv } from '../kv/orderedKv.ts';
import { CairnError, ioFatal } from '../lib/errors.ts';
import { openRecordStore } from '../records/openRecordStore.ts';
import { BLOCK_STORE_KINDS, BlockStore, type BlockStoreOptions } from './blockStore.ts';

/** Sub-directories of a block store directory (those of its record store). */
export { INDEX_DIR, VALUE_LOG_DIR } from '../records/openRecordStore.ts';
/** Largest value-log entry: a block of MAX_PAYLOAD_BYTES (8 MiB) plus headers fits with room. */
export const BLOCK_LOG_MAX_RECORD_BYTES = 32 * 1024 * 1024;
export const BLOCK_LOG_DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024;

export interface OpenBlockStoreOptions extends BlockStoreOptions {
  /** Store directory: `<dir>/values` (value log) and `<dir>/index` (LevelDB). */
  dir: string;
  /** File system of the value log (default: the real one). */
  fs?: FileSystem;
  /** Index engine; default classic-level at `<dir>/index`. Tests pass a MemoryKv. */
  kv?: OrderedKv;
  /** Value-log segment size: the granularity at which pruned data is reclaimed. */
  segmentBytes?: number;
  /** Open the value log read-only (CLI inspection). */
  readOnly?: boolean;
  onWarning?: (message: string, details: Record<string, unknown>) => void;
}

/**
 * Opens the block store: the index first (LevelDB's LOCK file makes the directory single-owner),
 * then the value log (torn-tail repair), then the record layer (re-indexes the log tail) and the
 * typed layer (checks QC contiguity and block coverage).
 */
export async function openBlockStore(options: OpenBlockStoreOptions): Promise<BlockStore> {
  try {
    return await openLayers(options);
  } catch (err) {
    // Every failure leaves as a typed error naming the store, whichever layer raised it.
    if (err instanceof CairnError) throw err;
    throw ioFatal(`opening block store ${options.dir}`, err, { file: options.dir });
  }
}

async function openLayers(options: OpenBlockStoreOptions): Promise<BlockStore> {
  const records = await openRecordStore({
    dir: options.dir,
    fs: options.fs,
    kv: options.kv,
    segmentBytes: options.segmentBytes ?? BLOCK_LOG_DEFAULT_SEGMENT_BYTES,
    maxRecordBytes: BLOCK_LOG_MAX_RECORD_BYTES,
    maxValueBytes: BLOCK_LOG_MAX_RECORD_BYTES - 1024,
    ...BLOCK_STORE_KINDS,
    readOnly: options.readOnly,
    onWarning: options.onWarning,
  });
  try {
    return BlockStore.open(records, {
      committee: options.committee,
      verifySignatures: options.verifySignatures,
    });
  } catch (err) {
    await records.close().catch(() => undefined);
    throw err;
  }
}
