import type { PersistenceMetrics } from './metrics.ts';
import type { TypedLog } from './typedLog.ts';

/**
 * The truncate-then-append protocol both consensus persisters follow (each lane's block log and the
 * CommitQC log), in the order that leaves a recoverable log after a crash at any point:
 *  1. re-position: when the durable prune anchor lies past everything the log holds, the log is
 *     emptied and positioned at the anchor, durably, before any append that depends on it;
 *  2. append the batch, one fsync for all of it;
 *  3. drop what lies below the anchor, after the append (never an fsync in front of it), and with
 *     `lazyPrune` only when that frees a whole segment.
 * The caller validates the batch first (nothing is written for bad input) and latches on failure.
 */

/** Steps 1 and 2: empty and re-position the log at `resetTo` (when given), then append `batch` durably. */
export async function resetThenAppend<T>(
  log: TypedLog<T>,
  resetTo: number | undefined,
  batch: readonly T[],
  metrics: PersistenceMetrics,
): Promise<void> {
  if (resetTo !== undefined) {
    await log.truncateAll(resetTo);
    metrics.resets++;
  }
  if (batch.length === 0) return;
  log.append(batch);
  const started = performance.now();
  await log.sync();
  metrics.fsyncLatency.record(performance.now() - started);
  metrics.fsyncs++;
}

/**
 * Step 3's rule: where to cut a log for an anchor whose range starts at `anchorFirst`. Undefined
 * when nothing lies below it, or (lazy) when the cut would not free a whole segment. One rule for
 * the write path and for deciding whether an anchor move leaves a log untouched.
 */
export function pruneTarget<T>(
  log: TypedLog<T>,
  anchorFirst: number,
  lazyPrune: boolean,
): number | undefined {
  if (anchorFirst <= log.firstIndex) return undefined;
  const target = Math.min(anchorFirst, log.nextIndex);
  return !lazyPrune || log.raw.truncateFrontFreesSegment(target) ? target : undefined;
}

/**
 * Step 3: drops every record below `target`. When the log retains records, the one at the cut is
 * read first (decoded and checked to carry its own index, see `TypedLog.read`): a defence against
 * a wrong cut point. A no-op log retains none to read.
 */
export async function pruneBelow<T>(
  log: TypedLog<T>,
  target: number,
  retainsRecords: boolean,
  metrics: PersistenceMetrics,
): Promise<void> {
  await log.truncateBefore(target, retainsRecords ? readsTheCut : undefined);
  metrics.truncations++;
}

/** `truncateBefore` reads (and so checks) the record at the cut before calling its verifier. */
function readsTheCut(): void {}
