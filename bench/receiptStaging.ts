/**
 * Archive writer staging microbenchmark (issue #11): what one Parquet window costs the archive
 * writer thread, per stage layout (src/receipts/stageLayouts.ts), in one process. The window is the
 * receipts bench's dataset (bench/receipts.ts makeDataset: 25 logs per block, 10,000 blocks per
 * window), encoded as receipt-WAL entries, then for each layout and round: a fresh
 * ParquetWindowWriter (the store's writer options) stages the window in batches of 256 blocks, as
 * the store feeds acknowledged write groups, and writes its two files (the sorted COPYs).
 * Reported per window, median of the rounds: `decode` (walking the entries alone: decodeBlockEntry
 * for `rows`, walkBlockEntry with an empty visitor for `chunks`), `stage` (decode + appends, wall
 * and CPU), `copy` (the window's write). The layouts are interleaved round by round, and the files
 * of both are compared byte for byte (they must be the same).
 *
 *   npm run bench -- receiptStaging            1 window of 10,000 blocks, 5 rounds
 *   npm run bench -- receiptStaging --quick    1 window of 2,500 blocks, 3 rounds
 *   ... --only chunks                          one layout (to profile it: node --cpu-prof ...)
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { decodeBlockEntry, encodeBlockEntry, normalizeBlock, walkBlockEntry } from '../src/receipts/codec.ts';
import { ParquetWindowWriter } from '../src/receipts/parquetWindowWriter.ts';
import type { StageLayoutName } from '../src/receipts/stageLayouts.ts';
import { makeDataset } from './receipts.ts';
import { fmt, median, nowMs, printTable, round3 } from './support/stats.ts';

const BATCH_BLOCKS = 256;
const ALL_LAYOUTS: readonly StageLayoutName[] = ['rows', 'chunks'];

interface Sample {
  decodeMs: number;
  stageMs: number;
  stageCpuMs: number;
  copyMs: number;
  copyCpuMs: number;
  files: string;
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
}

function decode(layout: StageLayoutName, entries: readonly Uint8Array[]): number {
  const t = nowMs();
  if (layout === 'rows') for (const e of entries) decodeBlockEntry(e, true);
  else {
    const visitor = { receipt: () => {}, log: () => {} };
    for (const e of entries) walkBlockEntry(e, visitor);
  }
  return nowMs() - t;
}

async function oneWindow(
  layout: StageLayoutName,
  entries: readonly Uint8Array[],
  dir: string,
): Promise<Sample> {
  const decodeMs = decode(layout, entries);
  const w = await ParquetWindowWriter.open({
    threads: 2,
    memoryLimit: '512MB',
    rowGroupRows: 6_144,
    logOrder: 'address',
    stageLayout: layout,
  });
  try {
    const t0 = nowMs();
    const cpu = process.cpuUsage();
    for (let first = 0; first < entries.length; first += BATCH_BLOCKS) {
      await w.stage(first, entries.slice(first, first + BATCH_BLOCKS));
    }
    const stageMs = nowMs() - t0;
    const stageCpuMs = cpuMs(cpu);
    const receiptsPath = join(dir, `${layout}.receipts.parquet`);
    const logsPath = join(dir, `${layout}.logs.parquet`);
    const t1 = nowMs();
    const cpu1 = process.cpuUsage();
    await w.write(0, entries.length - 1, undefined, receiptsPath, logsPath);
    const copyMs = nowMs() - t1;
    const copyCpuMs = cpuMs(cpu1);
    const files = createHash('sha256')
      .update(readFileSync(receiptsPath))
      .update(readFileSync(logsPath))
      .digest('hex');
    return { decodeMs, stageMs, stageCpuMs, copyMs, copyCpuMs, files };
  } finally {
    w.close();
  }
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const blocks = quick ? 2_500 : 10_000;
  const rounds = quick ? 3 : 5;
  const only = args.includes('--only') ? (args[args.indexOf('--only') + 1] as StageLayoutName) : undefined;
  const LAYOUTS = only === undefined ? ALL_LAYOUTS : [only];
  const d = makeDataset(blocks, 2026);
  const entries = Array.from(
    { length: blocks },
    (_, n) => encodeBlockEntry(normalizeBlock(d.block(n))).payload,
  );
  let bytes = 0;
  for (const e of entries) bytes += e.length;
  console.log(
    `window: ${fmt(blocks)} blocks, ${fmt(blocks * 25)} logs, ${fmt(bytes / 2 ** 20, 1)} MiB of entries`,
  );
  const dir = join(process.cwd(), '.bench-tmp', `receipt-staging-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const samples: Record<StageLayoutName, Sample[]> = { rows: [], chunks: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      // Alternate which layout goes first, so drift on a shared machine lands on both.
      const order = r % 2 === 0 ? LAYOUTS : [...LAYOUTS].reverse();
      for (const layout of order) samples[layout].push(await oneWindow(layout, entries, dir));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const med = (layout: StageLayoutName, k: Exclude<keyof Sample, 'files'>): number =>
    round3(median(samples[layout].map((s) => s[k])));
  const allFiles = new Set([...samples.rows, ...samples.chunks].map((s) => s.files));
  const identicalFiles = allFiles.size === 1;
  printTable(
    ['layout', 'decode ms', 'stage ms', 'stage cpu ms', 'copy ms', 'copy cpu ms', 'stage+copy ms', 'cpu ms'],
    LAYOUTS.map((l) => [
      l,
      fmt(med(l, 'decodeMs'), 1),
      fmt(med(l, 'stageMs'), 1),
      fmt(med(l, 'stageCpuMs'), 1),
      fmt(med(l, 'copyMs'), 1),
      fmt(med(l, 'copyCpuMs'), 1),
      fmt(med(l, 'stageMs') + med(l, 'copyMs'), 1),
      fmt(med(l, 'stageCpuMs') + med(l, 'copyCpuMs'), 1),
    ]),
  );
  console.log(
    `per window of ${fmt(blocks)} blocks, median of ${rounds} rounds; files identical: ${identicalFiles}`,
  );
  if (!identicalFiles) process.exitCode = 1;
  const figures = (l: StageLayoutName) => ({
    decodeMsPerWindow: med(l, 'decodeMs'),
    stageMsPerWindow: med(l, 'stageMs'),
    stageCpuMsPerWindow: med(l, 'stageCpuMs'),
    copyMsPerWindow: med(l, 'copyMs'),
    copyCpuMsPerWindow: med(l, 'copyCpuMs'),
  });
  console.log(
    JSON.stringify({
      bench: 'receiptStaging',
      metrics: { blocks, rounds, identicalFiles, layout: 'chunks', ...figures('chunks') },
      baseline: { rows: figures('rows') },
      ratios: {
        stageVsRows: round3(med('chunks', 'stageMs') / med('rows', 'stageMs')),
        copyVsRows: round3(med('chunks', 'copyMs') / med('rows', 'copyMs')),
        cpuVsRows: round3(
          (med('chunks', 'stageCpuMs') + med('chunks', 'copyCpuMs')) /
            (med('rows', 'stageCpuMs') + med('rows', 'copyCpuMs')),
        ),
        stagePlusCopyVsRows: round3(
          (med('chunks', 'stageMs') + med('chunks', 'copyMs')) /
            (med('rows', 'stageMs') + med('rows', 'copyMs')),
        ),
      },
    }),
  );
}
