import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';
import { removeTreeBestEffort as removeTree } from '../io/removeTree.ts';
import { ClassicLevelKv } from '../kv/classicLevelKv.ts';
import { CairnError } from '../lib/errors.ts';
import { INDEX_DIR, VALUE_LOG_DIR } from '../records/openRecordStore.ts';
import { openBlockStore } from './openBlockStore.ts';

export interface ReindexReport {
  dir: string;
  blocks: { first: number; next: number };
  qcs: { first: number; next: number };
  floor: number;
  /** Where the replaced index was kept (only with keepOld). */
  oldIndex: string | undefined;
}

/**
 * Rebuilds a block store's LevelDB index from its value log (the source of truth), for an index
 * the engine reports damaged (CORRUPT) or that open refuses. The new index is built beside the old
 * one (`index.rebuild`), made durable, and only then swapped in; the old one is kept aside until
 * the new one is complete (and afterwards too with `keepOld`). The prune floor comes from the
 * store's floor file. The node must be stopped (the index LOCK makes a running node's index fail
 * the swap's open).
 */
export async function reindexBlockStore(options: {
  dir: string;
  fs?: FileSystem;
  keepOld?: boolean;
  onWarning?: (message: string, details: Record<string, unknown>) => void;
}): Promise<ReindexReport> {
  const fs = options.fs ?? realFileSystem;
  const { dir } = options;
  if (!fs.exists(path.join(dir, VALUE_LOG_DIR))) {
    throw new CairnError('NOT_FOUND', `no block store at ${dir} (no ${VALUE_LOG_DIR}/ directory)`, {
      details: { file: dir },
    });
  }
  const live = path.join(dir, INDEX_DIR);
  const rebuild = path.join(dir, `${INDEX_DIR}.rebuild`);
  const old = path.join(dir, `${INDEX_DIR}.old`);
  removeTree(fs, rebuild);
  removeTree(fs, old);
  // A fresh, empty index: open re-indexes the whole log into it and checkpoints it (synced).
  const kv = await ClassicLevelKv.open(rebuild);
  const store = await openBlockStore({
    dir,
    fs,
    kv,
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
  });
  const ranges = store.ranges();
  const problems = (await store.verify()).problems;
  await store.close();
  if (problems.length > 0) {
    removeTree(fs, rebuild);
    throw new CairnError(
      'CORRUPT',
      `block store ${dir}: the value log itself has problems, the index was not replaced: ${problems.slice(0, 5).join('; ')}`,
      { details: { file: dir, problems: problems.length } },
    );
  }
  if (fs.exists(live)) fs.rename(live, old);
  fs.rename(rebuild, live);
  fs.syncDir(dir);
  if (!options.keepOld) {
    removeTree(fs, old);
    fs.syncDir(dir);
  }
  return {
    dir,
    blocks: ranges.blocks,
    qcs: ranges.qcs,
    floor: ranges.floor,
    oldIndex: options.keepOld && fs.exists(old) ? old : undefined,
  };
}
