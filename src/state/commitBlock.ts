/**
 * Commit: makes the pending block durable and hands its engine batch to the write-behind engine.
 * The order is the durability protocol (stateStore.ts's file comment): the block's WAL record is
 * appended and fsynced first (its engine batch is staged in memory meanwhile, not written); once the
 * record is durable the block is committed and acknowledged, and its engine batch is written behind
 * the acknowledgement, in height order, while the caller builds the next block.
 */
import type { KvBatch } from '../kv/orderedKv.ts';
import { CairnError } from '../lib/errors.ts';
import { stageBlockBatch } from './blockBatch.ts';
import { BLOCK_RECORD_FIXED_BYTES, encodeBlockRecord, META_BYTES, type MetaRecord } from './records.ts';
import { scheduleAutoSnapshot } from './snapshotWriter.ts';
import { WAL_MAX_RECORD_BYTES } from './stateWal.ts';
import { cloneMeta, type StoreCore } from './storeCore.ts';

/** Commits the pending block as `height` (the next one); resolves once its WAL record is durable. */
export async function commitPendingBlock(core: StoreCore, height: number): Promise<number> {
  core.checkWritable();
  const expected = core.committed.height + 1;
  if (height !== expected) {
    throw new CairnError('OUT_OF_ORDER', `commit at height ${height}: the next block is ${expected}`, {
      details: { height, expected },
    });
  }
  const after: MetaRecord = { height, roots: core.working.roots, stats: core.working.stats };
  const rows = [...core.pending.values()];
  const wal = core.wal!;
  const payload = encodeBlockRecord(rows, after);
  if (payload.length > WAL_MAX_RECORD_BYTES) {
    // Refused before anything is written: the pending block stays as it is.
    throw new CairnError(
      'RECORD_TOO_LARGE',
      `block ${height} encodes to ${payload.length} bytes, above the state WAL limit of ${WAL_MAX_RECORD_BYTES}`,
      { details: { height, bytes: payload.length, limit: WAL_MAX_RECORD_BYTES } },
    );
  }
  const checkpoint = height % core.checkpointInterval === 0;
  let syncing: Promise<void>;
  try {
    wal.append([payload], height);
    syncing = wal.sync();
  } catch (err) {
    throw core.latch.latch(err, `state WAL append of block ${height}`);
  }
  // While the record is fsynced, stage the engine batch in memory: nothing of it reaches the
  // engine before the WAL record is durable (a batch is applied only by write()).
  let staged: KvBatch | undefined;
  let stageError: unknown;
  try {
    staged = stageBlockBatch(core.kv!, rows, payload.subarray(payload.length - META_BYTES), checkpoint);
  } catch (err) {
    stageError = err;
  }
  try {
    await syncing;
  } catch (err) {
    // An unwritten staged batch is dropped; the engine closes it when the store closes.
    throw core.latch.latch(err, `state WAL append of block ${height}`);
  }
  // The record is durable: the block is committed. Its engine batch goes out behind the previous
  // block's (engine batches stay in height order, each after its own WAL record) and is written
  // while the caller builds the next block; until it lands, reads find its rows in `inflight`.
  // A failed batch latches the store: the next call rejects with its cause, and an open replays
  // the block from the WAL.
  await core.drainEngineWrite();
  core.latch.check();
  if (staged === undefined) throw core.latch.latch(stageError, `state engine batch of block ${height}`);
  const batch = staged;
  const rowsById = core.pending;
  const write: Promise<void> = batch
    .write({ sync: checkpoint })
    .then(
      () => {
        if (checkpoint) core.lastCheckpoint = height;
      },
      (err: unknown) => {
        core.latch.latch(err, `state engine batch of block ${height}`);
        core.engineWriteFailed = true;
      },
    )
    .finally(() => {
      if (core.inflight === rowsById) core.inflight = undefined;
      if (core.engineWrite === write) core.engineWrite = undefined;
    });
  core.inflight = rowsById;
  core.engineWrite = write;
  core.committed = cloneMeta(after);
  core.pending = new Map();
  core.pendingHeight = 0;
  core.pendingRecordBytes = BLOCK_RECORD_FIXED_BYTES;
  if (core.snapshotInterval > 0 && height % core.snapshotInterval === 0) scheduleAutoSnapshot(core);
  else if (core.snapshotInterval > 1 && (height + 1) % core.snapshotInterval === 0) {
    // One block ahead of an automatic snapshot, let the engine shrink its log in the background.
    core.startCheckpointPreparation();
  }
  return height;
}
