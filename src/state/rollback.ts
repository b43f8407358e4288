/**
 * Rollback: rewinds the store to a retained height. The durable ROLLBACK_INTENT (`markerFiles.ts`)
 * is written before anything changes; then CURRENT points at the base snapshot, snapshots above the
 * target go, the engine is rebuilt from the base and the WAL replayed to the target and cut there.
 * Every step after the intent is idempotent, so an open that finds the intent finishes the rollback
 * (`recovery.ts`). `reachableBase` is shared with views: the snapshot plus WAL a height needs.
 */
import * as path from 'node:path';
import { CairnError, describe, ioFatal } from '../lib/errors.ts';
import { writeCheckpoint } from './blockBatch.ts';
import { rebuildEngineFrom, replayWal } from './engineRebuild.ts';
import { removeDirAtomic } from './files.ts';
import { removeRollbackIntent, writeRollbackIntent } from './markerFiles.ts';
import {
  listSnapshotHeights,
  readCurrent,
  readSnapshot,
  removeCurrent,
  snapshotName,
  writeCurrent,
} from './snapshots.ts';
import { caller, type StoreCore } from './storeCore.ts';

/**
 * Rewinds to `target` (a retained height ≤ the tip): afterwards the store is at `target` with that
 * height's root, and every snapshot, WAL record and row above it is gone. A durable intent record
 * is written first; if the process dies, open finishes the rollback. An unreachable target is
 * refused before anything changes.
 */
export async function rollbackTo(core: StoreCore, target: number): Promise<void> {
  await core.settleBackground();
  await core.enqueue(async () => {
    core.checkWritable();
    if (!Number.isSafeInteger(target) || target < 1)
      throw caller(`rollback target must be ≥ 1, got ${target}`);
    const tip = core.committed.height;
    if (target > tip) {
      throw new CairnError('OUT_OF_RANGE', `rollback target ${target} is above the committed height ${tip}`, {
        details: { target, tip },
      });
    }
    if (target === tip) {
      core.resetWorking(); // rolling back to the tip discards the pending block, nothing else
      return;
    }
    const base = reachableBase(core, target, 'rollback');
    // Check the base's contents before anything changes: a damaged snapshot refuses the rollback.
    if (base > 0) readSnapshot(core.fs, path.join(core.snapshotsDir, snapshotName(base)), base, true);
    // Only now, with the rollback certain to be attempted, is the pending block dropped: a refused
    // rollback must leave it in place.
    core.resetWorking();
    const previousCurrent = readCurrent(core.fs, core.dataDir);
    writeRollbackIntent(core.fs, core.dataDir, target, base);
    try {
      pointCurrentAt(core, base);
      removeSnapshotsAbove(core, target);
    } catch (err) {
      // Nothing but cached snapshots changed yet: undo the pointer and the intent (A11).
      try {
        if (previousCurrent === undefined) removeCurrent(core.fs, core.dataDir);
        else writeCurrent(core.fs, core.dataDir, previousCurrent);
        removeRollbackIntent(core.fs, core.dataDir);
      } catch (undoErr) {
        throw core.latch.latch(undoErr, 'undoing a failed rollback');
      }
      throw ioFatal(`rollback to ${target} did not take effect (the WAL still ends at ${tip})`, err);
    }
    try {
      await finishRollbackTail(core, target, base);
    } catch (err) {
      throw core.latch.latch(err, `rollback to ${target}`);
    }
  });
}

/** Newest snapshot ≤ height whose manifest is intact, or 0 (empty base); checks WAL coverage. */
export function reachableBase(core: StoreCore, height: number, what: string): number {
  let base = 0;
  for (const h of listSnapshotHeights(core.fs, core.snapshotsDir).reverse()) {
    if (h > height) continue;
    try {
      readSnapshot(core.fs, path.join(core.snapshotsDir, snapshotName(h)), h, false);
      base = h;
      break;
    } catch (err) {
      core.warn(`skipping damaged snapshot ${h}`, { error: describe(err) });
    }
  }
  if (base === height) return base;
  const wal = core.wal!;
  const last = wal.nextIndex - 1;
  if (wal.count === 0 || wal.firstIndex > base + 1 || last < height) {
    throw new CairnError(
      'OUT_OF_RANGE',
      `${what} to ${height} is unreachable: it needs a snapshot at or below it (newest: ${base || 'none'}) and WAL ` +
        `records ${base + 1}..${height}, but the WAL holds ${wal.count === 0 ? 'nothing' : `${wal.firstIndex}..${last}`}`,
      { details: { height, base, walFirst: wal.firstIndex, walNext: wal.nextIndex } },
    );
  }
  return base;
}

export function pointCurrentAt(core: StoreCore, base: number): void {
  if (base > 0) writeCurrent(core.fs, core.dataDir, base);
  else removeCurrent(core.fs, core.dataDir);
}

export function removeSnapshotsAbove(core: StoreCore, target: number): void {
  const failures: string[] = [];
  for (const h of listSnapshotHeights(core.fs, core.snapshotsDir)) {
    if (h <= target) continue;
    try {
      removeDirAtomic(core.fs, path.join(core.snapshotsDir, snapshotName(h)));
    } catch (err) {
      failures.push(`snapshot ${h}: ${describe(err)}`);
    }
  }
  if (failures.length > 0) throw new Error(`could not remove ${failures.join('; ')}`);
}

/** Idempotent: rebuild the engine from `base`, replay to `target`, cut the WAL, drop the intent. */
export async function finishRollbackTail(core: StoreCore, target: number, base: number): Promise<void> {
  await rebuildEngineFrom(core, base);
  await replayWal(core, target);
  await writeCheckpoint(core);
  const wal = core.wal!;
  if (wal.nextIndex > target + 1) await wal.truncateBack(target + 1);
  removeRollbackIntent(core.fs, core.dataDir);
  core.resetWorking();
}
