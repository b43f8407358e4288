/**
 * Open and recovery. A writable open sweeps leftovers of interrupted operations, discards a half
 * import, finishes an interrupted rollback, and otherwise brings the engine to the WAL tip: from its
 * own synced checkpoint when the WAL reaches back to it, else rebuilt from the snapshot CURRENT
 * names. It refuses (DATA_LOSS) an engine holding blocks the WAL lost unless the operator chose to
 * discard them. A read-only open changes nothing: it reads a private engine copy and overlays the
 * WAL records above its checkpoint in memory.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { removeTree } from '../io/removeTree.ts';
import { CairnError, describe } from '../lib/errors.ts';
import { decodeMetaFrom, writeCheckpoint } from './blockBatch.ts';
import { rebuildEngineFrom, replayWal } from './engineRebuild.ts';
import { ensureDir, sweepLeftovers } from './files.ts';
import { discardInterruptedImport } from './importState.ts';
import { readRollbackIntent } from './markerFiles.ts';
import { CHECKPOINT_KEY, kvKey, VERSION_KEY } from './records.ts';
import { finishRollbackTail, pointCurrentAt, removeSnapshotsAbove } from './rollback.ts';
import { listSnapshotHeights, readCurrent, readSnapshot, snapshotName, writeCurrent } from './snapshots.ts';
import { openStateWal, positionWal, walRecords } from './stateWal.ts';
import { idOf, type StoreCore } from './storeCore.ts';
import { VIEWS_DIR } from './storeTypes.ts';

export async function recoverWritable(core: StoreCore): Promise<void> {
  ensureDir(core.fs, core.dataDir);
  for (const [dir, removed] of [
    [core.dataDir, sweepLeftovers(core.fs, core.dataDir)],
    [core.snapshotsDir, sweepLeftovers(core.fs, core.snapshotsDir)],
  ] as const) {
    if (removed.length > 0) core.warn('swept leftovers of an interrupted operation', { dir, removed });
  }
  removeTree(core.fs, path.join(core.dataDir, VIEWS_DIR));
  await discardInterruptedImport(core);
  core.wal = await openStateWal(core, 1);
  const current = readCurrent(core.fs, core.dataDir);
  if (current !== undefined) {
    // A CURRENT naming a missing or torn snapshot is refused, never treated as empty (W10).
    readSnapshot(core.fs, path.join(core.snapshotsDir, snapshotName(current)), current, false);
  }
  const intent = readRollbackIntent(core.fs, core.dataDir);
  if (intent) {
    core.warn('finishing an interrupted rollback', intent);
    pointCurrentAt(core, intent.base);
    removeSnapshotsAbove(core, intent.target);
    await finishRollbackTail(core, intent.target, intent.base);
  } else {
    await settleEngine(core, current ?? 0);
  }
  await positionWal(core);
  adoptOrphanSnapshots(core, current);
  core.resetWorking();
}

/** Brings the engine to the WAL tip: from its own checkpoint if the WAL covers it, else from a snapshot. */
async function settleEngine(core: StoreCore, current: number): Promise<void> {
  const wal = core.wal!;
  const walLast = wal.count > 0 ? wal.nextIndex - 1 : undefined;
  if (core.fs.exists(core.kvDir)) {
    core.kv = await core.host.open(core.kvDir);
    const checkpoint = decodeMetaFrom(core.kv, CHECKPOINT_KEY, 'checkpoint');
    if (!checkpoint) {
      throw new CairnError('CORRUPT', `state engine ${core.kvDir} has no checkpoint record`, {
        details: { file: core.kvDir },
      });
    }
    const version = decodeMetaFrom(core.kv, VERSION_KEY, 'version');
    const ahead =
      version !== undefined &&
      version.height > checkpoint.height &&
      (walLast === undefined || version.height > walLast);
    const covered =
      walLast === undefined || walLast <= checkpoint.height || wal.firstIndex <= checkpoint.height + 1;
    if (!ahead && covered) {
      core.committed = checkpoint;
      core.lastCheckpoint = checkpoint.height;
      if (walLast !== undefined && walLast > checkpoint.height) {
        await replayWal(core, walLast);
        await writeCheckpoint(core);
      }
      return;
    }
    const details = {
      checkpoint: checkpoint.height,
      version: version?.height,
      walFirst: wal.firstIndex,
      walLast,
    };
    if (ahead && !core.options.discardBlocksAboveWal) {
      throw new CairnError(
        'DATA_LOSS',
        `the state engine holds block ${version!.height} but the state WAL ends at ${walLast ?? 'nothing'}: ` +
          'acknowledged blocks are missing from the WAL (damaged or deleted); refusing to open. ' +
          'Reopen with discardBlocksAboveWal to rebuild from the newest snapshot and drop them.',
        { details },
      );
    }
    core.warn(
      ahead
        ? 'the engine holds blocks the WAL does not: discarding them, rebuilding from the snapshot'
        : 'the WAL does not reach back to the engine checkpoint: rebuilding from the snapshot',
      details,
    );
  }
  await rebuildEngineFrom(core, current);
  if (walLast !== undefined && walLast > current) {
    await replayWal(core, walLast);
    await writeCheckpoint(core);
  }
}

/** Snapshots above CURRENT that finished (manifest intact) before a crash are adopted (A19). */
function adoptOrphanSnapshots(core: StoreCore, current: number | undefined): void {
  let adopt: number | undefined;
  for (const h of listSnapshotHeights(core.fs, core.snapshotsDir)) {
    if (h <= (current ?? 0) || h > core.committed.height) continue;
    try {
      readSnapshot(core.fs, path.join(core.snapshotsDir, snapshotName(h)), h, false);
      adopt = h;
    } catch (err) {
      core.warn(`ignoring damaged snapshot ${h}`, { error: describe(err) });
    }
  }
  if (adopt !== undefined) {
    core.warn('adopting a completed snapshot CURRENT did not name yet', { height: adopt });
    writeCurrent(core.fs, core.dataDir, adopt);
  }
}

export async function recoverReadOnly(core: StoreCore): Promise<void> {
  if (!core.fs.exists(core.kvDir)) {
    throw new CairnError('NOT_FOUND', `no state engine at ${core.kvDir} (a writable open would rebuild it)`, {
      details: { file: core.kvDir },
    });
  }
  if (core.host.openCopy) {
    const scratch = path.join(
      core.options.scratchDir ?? os.tmpdir(),
      `cairn-state-inspect-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e9)}`,
    );
    core.scratch = scratch;
    core.kv = await core.host.openCopy(core.kvDir, scratch);
  } else {
    core.kv = await core.host.open(core.kvDir);
  }
  // The WAL is read after the engine copy: a writer's later commits are then all in the WAL read
  // here (overlaid below), never rows of a block the WAL read does not know.
  core.wal = await openStateWal(core, 1);
  const checkpoint = decodeMetaFrom(core.kv, CHECKPOINT_KEY, 'checkpoint');
  if (!checkpoint) throw new CairnError('CORRUPT', `state engine ${core.kvDir} has no checkpoint record`);
  core.committed = checkpoint;
  core.lastCheckpoint = checkpoint.height;
  const wal = core.wal;
  const walLast = wal.count > 0 ? wal.nextIndex - 1 : 0;
  if (walLast > checkpoint.height) {
    for (const rec of walRecords(core, checkpoint.height, walLast)) {
      for (const r of rec.rows) core.overlay.set(idOf(kvKey(r.family, r.key)), r);
      core.committed = rec.after;
    }
  }
  core.resetWorking();
}
