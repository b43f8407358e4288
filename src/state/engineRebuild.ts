/**
 * Builds engine directories from snapshots and brings them forward by replaying the WAL. A snapshot
 * is cloned into `<dir>-tmp`, checked against its manifest, and only then renamed into place, so a
 * damaged snapshot never replaces a working engine. Replay is a pure overwrite (each WAL record holds
 * the block's complete new rows and the roots after it; the facade's file comment says why that is
 * safe whatever subset of unsynced engine batches survived).
 */
import * as path from 'node:path';
import { removeTree } from '../io/removeTree.ts';
import type { OrderedKv } from '../kv/orderedKv.ts';
import { CairnError } from '../lib/errors.ts';
import { decodeMetaFrom, writeBlockBatch } from './blockBatch.ts';
import { removeDirAtomic } from './files.ts';
import { CHECKPOINT_KEY, emptyMeta, encodeMeta, VERSION_KEY } from './records.ts';
import { readSnapshot, snapshotName } from './snapshots.ts';
import { walRecords } from './stateWal.ts';
import type { StoreCore } from './storeCore.ts';

/**
 * Replaces the engine directory by the snapshot at `base` (or an empty engine for 0). The new
 * engine is built (and the snapshot checked) in `kv-tmp` before the old one is removed, so a
 * damaged snapshot leaves the current engine in place.
 */
export async function rebuildEngineFrom(core: StoreCore, base: number): Promise<void> {
  const tmp = `${core.kvDir}-tmp`;
  await buildEngine(core, base, tmp);
  await core.closeEngine();
  removeDirAtomic(core.fs, core.kvDir);
  core.fs.rename(tmp, core.kvDir);
  core.fs.syncDir(core.dataDir);
  core.kv = await openChecked(core, core.kvDir, base);
  core.committed = decodeMetaFrom(core.kv, CHECKPOINT_KEY, 'checkpoint')!;
  core.lastCheckpoint = core.committed.height;
}

/** Creates engine dir `dir` holding the state of snapshot `base` (0 = empty), via `-tmp` + rename. */
export async function materializeEngine(core: StoreCore, base: number, dir: string): Promise<OrderedKv> {
  const tmp = `${dir}-tmp`;
  await buildEngine(core, base, tmp);
  core.fs.rename(tmp, dir);
  core.fs.syncDir(path.dirname(dir));
  return openChecked(core, dir, base);
}

/** Writes a complete engine directory at `dir` (removed first if present). */
async function buildEngine(core: StoreCore, base: number, dir: string): Promise<void> {
  removeTree(core.fs, dir);
  if (base > 0) {
    const snapDir = path.join(core.snapshotsDir, snapshotName(base));
    const manifest = readSnapshot(core.fs, snapDir, base, true);
    await core.host.clone(
      snapDir,
      manifest.files.map((f) => f.name),
      dir,
    );
    core.manifests.set(base, manifest);
  } else {
    const kv = await core.host.create(dir);
    const meta = encodeMeta(emptyMeta(0));
    await kv.batch().put(VERSION_KEY, meta).put(CHECKPOINT_KEY, meta).write({ sync: true });
    await kv.close();
  }
}

/** Opens an engine built from `base` and checks it holds exactly what the manifest promised. */
async function openChecked(core: StoreCore, dir: string, base: number): Promise<OrderedKv> {
  const kv = await core.host.open(dir);
  const checkpoint = decodeMetaFrom(kv, CHECKPOINT_KEY, 'checkpoint');
  const expected = base > 0 ? core.manifests.get(base)?.meta : emptyMeta(0);
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

/** Re-applies WAL records committed+1..to onto the engine (pure overwrites; see stateStore.ts). */
export async function replayWal(core: StoreCore, to: number): Promise<void> {
  for (const rec of walRecords(core, core.committed.height, to)) {
    await writeBlockBatch(core.kv!, rec.rows, rec.after, false);
    core.committed = rec.after;
  }
}
