/**
 * Two checkouts of Cairn against each other and the raw lanes, in ONE process and the same time
 * window (the consensus bench's steady 40 × 4 KiB run, no burst), for a change whose effect is
 * smaller than the drift between two bench runs on a shared machine:
 *   git archive <commit> | tar -x -C /tmp/before && ln -s "$PWD/node_modules" /tmp/before/
 *   node --import tsx bench/abConsensus.ts /tmp/before "$PWD" [rounds=6] [--after-side cairn-no-qc]
 * Each round runs before, after and raw (the order rotates) and prints their exact p50s and p99s
 * with the load average; the last line gives the medians of the per-round ratios, p50 and p99.
 * A round's p99 comes from ~5,000 votes (2.5 s × 40 lanes × 50/s): the top 50 of them, so a single
 * stall can move it; take many rounds before reading the p99 medians. Not a bench with bars: a
 * decision aid.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { rerunWithThreadPool } from './support/threadPool.ts';

type ConsensusBench = typeof import('./consensus.ts');

export async function main(args: string[]): Promise<void> {
  if (rerunWithThreadPool(64)) return;
  // --after-side cairn-no-qc|raw+qc: the "after" checkout runs that side instead of 'cairn' (e.g.
  // both checkouts the same, to measure what the CommitQC / AppQC flow costs the lanes, or what
  // the raw lanes pay for the same CommitQC and anchor fsyncs).
  const sideFlag = args.indexOf('--after-side');
  const afterSide = (sideFlag >= 0 ? args[sideFlag + 1] : 'cairn') as 'cairn' | 'cairn-no-qc' | 'raw+qc';
  const [beforeDir, afterDir, roundsArg] =
    sideFlag >= 0 ? args.filter((_, i) => i < sideFlag || i > sideFlag + 1) : args;
  if (!beforeDir || !afterDir) {
    console.error('usage: bench/abConsensus.ts <before checkout> <after checkout> [rounds]');
    process.exitCode = 2;
    return;
  }
  const before = (await import(join(resolve(beforeDir), 'bench/consensus.ts'))) as ConsensusBench;
  const after = (await import(join(resolve(afterDir), 'bench/consensus.ts'))) as ConsensusBench;
  const rounds = Number(roundsArg ?? 6);
  const root = mkdtempSync(join(tmpdir(), 'cairn-ab-consensus-'));
  const kinds = ['before', 'after', 'raw'] as const;
  type Kind = (typeof kinds)[number];
  const p50: Record<Kind, number[]> = { before: [], after: [], raw: [] };
  const p99: Record<Kind, number[]> = { before: [], after: [], raw: [] };
  /** Heap bytes allocated per block and GC pause (ms) in the timed window: stable under load. */
  const alloc: Record<Kind, number[]> = { before: [], after: [], raw: [] };
  const gcPause: Record<Kind, number[]> = { before: [], after: [], raw: [] };
  const loads: number[] = [];
  const fmt = (x: number) => x.toFixed(3);
  try {
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < kinds.length; i++) {
        const kind = kinds[(r + i) % kinds.length]!;
        const m = kind === 'before' ? before : after;
        const w = m.prepare(m.MAIN, 2500, false);
        const side = kind === 'raw' ? 'raw' : kind === 'after' ? afterSide : 'cairn';
        const out = await m.runSchedule(root, side, m.MAIN, w, 2500, false);
        p50[kind].push(out.p50Ms);
        p99[kind].push(out.p99Ms);
        alloc[kind].push(out.allocBytesPerBlock);
        gcPause[kind].push(out.gcPauseMs);
      }
      // The 1-minute load average at the end of the round: a ratio taken under a load spike is
      // worth less, and the reader should see it next to the figures.
      const load = loadavg()[0]!;
      loads.push(load);
      const at = (x: Record<Kind, number[]>) => [x.before[r]!, x.after[r]!, x.raw[r]!] as const;
      const [b50, a50, raw50] = at(p50);
      const [b99, a99, raw99] = at(p99);
      console.log(
        `round ${r + 1} (load ${load.toFixed(2)}): ` +
          `p50 before ${fmt(b50)} after ${fmt(a50)} raw ${fmt(raw50)} ms ` +
          `(before/raw ${fmt(b50 / raw50)} after/raw ${fmt(a50 / raw50)} after/before ${fmt(a50 / b50)}); ` +
          `p99 before ${fmt(b99)} after ${fmt(a99)} raw ${fmt(raw99)} ms ` +
          `(before/raw ${fmt(b99 / raw99)} after/raw ${fmt(a99 / raw99)} after/before ${fmt(a99 / b99)}); ` +
          `alloc B/block before ${alloc.before[r]!.toFixed(0)} after ${alloc.after[r]!.toFixed(0)}`,
      );
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;
  const ratio = (x: number[], y: number[]) => med(x.map((v, i) => v / y[i]!));
  const line = (name: string, q: Record<Kind, number[]>) =>
    `${name} before/raw ${fmt(ratio(q.before, q.raw))}, after/raw ${fmt(ratio(q.after, q.raw))}, ` +
    `after/before ${fmt(ratio(q.after, q.before))}`;
  console.log(
    `medians of per-round ratios (${rounds} rounds, load ${fmt(Math.min(...loads))}–${fmt(Math.max(...loads))}): ` +
      `${line('p50', p50)}; ${line('p99', p99)}`,
  );
  console.log(
    `medians: alloc B/block before ${med(alloc.before).toFixed(0)} after ${med(alloc.after).toFixed(0)} raw ${med(alloc.raw).toFixed(0)}; ` +
      `GC pause ms in the 2.5 s window before ${fmt(med(gcPause.before))} after ${fmt(med(gcPause.after))} raw ${fmt(med(gcPause.raw))}`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main(process.argv.slice(2));
}
