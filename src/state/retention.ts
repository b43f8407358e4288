/**
 * Pruning: what the store keeps of its history. One height window, [tip - retainBlocks, tip], stays
 * reachable for rollback, views and export; snapshots below it and WAL records below the oldest
 * snapshot still needed are dropped. Runs as a writer step after each snapshot completes.
 */
import * as path from 'node:path';
import { removeDirAtomic } from './files.ts';
import { listSnapshotHeights, snapshotName } from './snapshots.ts';
import type { StoreCore } from './storeCore.ts';

/**
 * One height window: keep every snapshot inside [tip - retainBlocks, tip] and the newest one below
 * it (the base for the window's lowest heights); drop WAL records below the oldest kept snapshot
 * (never above the last synced checkpoint, which replay starts from).
 */
export async function applyRetention(core: StoreCore): Promise<void> {
  if (core.latch.error) return;
  const tip = core.committed.height;
  const edge = Math.max(0, tip - core.retainBlocks);
  const heights = listSnapshotHeights(core.fs, core.snapshotsDir).filter((h) => h <= tip);
  // The base of the window's lowest height: the newest snapshot at or below the edge, or the empty
  // state (0) when there is none, which needs the WAL from block 1.
  const base = heights.filter((h) => h <= edge).at(-1) ?? 0;
  for (const h of heights) {
    if (h < base) removeDirAtomic(core.fs, path.join(core.snapshotsDir, snapshotName(h)));
  }
  const wal = core.wal!;
  const floor = Math.min(base, core.lastCheckpoint) + 1;
  if (floor > wal.firstIndex && floor <= wal.nextIndex && wal.truncateFrontFreesSegment(floor)) {
    await wal.truncateFront(floor);
  }
}
