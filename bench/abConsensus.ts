/**
 * Two checkouts of Cairn against each other and the raw lanes, in ONE process and the same time
 * window (the consensus bench's steady 40 × 4 KiB run, no burst), for a change whose effect is
 * smaller than the drift between two bench runs on a shared machine:
 *   git archive <commit> | tar -x -C /tmp/before && ln -s "$PWD/node_modules" /tmp/before/
 *   node --import tsx bench/abConsensus.ts /tmp/before "$PWD" [rounds=6]
 * Each round runs before, after and raw (the order rotates) and prints their exact p50s; the last
 * line gives the medians of the per-round ratios. Not a bench with bars: a decision aid.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { rerunWithThreadPool } from './support/threadPool.ts';

type ConsensusBench = typeof import('./consensus.ts');

export async function main(args: string[]): Promise<void> {
  if (rerunWithThreadPool(64)) return;
  const [beforeDir, afterDir, roundsArg] = args;
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
  const p50: Record<(typeof kinds)[number], number[]> = { before: [], after: [], raw: [] };
  const fmt = (x: number) => x.toFixed(3);
  try {
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < kinds.length; i++) {
        const kind = kinds[(r + i) % kinds.length]!;
        const m = kind === 'before' ? before : after;
        const w = m.prepare(m.MAIN, 2500, false);
        const out = await m.runSchedule(root, kind === 'raw' ? 'raw' : 'cairn', m.MAIN, w, 2500, false);
        p50[kind].push(out.p50Ms);
      }
      const [b, a, raw] = [p50.before[r]!, p50.after[r]!, p50.raw[r]!];
      console.log(
        `round ${r + 1}: p50 before ${fmt(b)} after ${fmt(a)} raw ${fmt(raw)} ms; ` +
          `before/raw ${fmt(b / raw)} after/raw ${fmt(a / raw)} after/before ${fmt(a / b)}`,
      );
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;
  const ratio = (x: number[], y: number[]) => med(x.map((v, i) => v / y[i]!));
  console.log(
    `medians of per-round ratios (${rounds} rounds): before/raw ${fmt(ratio(p50.before, p50.raw))}, ` +
      `after/raw ${fmt(ratio(p50.after, p50.raw))}, after/before ${fmt(ratio(p50.after, p50.before))}`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main(process.argv.slice(2));
}
