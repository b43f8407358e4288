/**
 * The engine side of one block: the batch that carries its rows, the version record and (every
 * `checkpointIntervalBlocks`, or when asked) the checkpoint record. The version record says which
 * block the engine last received; the checkpoint record says which block a synced batch made
 * durable, and open replays the WAL from there (see `recovery.ts`).
 */
import type { KvBatch, OrderedKv } from '../kv/orderedKv.ts';
import { CHECKPOINT_KEY, decodeMeta, encodeMeta, kvKey, type MetaRecord, VERSION_KEY } from './records.ts';
import type { PendingRow, StoreCore } from './storeCore.ts';

/** One block's engine batch (rows, version record, checkpoint record if `checkpoint`), unwritten. */
export function stageBlockBatch(
  kv: OrderedKv,
  rows: readonly PendingRow[],
  meta: Uint8Array,
  checkpoint: boolean,
): KvBatch {
  const batch = kv.batch();
  for (const r of rows) {
    const kk = r.kk ?? kvKey(r.family, r.key);
    if (r.value === null) batch.del(kk);
    else batch.put(kk, r.value);
  }
  batch.put(VERSION_KEY, meta);
  if (checkpoint) batch.put(CHECKPOINT_KEY, meta);
  return batch;
}

/** Stages and writes one block's batch (replay and views: the block's WAL record is durable). */
export async function writeBlockBatch(
  kv: OrderedKv,
  rows: readonly PendingRow[],
  after: MetaRecord,
  sync: boolean,
) {
  await stageBlockBatch(kv, rows, encodeMeta(after), sync).write({ sync });
}

/** A synced batch of the version and checkpoint records at the committed height. */
export async function writeCheckpoint(core: StoreCore): Promise<void> {
  const meta = encodeMeta(core.committed);
  await core.kv!.batch().put(VERSION_KEY, meta).put(CHECKPOINT_KEY, meta).write({ sync: true });
  core.lastCheckpoint = core.committed.height;
}

/** The meta record stored under `key` (version or checkpoint), or undefined when there is none. */
export function decodeMetaFrom(kv: OrderedKv, key: Uint8Array, what: string): MetaRecord | undefined {
  const bytes = kv.get(key);
  return bytes === undefined ? undefined : decodeMeta(bytes, what);
}
