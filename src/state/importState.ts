/**
 * Import: replaces the whole store with an exported state. IMPORT_IN_PROGRESS (`markerFiles.ts`) is
 * written first and removed last; between them the store is wiped, the rows are checked (family
 * routing, value structure, order, heights) and hashed, and the state is finalized only when the
 * stream checksum, the trailer root and the caller's expected root agree. The input's faults (a
 * refused stream) leave an empty, usable store; the store's own failures latch it, and the next open
 * finds the marker and wipes the half import (`discardInterruptedImport`).
 */
import { toHex } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import { writeCheckpoint } from './blockBatch.ts';
import { checkStoredValue, FAMILIES, FAMILY_INDEX, familyOfPhysicalKey } from './encoding.ts';
import { rebuildEngineFrom } from './engineRebuild.ts';
import { ExportReader } from './exportFormat.ts';
import { removeDirAtomic } from './files.ts';
import { LtHash } from './ltHash.ts';
import {
  readImportMarker,
  removeImportMarker,
  removeRollbackIntent,
  writeImportMarker,
} from './markerFiles.ts';
import { emptyMeta, kvKey, type MetaRecord } from './records.ts';
import { removeCurrent } from './snapshots.ts';
import { snapshotNow } from './snapshotWriter.ts';
import { openStateWal } from './stateWal.ts';
import type { StoreCore } from './storeCore.ts';
import type { ImportOptions } from './storeTypes.ts';

/** Rows per engine batch while importing (unsynced; the final checkpoint batch is synced). */
const IMPORT_BATCH_ROWS = 10_000;

/**
 * Replaces the whole store with an exported state. The in-progress marker is written first; the
 * store, its snapshots and its WAL are wiped; rows are checked (family routing, value structure,
 * order, heights) and hashed; the stream checksum, the trailer root and `expectedRoot` must all
 * agree before the state is finalized (synced checkpoint, snapshot, WAL positioned at height+1,
 * marker removed). A refused input (malformed stream, unexpected row, root mismatch) leaves the
 * purged store empty at height 0 and usable, and its error passes through unlatched; a store-side
 * failure latches, and the next open wipes the half import.
 */
export async function importState(
  core: StoreCore,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: ImportOptions = {},
): Promise<{ height: number; rows: number; root: Uint8Array }> {
  await core.settleBackground();
  return core.enqueue(async () => {
    core.checkWritable();
    const reader = new ExportReader(source);
    const { height } = await reader.readHeader();
    /** Set when the input was refused (bad stream, unexpected row, root mismatch), not the store. */
    let rejected: unknown;
    const refuse = (err: CairnError): CairnError => {
      rejected = err;
      return err;
    };
    try {
      writeImportMarker(core.fs, core.dataDir, height);
      await wipeAll(core);
      core.wal = await openStateWal(core, height + 1);
      await rebuildEngineFrom(core, 0);
      const roots = FAMILIES.map(() => new LtHash());
      const stats = FAMILIES.map(() => ({ keys: 0, bytes: 0 }));
      let batch = core.kv!.batch();
      let rows = 0;
      let prev: Uint8Array | undefined;
      for (;;) {
        let item: Awaited<ReturnType<ExportReader['next']>>;
        try {
          item = await reader.next();
        } catch (err) {
          // The stream itself failed or is malformed: the input's fault, not the store's.
          rejected = err;
          throw err;
        }
        if (item.kind === 'end') {
          if (item.rowCount !== rows) {
            throw refuse(
              new CairnError(
                'CORRUPT',
                `export trailer counts ${item.rowCount} rows, the stream had ${rows}`,
              ),
            );
          }
          await batch.write({ sync: false });
          const meta: MetaRecord = { height, roots, stats };
          const root = core.hasher.checksum(LtHash.sum(roots));
          if (toHex(root) !== toHex(item.root)) {
            throw refuse(
              new CairnError(
                'CORRUPT',
                `imported rows hash to ${toHex(root)}, the export trailer says ${toHex(item.root)}`,
              ),
            );
          }
          if (options.expectedRoot && toHex(root) !== toHex(options.expectedRoot)) {
            throw refuse(
              new CairnError(
                'CONFLICT',
                `imported root ${toHex(root)} differs from the expected root ${toHex(options.expectedRoot)}`,
                { details: { root: toHex(root), expected: toHex(options.expectedRoot) } },
              ),
            );
          }
          core.committed = meta;
          core.working = { roots: roots.map((r) => r.clone()), stats: stats.map((s) => ({ ...s })) };
          await writeCheckpoint(core);
          if (height > 0) {
            await snapshotNow(core, true);
          }
          removeImportMarker(core.fs, core.dataDir);
          options.onProgress?.({ rows, bytes: reader.offset });
          return { height, rows, root };
        }
        const family = familyOfPhysicalKey(item.key);
        if (!family)
          throw refuse(
            new CairnError(
              'CORRUPT',
              `import row ${rows}: key ${toHex(item.key.subarray(0, 40))} routes to no family`,
            ),
          );
        const kk = kvKey(family, item.key);
        if (prev && Buffer.compare(prev, kk) >= 0) {
          throw refuse(new CairnError('CORRUPT', `import row ${rows}: keys are not strictly increasing`));
        }
        prev = kk;
        let stamped: number;
        try {
          stamped = checkStoredValue(family, item.value);
        } catch (err) {
          rejected = err;
          throw err;
        }
        if (stamped > height) {
          throw refuse(
            new CairnError(
              'CORRUPT',
              `import row ${rows}: value stamped at height ${stamped} above the import height ${height}`,
            ),
          );
        }
        const f = FAMILY_INDEX[family];
        core.hasher.mixIn(roots[f]!, item.key, item.value);
        stats[f]!.keys++;
        stats[f]!.bytes += item.key.length + item.value.length;
        batch.put(kk, item.value);
        if (++rows % IMPORT_BATCH_ROWS === 0) {
          await batch.write({ sync: false });
          batch = core.kv!.batch();
          options.onProgress?.({ rows, bytes: reader.offset });
        }
      }
    } catch (err) {
      if (err !== rejected) {
        // The store failed mid-import: a half-imported store must never serve. Latch; the next
        // open wipes it (marker present).
        throw core.latch.latch(err, `import at height ${height}`);
      }
      // The input was refused. The purge already happened (spec §5.14: an aborted import leaves
      // the purged store), so finish the purge durably and stay usable at height 0; the refusal
      // reaches the caller unchanged. Only a failure of this cleanup latches.
      try {
        await resetToEmpty(core);
      } catch (cleanupErr) {
        throw core.latch.latch(cleanupErr, `discarding a refused import at height ${height}`);
      }
      throw err;
    }
  });
}

/** Removes engine, snapshots, CURRENT and WAL (import start, or an interrupted import at open). */
async function wipeAll(core: StoreCore): Promise<void> {
  await core.closeEngine();
  if (core.wal) {
    const wal = core.wal;
    core.wal = undefined;
    await wal.close();
  }
  removeDirAtomic(core.fs, core.kvDir);
  removeDirAtomic(core.fs, core.snapshotsDir);
  removeDirAtomic(core.fs, core.walDir);
  removeCurrent(core.fs, core.dataDir);
  removeRollbackIntent(core.fs, core.dataDir);
  core.committed = emptyMeta(0);
  core.lastCheckpoint = 0;
}

/** After a refused import: an empty store at height 0 with a fresh WAL, the marker removed last. */
async function resetToEmpty(core: StoreCore): Promise<void> {
  await wipeAll(core);
  core.wal = await openStateWal(core, 1);
  await rebuildEngineFrom(core, 0);
  removeImportMarker(core.fs, core.dataDir);
  core.resetWorking();
}

/** At open: an IMPORT_IN_PROGRESS marker means a half import, which must never serve: wipe it. */
export async function discardInterruptedImport(core: StoreCore): Promise<void> {
  const importing = readImportMarker(core.fs, core.dataDir);
  if (importing !== undefined) {
    core.warn('discarding an interrupted import', { height: importing });
    await wipeAll(core);
    removeImportMarker(core.fs, core.dataDir);
  }
}
