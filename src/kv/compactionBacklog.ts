import { setTimeout as sleep } from 'node:timers/promises';

/**
 * LevelDB's size-triggered compaction backlog, read from outside the engine, so that a clean close
 * can let the engine finish what it would otherwise do right after the next open.
 *
 * Why: LevelDB compacts on its own background thread whenever a level is over its budget, and a
 * close abandons a compaction in progress (the work is redone from scratch later). After a large
 * ingest the backlog at close is typically a level 1 over its 10 MiB budget; the reopened store then
 * runs that cascade on the same cores as its first reads (measured: 0.2 s of level 1 -> 2 -> 3
 * compaction after reopening the 1M-log receipts bench's data, closed without waiting). Waiting for
 * it at close moves that work to where nobody reads. Not covered: LevelDB's read-triggered (seek)
 * compactions, which the reads after the open start themselves (0.8-2.4 s during the bench's first
 * query pass on a loaded machine).
 *
 * The scores are LevelDB's own (db/version_set.cc, Finalize): level 0 by file count against its
 * compaction trigger (4 files), level n >= 1 by bytes against 10 MiB x 10^(n-1); a score >= 1 means
 * the engine has a compaction scheduled or running. Seek-triggered compactions are not counted (they
 * follow reads, not writes).
 */
const L0_COMPACTION_TRIGGER_FILES = 4;
const LEVEL1_BUDGET_BYTES = 10 * 1048576;
/** LevelDB scores levels 0..5 (the last of its 7 levels has no budget). */
const SCORED_LEVELS = 6;

/** Table files and their bytes per level, from the text of LevelDB's `leveldb.sstables` property. */
export function parseSstables(text: string): { files: number; bytes: number }[] {
  const levels: { files: number; bytes: number }[] = [];
  let current: { files: number; bytes: number } | undefined;
  for (const line of text.split('\n')) {
    const header = /^--- level (\d+) ---$/.exec(line);
    if (header) {
      current = { files: 0, bytes: 0 };
      levels[Number(header[1])] = current;
      continue;
    }
    // " <file number>:<file size>[<smallest key> .. <largest key>]"
    const file = /^ (\d+):(\d+)\[/.exec(line);
    if (file && current) {
      current.files++;
      current.bytes += Number(file[2]);
    }
  }
  for (let i = 0; i < levels.length; i++) levels[i] ??= { files: 0, bytes: 0 };
  return levels;
}

/** The highest of LevelDB's compaction scores over `levels` (>= 1: a compaction is due). */
export function compactionScore(levels: readonly { files: number; bytes: number }[]): number {
  let best = 0;
  let budget = LEVEL1_BUDGET_BYTES;
  for (let level = 0; level < Math.min(levels.length, SCORED_LEVELS); level++) {
    const l = levels[level]!;
    const score = level === 0 ? l.files / L0_COMPACTION_TRIGGER_FILES : l.bytes / budget;
    if (level > 0) budget *= 10;
    best = Math.max(best, score);
  }
  return best;
}

/** What settling needs of a LevelDB store (ClassicLevelKv). */
export interface CompactingEngine {
  /** Writes the memtable to a level-0 table (the next open then replays an empty log). */
  flushMemtable(): Promise<void>;
  /** The text of a LevelDB property (`leveldb.sstables`). */
  engineProperty(name: string): string;
}

export interface SettleOptions {
  /** Longest wait; past it the close goes ahead and the engine resumes after the next open. */
  maxWaitMs: number;
  /** Interval between two looks at the levels. */
  pollMs?: number;
}

/**
 * Flushes the memtable, then waits until no level is over its budget (or `maxWaitMs` passed).
 * Returns how long it waited and whether the backlog was cleared. Only reads the engine's state: the
 * compactions themselves are the engine's own, on its background thread.
 */
export async function settleCompaction(
  engine: CompactingEngine,
  options: SettleOptions,
): Promise<{ waitedMs: number; settled: boolean }> {
  const start = performance.now();
  await engine.flushMemtable();
  for (;;) {
    const waitedMs = performance.now() - start;
    if (compactionScore(parseSstables(engine.engineProperty('leveldb.sstables'))) < 1) {
      return { waitedMs, settled: true };
    }
    if (waitedMs >= options.maxWaitMs) return { waitedMs, settled: false };
    await sleep(options.pollMs ?? 20);
  }
}
