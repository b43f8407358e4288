/**
 * Taking snapshots. A snapshot is a hard-link checkpoint of the engine (`kvHost.checkpoint`) plus
 * a manifest of checksums, and `CURRENT` names the newest (format in `snapshots.ts`). Commits are
 * blocked only while the engine is quiesced and linked; the rest (checksums of the immutable linked
 * files, manifest, rename, CURRENT, retention) runs in the background beside later commits, and a
 * failure there is a warning that leaves CURRENT unchanged.
 */
import * as path from 'node:path';
import { removeTree } from '../io/removeTree.ts';
import { describe, ioFatal } from '../lib/errors.ts';
import { writeCheckpoint } from './blockBatch.ts';
import { ensureDir, fileChecksum } from './files.ts';
import { LtHash } from './ltHash.ts';
import type { MetaRecord } from './records.ts';
import { applyRetention } from './retention.ts';
import { type Manifest, readCurrent, snapshotName, writeCurrent, writeManifest } from './snapshots.ts';
import { caller, cloneMeta, type StoreCore } from './storeCore.ts';
import type { SnapshotResult } from './storeTypes.ts';

/** Snapshot of the committed state; a no-op if one exists at this height. */
export async function takeSnapshot(core: StoreCore): Promise<SnapshotResult> {
  await core.settleBackground();
  // Flush the engine while commits keep running; only the quiesce below blocks the writer.
  core.startCheckpointPreparation();
  await core.preparing;
  const result = await core.enqueue(() => snapshotNow(core));
  await core.settleBackground(true);
  return result;
}

export function scheduleAutoSnapshot(core: StoreCore): void {
  // Runs as the next writer step (the caller's commit has resolved); failures are warnings.
  void core
    .enqueue(() => snapshotNow(core))
    .catch((err) => {
      core.warn('automatic snapshot failed; the previous snapshot stays current', { error: describe(err) });
    });
}

/** `inline`: finish (manifest, CURRENT, retention) before returning, for callers already on the queue. */
export async function snapshotNow(core: StoreCore, inline = false): Promise<SnapshotResult> {
  core.checkWritable();
  const height = core.committed.height;
  if (height === 0) throw caller('cannot snapshot a store with nothing committed');
  const finalDir = path.join(core.snapshotsDir, snapshotName(height));
  if (core.fs.exists(finalDir)) return { height, stallMs: 0, files: 0, created: false };
  const tmp = `${finalDir}-tmp`;
  const started = performance.now();
  await core.awaitCheckpointPreparation();
  let files: string[];
  let copyError: unknown;
  let phasesMs: Record<string, number> | undefined;
  try {
    await writeCheckpoint(core);
    const checkpointMs = performance.now() - started;
    ensureDir(core.fs, core.snapshotsDir);
    removeTree(core.fs, tmp);
    ensureDir(core.fs, tmp);
    const r = await core.host.checkpoint(core.kv!, core.kvDir, tmp);
    core.kv = r.kv;
    files = r.files;
    copyError = r.error;
    if (r.phasesMs) phasesMs = { syncedCheckpoint: checkpointMs, ...r.phasesMs };
  } catch (err) {
    // The engine could not be reopened (or the checkpoint batch failed): nothing is trustworthy.
    throw core.latch.latch(err, `snapshot of height ${height}`);
  }
  if (copyError !== undefined) {
    // The engine is back and intact; only this snapshot failed. CURRENT is unchanged.
    try {
      removeTree(core.fs, tmp);
    } catch {
      // swept at the next open
    }
    throw ioFatal(`snapshot of height ${height} (the store keeps committing without it)`, copyError);
  }
  const stallMs = performance.now() - started;
  const meta = cloneMeta(core.committed);
  if (inline) {
    await finishSnapshot(core, tmp, finalDir, meta, files, true);
    return { height, stallMs, files: files.length, created: true, ...(phasesMs ? { phasesMs } : {}) };
  }
  // The rest (checksums of the linked files, manifest, rename, CURRENT, retention) runs beside
  // later commits: the files are immutable now. The chain never rejects; a failure is kept for the
  // next explicit snapshot()/settle and reported as a warning.
  core.background = core.background.then(async () => {
    try {
      await finishSnapshot(core, tmp, finalDir, meta, files);
    } catch (err) {
      try {
        removeTree(core.fs, tmp);
      } catch {
        // swept at the next open
      }
      core.backgroundError ??= err;
      core.warn('snapshot could not be completed; CURRENT unchanged', { height, error: describe(err) });
    }
  });
  return { height, stallMs, files: files.length, created: true, ...(phasesMs ? { phasesMs } : {}) };
}

async function finishSnapshot(
  core: StoreCore,
  tmp: string,
  finalDir: string,
  meta: MetaRecord,
  files: string[],
  inline = false,
): Promise<void> {
  const manifest: Manifest = {
    height: meta.height,
    meta,
    root: core.hasher.checksum(LtHash.sum(meta.roots)),
    files: files.map((name) => ({ name, ...fileChecksum(core.fs, path.join(tmp, name)) })),
  };
  writeManifest(core.fs, tmp, manifest);
  core.fs.syncDir(tmp);
  core.fs.rename(tmp, finalDir);
  core.fs.syncDir(core.snapshotsDir);
  const current = readCurrent(core.fs, core.dataDir);
  if (current === undefined || current < meta.height) writeCurrent(core.fs, core.dataDir, meta.height);
  if (inline) await applyRetention(core);
  else await core.queueStep(() => applyRetention(core));
}
