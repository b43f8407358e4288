/**
 * Where a vote's time goes: `npm run bench -- votePathTrace [--rounds N] [--ms N] [--sides a,b,c]`.
 *
 * Runs the consensus bench's steady schedule (40 lanes × 4 KiB × 50/s, no burst) for Cairn and for
 * the raw per-lane baseline, alternating, with node:fs's `fdatasync`, `openSync` and `writevSync`
 * wrapped (timestamps only), and splits each measured block's arrival → voteable time into:
 *  - before: arrival → the fdatasync that made it durable was issued (batching, waiting for the
 *    lane's previous fsync, encoding and the write);
 *  - fsync: issue → completion callback (thread pool + device; this disk serializes concurrent
 *    fdatasyncs, so it grows with how many are in flight);
 *  - after: completion callback → the vote gate opened (bookkeeping on the main thread, and
 *    whatever else ran first in that turn).
 * It also reports, per side, how many fdatasyncs were in flight when a lane's was issued, and how
 * many fsyncs of other files (CommitQC log, anchor) overlapped a lane's fsync, with the lane fsync
 * time of each group. Read that split with care: a long lane fsync is more likely to overlap one of
 * the ~10 other fsyncs a second, so "overlapped" is biased towards slow fsyncs whatever the cause.
 * (Only async fdatasyncs are traced: directory fsyncs and synchronous ones are not.)
 *
 * Then the slowest 1 % of each round's blocks, classified: did a GC pause ('gc' performance
 * entries) overlap the block's arrival → voteable window, was an anchor or CommitQC-log fsync in
 * flight when the lane's was issued (ahead of it on a disk that serializes fdatasyncs), was the
 * lane's previous fsync still running at arrival, did the schedule's 1 ms loop stall ≥ 3 ms (a long
 * main-thread turn, or the process off the CPU). Each flag is printed with its share of the tail
 * and of all blocks: only a flag much more common in the tail than overall explains the tail.
 * `--sides cairn,cairn-no-qc,raw,raw+qc` adds Cairn without the CommitQC / AppQC flow (no CommitQC log
 * or anchor writes, no QC handling on the main thread): the QC flow's share of the tail, measured;
 * and the raw lanes plus raw CommitQC / anchor files at the same cadence (the layout's own limit).
 * A diagnostic, not a bench with bars: its figures are same-run medians on a shared machine.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { MAIN, prepare, runSchedule, type Side } from './consensus.ts';
import { percentile, printTable } from './support/stats.ts';
import { rerunWithThreadPool } from './support/threadPool.ts';

interface SyncEvent {
  /** Lane index, or -1 for any other file (CommitQC log, anchor, directory). */
  lane: number;
  issuedMs: number;
  completedMs: number;
  /** fdatasyncs already in flight when this one was issued. */
  inFlightAtIssue: number;
  /** Other-file fsyncs in flight at any time during this one. */
  otherOverlaps: number;
  /** Anchor / CommitQC-log fdatasyncs already in flight when this one was issued (queued ahead). */
  anchorAhead: number;
  commitQCAhead: number;
}

/** `lane` codes of the files that are not lanes. */
const OTHER_FILE = -1;
const ANCHOR_FILE = -2;
const COMMITQC_FILE = -3;

function otherFileKind(path: string): number {
  if (path.includes('/anchor.')) return ANCHOR_FILE;
  if (path.includes('/commitqcs/')) return COMMITQC_FILE;
  return OTHER_FILE;
}

class FsTrace {
  readonly fdLane = new Map<number, number>();
  readonly lastLaneSync = new Map<number, SyncEvent>();
  /** The lane's fsync before the last: still running at a block's arrival = the lane was busy. */
  readonly prevLaneSync = new Map<number, SyncEvent>();
  readonly lastWriteMs = new Map<number, number>();
  readonly events: SyncEvent[] = [];
  private readonly inFlight = new Set<SyncEvent>();
  laneOfPath: (path: string) => number = () => -1;
  on = false;

  install(): void {
    const fs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
    const openSync = fs.openSync;
    const fdatasync = fs.fdatasync;
    const writevSync = fs.writevSync;
    const writeSync = fs.writeSync;
    fs.openSync = ((path: string, ...rest: unknown[]) => {
      const fd = (openSync as (...a: unknown[]) => number)(path, ...rest);
      this.fdLane.set(fd, this.laneOfPath(String(path)));
      return fd;
    }) as typeof fs.openSync;
    fs.writevSync = ((fd: number, ...rest: unknown[]) => {
      const n = (writevSync as (...a: unknown[]) => number)(fd, ...rest);
      const lane = this.fdLane.get(fd) ?? -1;
      if (lane >= 0) this.lastWriteMs.set(lane, performance.now());
      return n;
    }) as typeof fs.writevSync;
    fs.writeSync = ((fd: number, ...rest: unknown[]) => {
      const n = (writeSync as (...a: unknown[]) => number)(fd, ...rest);
      const lane = this.fdLane.get(fd) ?? -1;
      if (lane >= 0) this.lastWriteMs.set(lane, performance.now());
      return n;
    }) as typeof fs.writeSync;
    fs.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      const lane = this.fdLane.get(fd) ?? -1;
      const ev: SyncEvent = {
        lane,
        issuedMs: performance.now(),
        completedMs: 0,
        inFlightAtIssue: this.inFlight.size,
        otherOverlaps: 0,
        anchorAhead: 0,
        commitQCAhead: 0,
      };
      for (const other of this.inFlight) {
        if (other.lane === ANCHOR_FILE) ev.anchorAhead++;
        else if (other.lane === COMMITQC_FILE) ev.commitQCAhead++;
      }
      if (lane < 0) for (const other of this.inFlight) other.otherOverlaps++;
      else for (const other of this.inFlight) if (other.lane < 0) ev.otherOverlaps++;
      this.inFlight.add(ev);
      fdatasync(fd, (err) => {
        ev.completedMs = performance.now();
        this.inFlight.delete(ev);
        if (this.on) this.events.push(ev);
        if (lane >= 0) {
          const prev = this.lastLaneSync.get(lane);
          if (prev !== undefined) this.prevLaneSync.set(lane, prev);
          this.lastLaneSync.set(lane, ev);
        }
        cb(err);
      });
    }) as typeof fs.fdatasync;
    syncBuiltinESMExports();
  }
}

interface Split {
  totalMs: number[];
  beforeMs: number[];
  arrivalToWriteMs: number[];
  /** arrival → write for blocks that found their lane idle (no fsync of it in flight). */
  idleArrivalToWriteMs: number[];
  laneBusyAtArrival: number;
  writeToIssueMs: number[];
  fsyncMs: number[];
  /** fsync time of the blocks whose lane fsync overlapped another file's fsync, and of the rest. */
  fsyncOverlappedMs: number[];
  fsyncAloneMs: number[];
  afterMs: number[];
  inFlight: number[];
  otherOverlaps: number[];
}

const emptySplit = (): Split => ({
  totalMs: [],
  beforeMs: [],
  arrivalToWriteMs: [],
  idleArrivalToWriteMs: [],
  laneBusyAtArrival: 0,
  writeToIssueMs: [],
  fsyncMs: [],
  fsyncOverlappedMs: [],
  fsyncAloneMs: [],
  afterMs: [],
  inFlight: [],
  otherOverlaps: [],
});

/** One measured block: when it arrived, when its vote gate opened, the fsync that made it durable. */
interface TailSample {
  arrivedMs: number;
  durableMs: number;
  ev: SyncEvent;
  /** The lane's previous fsync was still running at arrival: the block waited for it. */
  laneBusy: boolean;
}

/**
 * A schedule-loop gap this long (the loop sleeps 1 ms) means the main thread did not get back to
 * its timers: a long turn, or the process was off the CPU (the machine is shared).
 */
const STALL_MS = 3;

/** Causes, in the order they are assigned to a tail block (the first that applies). */
const CAUSES = ['gc', 'anchor fsync ahead', 'commitqc fsync ahead', 'lane busy', 'stall', 'fsync'] as const;
type Cause = (typeof CAUSES)[number];

/**
 * What each flag's share is among the slowest 1 % of the round's blocks and among all of them (the
 * base rate: a flag that is as common in the tail as overall explains nothing), plus the primary
 * cause of every tail block and the tail's own before / fsync / after split.
 */
interface TailBreakdown {
  all: number;
  tail: number;
  thresholdMs: number;
  /** Flag → [count in tail, count in all]. */
  flags: Record<Cause, [number, number]>;
  primary: Record<Cause, number>;
  tailBeforeMs: number[];
  tailFsyncMs: number[];
  tailAfterMs: number[];
  tailGcMs: number[];
  tailInFlight: number[];
}

/** Milliseconds of [from, to] covered by the intervals (sorted by start). */
function overlapMs(
  intervals: readonly { startMs: number; endMs: number }[],
  from: number,
  to: number,
): number {
  let ms = 0;
  for (const g of intervals) {
    if (g.startMs >= to) break;
    if (g.endMs <= from) continue;
    ms += Math.min(to, g.endMs) - Math.max(from, g.startMs);
  }
  return ms;
}

/** The longest gap between schedule-loop iterations that overlaps [from, to] (ticks ascending). */
function longestStallMs(ticks: readonly number[], from: number, to: number): number {
  let lo = 0;
  let hi = ticks.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ticks[mid]! < from) lo = mid + 1;
    else hi = mid;
  }
  let longest = 0;
  for (let i = Math.max(1, lo); i < ticks.length && ticks[i - 1]! < to; i++) {
    longest = Math.max(longest, ticks[i]! - ticks[i - 1]!);
  }
  return longest;
}

function classifyTail(
  samples: readonly TailSample[],
  gcs: { startMs: number; endMs: number }[],
  ticks: readonly number[],
): TailBreakdown {
  gcs.sort((a, b) => a.startMs - b.startMs);
  const totals = samples.map((x) => x.durableMs - x.arrivedMs);
  const thresholdMs = percentile(totals, 0.99);
  const zero = (): Record<Cause, number> => ({
    gc: 0,
    'anchor fsync ahead': 0,
    'commitqc fsync ahead': 0,
    'lane busy': 0,
    stall: 0,
    fsync: 0,
  });
  const out: TailBreakdown = {
    all: samples.length,
    tail: 0,
    thresholdMs,
    flags: Object.fromEntries(CAUSES.map((c) => [c, [0, 0]])) as unknown as Record<Cause, [number, number]>,
    primary: zero(),
    tailBeforeMs: [],
    tailFsyncMs: [],
    tailAfterMs: [],
    tailGcMs: [],
    tailInFlight: [],
  };
  for (const x of samples) {
    const total = x.durableMs - x.arrivedMs;
    const inTail = total >= thresholdMs;
    const gcMs = overlapMs(gcs, x.arrivedMs, x.durableMs);
    const stallMs = longestStallMs(ticks, x.arrivedMs, x.durableMs);
    const flags: Record<Cause, boolean> = {
      gc: gcMs >= 0.5,
      'anchor fsync ahead': x.ev.anchorAhead > 0,
      'commitqc fsync ahead': x.ev.commitQCAhead > 0,
      'lane busy': x.laneBusy,
      stall: stallMs >= STALL_MS,
      fsync: true,
    };
    for (const c of CAUSES) {
      if (!flags[c]) continue;
      out.flags[c][1]++;
      if (inTail) out.flags[c][0]++;
    }
    if (!inTail) continue;
    out.tail++;
    out.primary[CAUSES.find((c) => flags[c])!]++;
    out.tailBeforeMs.push(x.ev.issuedMs - x.arrivedMs);
    out.tailFsyncMs.push(x.ev.completedMs - x.ev.issuedMs);
    out.tailAfterMs.push(x.durableMs - x.ev.completedMs);
    out.tailGcMs.push(gcMs);
    out.tailInFlight.push(x.ev.inFlightAtIssue);
  }
  return out;
}

/** The tail table: per side, the rounds' breakdowns summed (counts) or pooled (times). */
function printTail(tails: Record<string, TailBreakdown[]>, sides: readonly Side[], rounds: number): void {
  const fmt = (x: number) => x.toFixed(3);
  const rows: string[][] = [];
  for (const side of sides) {
    const list = tails[side] ?? [];
    if (list.length === 0) continue;
    const sum = (pick: (t: TailBreakdown) => number) => list.reduce((n, t) => n + pick(t), 0);
    const pool = (pick: (t: TailBreakdown) => number[]) => list.flatMap(pick);
    const tail = sum((t) => t.tail);
    const all = sum((t) => t.all);
    const share = (c: Cause) =>
      `${((sum((t) => t.flags[c][0]) / Math.max(1, tail)) * 100).toFixed(0)}%/` +
      `${((sum((t) => t.flags[c][1]) / Math.max(1, all)) * 100).toFixed(0)}%`;
    rows.push([
      side,
      `${tail}/${all}`,
      fmt(
        percentile(
          list.map((t) => t.thresholdMs),
          0.5,
        ),
      ),
      fmt(
        percentile(
          pool((t) => t.tailBeforeMs),
          0.5,
        ),
      ),
      fmt(
        percentile(
          pool((t) => t.tailFsyncMs),
          0.5,
        ),
      ),
      fmt(
        percentile(
          pool((t) => t.tailAfterMs),
          0.5,
        ),
      ),
      fmt(
        percentile(
          pool((t) => t.tailGcMs),
          0.5,
        ),
      ),
      percentile(
        pool((t) => t.tailInFlight),
        0.5,
      ).toFixed(0),
      share('gc'),
      share('anchor fsync ahead'),
      share('commitqc fsync ahead'),
      share('lane busy'),
      share('stall'),
      CAUSES.map((c) => `${c} ${sum((t) => t.primary[c])}`).join(', '),
    ]);
  }
  console.log(
    `slowest 1 % of each round's blocks (${rounds} rounds; "x%/y%": share of the tail / of all blocks with the flag; ` +
      `primary = first flag that applies, in the order gc, anchor, commitqc, lane busy, stall ≥ ${STALL_MS} ms, else the fsync itself)`,
  );
  printTable(
    [
      'side',
      'tail/all',
      'p99 ms',
      'tail before',
      'tail fsync',
      'tail after',
      'tail gc ms',
      'tail in flight',
      'gc',
      'anchor ahead',
      'commitqc ahead',
      'lane busy',
      'stall',
      'primary cause (count)',
    ],
    rows,
  );
}

export async function run(args: string[]): Promise<void> {
  if (rerunWithThreadPool(64)) return;
  const arg = (name: string, dflt: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : dflt;
  };
  const rounds = arg('--rounds', 3);
  const durationMs = arg('--ms', 3000);
  const trace = new FsTrace();
  trace.install();
  const root = mkdtempSync(join(tmpdir(), 'cairn-vote-trace-'));
  // --sides cairn,cairn-no-qc,raw: which sides run (default cairn,raw); the order rotates per round.
  const sidesArg = args.indexOf('--sides');
  const sides = (sidesArg >= 0 ? args[sidesArg + 1]!.split(',') : ['cairn', 'raw']) as Side[];
  const splits: Record<string, Split[]> = Object.fromEntries(sides.map((x) => [x, []]));
  const tails: Record<string, TailBreakdown[]> = Object.fromEntries(sides.map((x) => [x, []]));
  const otherSyncs: Record<string, number[]> = Object.fromEntries(sides.map((x) => [x, []]));
  /** "<side> <file kind>" → every fdatasync's issue → completion time (all rounds). */
  const fsyncByKind = new Map<string, number[]>();
  try {
    for (let r = 0; r < rounds; r++) {
      const both = sides.map((_, i) => sides[(r + i) % sides.length]!);
      // --only <side>: one side (e.g. under --cpu-prof).
      const order = both.filter((side) => !args.includes('--only') || args.includes(side));
      for (const side of order) {
        const w = prepare(MAIN, durationMs, false);
        const laneIds = w.f.lanes.map(String);
        trace.laneOfPath = !side.startsWith('raw')
          ? (path) => {
              const lane = laneIds.findIndex((id) => path.includes(id));
              return lane >= 0 ? lane : otherFileKind(path);
            }
          : (path) => {
              const m = /lane-(\d+)\.raw$/.exec(path);
              return m ? Number(m[1]) : otherFileKind(path);
            };
        trace.events.length = 0;
        trace.lastLaneSync.clear();
        trace.prevLaneSync.clear();
        const split = emptySplit();
        const samples: TailSample[] = [];
        const ticks: number[] = [];
        const gcs: { startMs: number; endMs: number }[] = [];
        const gcObserver = new PerformanceObserver((list) => {
          for (const e of list.getEntries())
            gcs.push({ startMs: e.startTime, endMs: e.startTime + e.duration });
        });
        gcObserver.observe({ entryTypes: ['gc'] });
        const onSample = (lane: number, arrivedMs: number, durableMs: number) => {
          trace.on = true;
          const ev = trace.lastLaneSync.get(lane);
          if (ev === undefined || ev.completedMs > durableMs) return;
          const prevEv = trace.prevLaneSync.get(lane);
          samples.push({
            arrivedMs,
            durableMs,
            ev,
            laneBusy: prevEv !== undefined && prevEv !== ev && prevEv.completedMs > arrivedMs,
          });
          split.totalMs.push(durableMs - arrivedMs);
          split.beforeMs.push(ev.issuedMs - arrivedMs);
          const written = trace.lastWriteMs.get(lane);
          if (written !== undefined && written <= ev.issuedMs && written >= arrivedMs) {
            split.arrivalToWriteMs.push(written - arrivedMs);
            const prev = trace.prevLaneSync.get(lane);
            if (prev !== undefined && prev.completedMs > arrivedMs) split.laneBusyAtArrival++;
            else split.idleArrivalToWriteMs.push(written - arrivedMs);
            split.writeToIssueMs.push(ev.issuedMs - written);
          }
          split.fsyncMs.push(ev.completedMs - ev.issuedMs);
          (ev.otherOverlaps > 0 ? split.fsyncOverlappedMs : split.fsyncAloneMs).push(
            ev.completedMs - ev.issuedMs,
          );
          split.afterMs.push(durableMs - ev.completedMs);
          split.inFlight.push(ev.inFlightAtIssue);
          split.otherOverlaps.push(ev.otherOverlaps);
        };
        await runSchedule(root, side, MAIN, w, durationMs, false, onSample, (now) => ticks.push(now));
        trace.on = false;
        for (const e of gcObserver.takeRecords()) {
          gcs.push({ startMs: e.startTime, endMs: e.startTime + e.duration });
        }
        gcObserver.disconnect();
        tails[side]!.push(classifyTail(samples, gcs, ticks));
        splits[side]!.push(split);
        otherSyncs[side]!.push(trace.events.filter((e) => e.lane < 0).length);
        for (const e of trace.events) {
          const kind =
            e.lane === ANCHOR_FILE
              ? 'anchor'
              : e.lane === COMMITQC_FILE
                ? 'commitqc'
                : e.lane >= 0
                  ? 'lane'
                  : 'other';
          const key = `${side} ${kind}`;
          if (!fsyncByKind.has(key)) fsyncByKind.set(key, []);
          fsyncByKind.get(key)!.push(e.completedMs - e.issuedMs);
        }
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  const med = (xs: number[]) => (xs.length === 0 ? Number.NaN : percentile(xs, 0.5));
  const fmt = (x: number) => x.toFixed(3);
  const rows: string[][] = [];
  for (const side of sides) {
    for (const [i, s] of splits[side]!.entries()) {
      rows.push([
        `${side} ${i + 1}`,
        String(s.totalMs.length),
        fmt(med(s.totalMs)),
        fmt(med(s.beforeMs)),
        fmt(med(s.arrivalToWriteMs)),
        fmt(med(s.idleArrivalToWriteMs)),
        (s.laneBusyAtArrival / Math.max(1, s.arrivalToWriteMs.length)).toFixed(3),
        fmt(med(s.writeToIssueMs)),
        fmt(med(s.fsyncMs)),
        `${fmt(med(s.fsyncAloneMs))}/${fmt(med(s.fsyncOverlappedMs))}`,
        fmt(med(s.afterMs)),
        fmt(percentile(s.afterMs, 0.9)),
        med(s.inFlight).toFixed(0),
        (s.otherOverlaps.filter((x) => x > 0).length / Math.max(1, s.otherOverlaps.length)).toFixed(3),
        String(otherSyncs[side]![i]),
      ]);
    }
  }
  console.log(
    `vote path, ${MAIN.lanes} lanes × ${MAIN.blockBytes / 1024} KiB × ${MAIN.ratePerLane}/s, ${rounds} rounds of ${durationMs} ms per side (medians per block)`,
  );
  printTable(
    [
      'run',
      'blocks',
      'total',
      'before',
      'arrival→write',
      'idle lane: arrival→write',
      'lane busy at arrival',
      'write→issue',
      'fsync',
      'fsync alone/overlapped',
      'after',
      'after p90',
      'in flight',
      'share w/ other fsync',
      'other fsyncs',
    ],
    rows,
  );
  console.log(
    `fdatasync issue → completion by file, all rounds (p50 / p99 ms, count): ${[...fsyncByKind]
      .map(([k, xs]) => `${k} ${fmt(percentile(xs, 0.5))} / ${fmt(percentile(xs, 0.99))} (${xs.length})`)
      .join('; ')}`,
  );
  printTail(tails, sides, rounds);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run(process.argv.slice(2));
}
