/**
 * Storage layouts for lane blocks, on the raw file system only (no Cairn code):
 * `npm run bench -- laneLayouts [--quick]`.
 *
 * The question it answers: on this disk, can ANY implementation meet issue #3's vote-latency bars
 * (p50 ≤ 2× and p99 ≤ 3× one fdatasync; other lanes' p99 during a 1,000-block burst ≤ 3×)?
 * Same arrival schedule and bytes as `bench/consensus.ts` (40 lanes × 4 KiB × 50/s), three layouts:
 *  - raw lanes: one file per lane, each lane's queued blocks written and fdatasynced together (the
 *    layout the issue specifies: one WAL per lane);
 *  - raw shared log: every lane's blocks group-committed in one file (blocks stored once);
 *  - raw shared log + lane files: the shared log for durability, plus each block copied to its lane
 *    file and the lane files fdatasynced in the background (per-lane files kept behind a journal).
 * Medians of interleaved rounds. Last line: {"bench":"laneLayouts","metrics":{...},"baseline":{...},"ratios":{...}}.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAIN, measureRawFsync, prepare, runSchedule, type Side } from './consensus.ts';
import { median, printTable, round3 } from './support/stats.ts';
import { rerunWithThreadPool } from './support/threadPool.ts';

const LAYOUTS: Side[] = ['raw', 'raw-shared-log', 'raw-shared-log+lane-files'];

export async function run(args: string[]): Promise<void> {
  if (rerunWithThreadPool(64)) return;
  const quick = args.includes('--quick');
  const rounds = quick ? 2 : 3;
  const durationMs = quick ? 2500 : 4000;
  const root = mkdtempSync(join(tmpdir(), 'cairn-bench-lane-layouts-'));
  try {
    const record = prepare(MAIN, 100, false).encoded[0]![0]!;
    const fsyncP50: number[] = [];
    const fsyncP99: number[] = [];
    const results = new Map<Side, { p50: number[]; p99: number[]; burst: number[] }>(
      LAYOUTS.map((s) => [s, { p50: [], p99: [], burst: [] }]),
    );
    for (let r = 0; r < rounds; r++) {
      const fs = measureRawFsync(root, record, 500).sort((a, b) => a - b);
      fsyncP50.push(fs[Math.floor(fs.length * 0.5)]!);
      fsyncP99.push(fs[Math.floor(fs.length * 0.99)]!);
      for (let i = 0; i < LAYOUTS.length; i++) {
        const side = LAYOUTS[(r + i) % LAYOUTS.length]!;
        const steady = await runSchedule(
          root,
          side,
          MAIN,
          prepare(MAIN, durationMs, false),
          durationMs,
          false,
        );
        const burst = await runSchedule(root, side, MAIN, prepare(MAIN, durationMs, true), durationMs, true);
        const out = results.get(side)!;
        out.p50.push(steady.p50Ms);
        out.p99.push(steady.p99Ms);
        out.burst.push(burst.burst!.p99Ms);
      }
    }
    const f50 = median(fsyncP50);
    const f99 = median(fsyncP99);
    console.log(
      `lane block layouts on the raw file system (${rounds} rounds of ${durationMs} ms, medians), 40 lanes × 4 KiB × 50/s; ` +
        `fdatasync p50 ${f50.toFixed(3)} ms, p99 ${f99.toFixed(3)} ms`,
    );
    const rows: string[][] = [];
    const metrics: Record<string, number> = {};
    const ratios: Record<string, number> = {};
    for (const side of LAYOUTS) {
      const m = results.get(side)!;
      const p50 = median(m.p50);
      const p99 = median(m.p99);
      const burst = median(m.burst);
      rows.push([
        side,
        p50.toFixed(3),
        p99.toFixed(3),
        burst.toFixed(3),
        (p50 / f50).toFixed(2),
        (p99 / f99).toFixed(2),
        (burst / f99).toFixed(2),
      ]);
      const key = side.replace(/[^a-z]+(.)/g, (_, c: string) => c.toUpperCase());
      metrics[`${key}P50Ms`] = round3(p50);
      metrics[`${key}P99Ms`] = round3(p99);
      metrics[`${key}BurstOthersP99Ms`] = round3(burst);
      ratios[`${key}P50VsFsyncP50`] = round3(p50 / f50);
      ratios[`${key}P99VsFsyncP99`] = round3(p99 / f99);
      ratios[`${key}BurstP99VsFsyncP99`] = round3(burst / f99);
    }
    printTable(
      ['layout', 'p50 ms', 'p99 ms', 'burst others p99', 'p50/fsync', 'p99/fsync', 'burst/fsync p99'],
      rows,
    );
    console.log('bars (issue #3): p50/fsync ≤ 2, p99/fsync ≤ 3, burst/fsync p99 ≤ 3');
    console.log(
      JSON.stringify({
        bench: 'laneLayouts',
        metrics,
        baseline: { fsyncP50Ms: round3(f50), fsyncP99Ms: round3(f99) },
        ratios,
      }),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
