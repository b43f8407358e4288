/**
 * The state WAL: one record per block, record index == block height (the record format is in
 * `records.ts`). This module opens it, reads records back in order for replay and views, and keeps
 * its next index at committed height + 1.
 */
import { CairnError } from '../lib/errors.ts';
import { Wal } from '../wal/wal.ts';
import { decodeBlockRecord, type MetaRecord, type RowChange } from './records.ts';
import type { StoreCore } from './storeCore.ts';

/** The largest block record the state WAL accepts (apply refuses a block that would exceed it). */
export const WAL_MAX_RECORD_BYTES = 48 * 1024 * 1024;

export async function openStateWal(core: StoreCore, initialIndex: number): Promise<Wal> {
  return Wal.open({
    fs: core.fs,
    dir: core.walDir,
    initialIndex,
    segmentBytes: core.options.walSegmentBytes ?? 64 * 1024 * 1024,
    maxRecordBytes: WAL_MAX_RECORD_BYTES,
    durability: { mode: 'on-request' },
    ...(core.options.readOnly ? { readOnly: true } : {}),
    onWarning: (m, d) => core.warn(`state WAL: ${m}`, d),
  });
}

/** Decoded WAL records (from, to], refusing a gap (never skipping missing blocks, A5/A7). */
export function* walRecords(
  core: StoreCore,
  from: number,
  to: number,
): Generator<{ rows: RowChange[]; after: MetaRecord }> {
  if (to <= from) return;
  const wal = core.wal!;
  if (wal.count === 0 || wal.firstIndex > from + 1 || wal.nextIndex - 1 < to) {
    throw new CairnError(
      'GAP',
      `state WAL holds ${wal.count === 0 ? 'nothing' : `${wal.firstIndex}..${wal.nextIndex - 1}`} but blocks ` +
        `${from + 1}..${to} are needed: refusing to skip missing blocks`,
      { details: { from, to, walFirst: wal.firstIndex, walNext: wal.nextIndex } },
    );
  }
  for (const { index, payload } of wal.iterate(from + 1, to + 1)) {
    const rec = decodeBlockRecord(payload, index);
    yield { rows: rec.rows, after: rec.after };
  }
}

/** The WAL's next index must be committed+1 (a fresh, wiped or lagging WAL is moved up to it). */
export async function positionWal(core: StoreCore): Promise<void> {
  const wal = core.wal!;
  const next = core.committed.height + 1;
  if (wal.nextIndex === next) return;
  if (wal.nextIndex > next) {
    throw new CairnError(
      'GAP',
      `state WAL continues at ${wal.nextIndex} but the store is at ${core.committed.height}`,
      {
        details: { walNext: wal.nextIndex, height: core.committed.height },
      },
    );
  }
  if (wal.count > 0) {
    core.warn('the WAL ends below the engine checkpoint; restarting it at the checkpoint', {
      walFirst: wal.firstIndex,
      walNext: wal.nextIndex,
      height: core.committed.height,
    });
  }
  await wal.reset(next);
}
