/**
 * Consensus persistence benchmark: `npm run bench -- consensus [--quick]`.
 *
 * For 16 and 40 lanes with 4 KiB and 64 KiB blocks, lanes produce blocks at a steady rate while
 * CommitQCs and AppQCs advance (so the anchor moves and logs get pruned, as in production). It
 * measures the latency from a block's arrival (`pushBlock`) to voteable (durable), p50 / p99, and the
 * blocks/s made durable. In the same run it measures the raw latency of write + fdatasync of a 4 KiB
 * block on the same disk (the baseline) and, with 40 lanes × 4 KiB, injects a burst of 1,000 queued
 * blocks on one lane and measures the latency of the other lanes' blocks during the burst.
 *
 * Last line: {"bench":"consensus","metrics":{...},"baseline":{...},"ratios":{...}}.
 */
process.env.UV_THREADPOOL_SIZE ??= '64';

import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LatencyHistogram } from '../src/consensus/metrics.ts';
import { ConsensusPersistence } from '../src/consensus/persistence.ts';
import { ConsensusFixture } from '../src/consensus/testkit.ts';
import type { LaneId, SignedLaneProposal } from '../src/consensus/types.ts';
import { RealFileSystem } from '../src/io/realFileSystem.ts';

interface Config {
  lanes: number;
  blockBytes: number;
  /** Blocks per second per lane. */
  ratePerLane: number;
}

interface RunResult {
  p50Ms: number;
  p99Ms: number;
  blocksPerSec: number;
  blocks: number;
  fsyncs: number;
  otherLanesDuringBurst?: { p50Ms: number; p99Ms: number; count: number; burstDrainMs: number };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function measureRawFsync(dir: string, samples: number): LatencyHistogram {
  const h = new LatencyHistogram();
  const file = join(dir, 'raw-fsync.bin');
  const fd = openSync(file, 'w');
  const block = new Uint8Array(4096).fill(7);
  try {
    for (let i = 0; i < samples; i++) {
      const t = performance.now();
      writeSync(fd, block, 0, block.byteLength, i * block.byteLength);
      fdatasyncSync(fd);
      h.record(performance.now() - t);
    }
  } finally {
    closeSync(fd);
  }
  return h;
}

/** Pre-generates `count` blocks per lane (payload generation must not distort the timing). */
function prepare(f: ConsensusFixture, perLane: number): Map<LaneId, SignedLaneProposal[]> {
  const out = new Map<LaneId, SignedLaneProposal[]>();
  for (const lane of f.lanes)
    out.set(
      lane,
      Array.from({ length: perLane }, () => f.produceBlock(lane)),
    );
  return out;
}

async function runConfig(
  root: string,
  config: Config,
  durationMs: number,
  burst: boolean,
): Promise<RunResult> {
  const dir = mkdtempSync(join(root, `cp-${config.lanes}x${config.blockBytes}-`));
  const f = new ConsensusFixture({
    lanes: config.lanes,
    seed: 42,
    payloadBytes: config.blockBytes,
    sign: false,
  });
  const burstBlocks = burst ? 1000 : 0;
  const perLane = Math.ceil((config.ratePerLane * durationMs) / 1000) + 2;
  const blocks = prepare(f, perLane);
  const burstLane = f.laneAt(0);
  const burstList = burst ? Array.from({ length: burstBlocks }, () => f.produceBlock(burstLane)) : [];
  const cp = await ConsensusPersistence.open({
    fs: new RealFileSystem(),
    dir,
    committee: f.committee,
    verifySignatures: false,
    blocksPerLane: 1_000_000,
    commitQCWindow: 100_000,
    ...(process.env.CAIRN_BENCH_SEGMENT_BYTES
      ? { segmentBytes: Number(process.env.CAIRN_BENCH_SEGMENT_BYTES) }
      : {}),
    ...(process.env.CAIRN_BENCH_PREALLOCATE === '0' ? { preallocate: false } : {}),
  });
  const voteLatency = new LatencyHistogram();
  const duringBurst = new LatencyHistogram();
  const sent = new Map<LaneId, number>(f.lanes.map((l) => [l, 0]));
  let burstActive = false;
  let burstDrainMs = 0;
  const pending: Promise<void>[] = [];
  const push = (p: SignedLaneProposal) => {
    const t = performance.now();
    cp.pushBlock(p);
    const lane = p.block.header.lane;
    pending.push(
      cp.waitVoteable(lane, p.block.header.blockNumber).then(() => {
        const ms = performance.now() - t;
        voteLatency.record(ms);
        if (burstActive && lane !== burstLane) duringBurst.record(ms);
      }),
    );
  };
  const started = performance.now();
  const intervalMs = 1000 / config.ratePerLane;
  // Lanes are spread evenly over the interval so arrivals are steady, not synchronized.
  const offsets = f.lanes.map((_, i) => (i * intervalMs) / f.lanes.length);
  let road = 0;
  let nextQCAt = started + 100;
  let burstDone: Promise<void> | undefined;
  while (performance.now() - started < durationMs) {
    const now = performance.now();
    f.lanes.forEach((lane, i) => {
      const due = Math.floor((now - started - offsets[i]!) / intervalMs) + 1;
      const list = blocks.get(lane)!;
      while ((sent.get(lane) ?? 0) < Math.min(due, list.length)) {
        const k = sent.get(lane)!;
        push(list[k]!);
        sent.set(lane, k + 1);
      }
    });
    if (burst && !burstDone && now - started > durationMs / 4) {
      // 1,000 blocks queued at once on one lane (a lane catching up): the rest of its steady
      // stream plus 1,000 more, all pushed now; the lane gets nothing further afterwards.
      const lane = burstLane;
      const chain = [...blocks.get(lane)!.slice(sent.get(lane)!), ...burstList];
      blocks.set(lane, []);
      burstActive = true;
      const t = performance.now();
      for (const p of chain) cp.pushBlock(p);
      const last = chain[chain.length - 1]!.block.header.blockNumber;
      burstDone = cp.waitVoteable(lane, last).then(() => {
        burstActive = false;
        burstDrainMs = performance.now() - t;
      });
    }
    if (now >= nextQCAt) {
      nextQCAt += 100;
      // Finalize only blocks that became voteable (a real CommitQC covers certified blocks).
      const qc = f.nextCommitQC({ upTo: (lane) => cp.voteableNext(lane) });
      cp.pushCommitQC(qc);
      road = qc.roadIndex;
      if (road >= 3) {
        const a = f.commitQC(road - 2);
        cp.pushAppQC(f.appQC(a), a);
      }
    }
    await sleep(1);
  }
  await Promise.all(pending);
  await burstDone;
  const elapsedMs = performance.now() - started;
  const result: RunResult = {
    p50Ms: voteLatency.quantileMs(0.5),
    p99Ms: voteLatency.quantileMs(0.99),
    blocksPerSec: (cp.metrics.blocksPersisted / elapsedMs) * 1000,
    blocks: cp.metrics.blocksPersisted,
    fsyncs: cp.metrics.fsyncs,
  };
  if (burst) {
    result.otherLanesDuringBurst = {
      p50Ms: duringBurst.quantileMs(0.5),
      p99Ms: duringBurst.quantileMs(0.99),
      count: duringBurst.count,
      burstDrainMs,
    };
  }
  await cp.close();
  rmSync(dir, { recursive: true, force: true });
  return result;
}

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const durationMs = quick ? 3000 : 10_000;
  const root = mkdtempSync(join(tmpdir(), 'cairn-bench-consensus-'));
  try {
    const rawBefore = measureRawFsync(root, quick ? 200 : 1000);
    const configs: Config[] = [
      { lanes: 16, blockBytes: 4096, ratePerLane: 50 },
      { lanes: 16, blockBytes: 65536, ratePerLane: 10 },
      { lanes: 40, blockBytes: 4096, ratePerLane: 50 },
      { lanes: 40, blockBytes: 65536, ratePerLane: 10 },
    ];
    const rows: Array<Config & RunResult> = [];
    for (const c of configs) rows.push({ ...c, ...(await runConfig(root, c, durationMs, false)) });
    const burst = await runConfig(root, { lanes: 40, blockBytes: 4096, ratePerLane: 50 }, durationMs, true);
    const rawAfter = measureRawFsync(root, quick ? 200 : 1000);
    // The baseline is measured before and after the runs; merge both so drift hits both sides alike.
    const raw = new LatencyHistogram();
    for (const h of [rawBefore, rawAfter]) {
      // Re-record quantile points: cheap and adequate for a p50/p99 baseline.
      for (let i = 1; i <= 100; i++) raw.record(h.quantileMs(i / 100));
    }
    const fsyncP50 = raw.quantileMs(0.5);
    const fsyncP99 = raw.quantileMs(0.99);

    console.log('consensus persistence: arrival → voteable (durable) latency');
    console.log(`raw write+fdatasync 4 KiB: p50 ${fsyncP50.toFixed(3)} ms, p99 ${fsyncP99.toFixed(3)} ms`);
    console.log('lanes  block     blocks/lane/s  vote p50 ms  vote p99 ms  blocks/s  fsyncs');
    for (const r of rows) {
      console.log(
        `${String(r.lanes).padStart(5)}  ${`${r.blockBytes / 1024} KiB`.padEnd(8)}  ${String(r.ratePerLane).padStart(13)}  ${r.p50Ms
          .toFixed(3)
          .padStart(
            11,
          )}  ${r.p99Ms.toFixed(3).padStart(11)}  ${r.blocksPerSec.toFixed(0).padStart(8)}  ${r.fsyncs}`,
      );
    }
    const b = burst.otherLanesDuringBurst!;
    console.log(
      `burst of 1,000 blocks on one lane (40 lanes, 4 KiB): other lanes during the burst p50 ${b.p50Ms.toFixed(3)} ms, ` +
        `p99 ${b.p99Ms.toFixed(3)} ms over ${b.count} blocks; burst drained in ${b.burstDrainMs.toFixed(1)} ms`,
    );
    const main = rows.find((r) => r.lanes === 40 && r.blockBytes === 4096)!;
    const metrics: Record<string, number> = {};
    for (const r of rows) {
      const k = `${r.lanes}x${r.blockBytes / 1024}KiB`;
      metrics[`${k}VoteP50Ms`] = r.p50Ms;
      metrics[`${k}VoteP99Ms`] = r.p99Ms;
      metrics[`${k}BlocksPerSec`] = r.blocksPerSec;
    }
    metrics.burstOtherLanesP50Ms = b.p50Ms;
    metrics.burstOtherLanesP99Ms = b.p99Ms;
    metrics.burstDrainMs = b.burstDrainMs;
    const summary = {
      bench: 'consensus',
      metrics,
      baseline: { fsyncP50Ms: fsyncP50, fsyncP99Ms: fsyncP99 },
      ratios: {
        voteP50VsFsyncP50: main.p50Ms / fsyncP50,
        voteP99VsFsyncP99: main.p99Ms / fsyncP99,
        otherLanesP99DuringBurstVsFsyncP99: b.p99Ms / fsyncP99,
      },
    };
    console.log(JSON.stringify(summary));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run(process.argv.slice(2));
}
