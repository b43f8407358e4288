/**
 * Consensus persistence benchmark: `npm run bench -- consensus [--quick]`.
 *
 * Lanes produce blocks at a steady rate (arrivals spread evenly over each lane's interval) while
 * CommitQCs and AppQCs advance every 100 ms (so the anchor moves and logs are pruned, as in
 * production). Measured: the latency from a block's arrival (`pushBlock`) to the moment the vote
 * gate opens for it (the lane's voteable cursor passes it, i.e. its fsync returned), p50 / p99.
 * A burst run queues 1,000 extra blocks on one lane at a quarter of the run and measures the other
 * lanes' latency while the burst drains.
 *
 * Baselines, measured in the same process in interleaved rounds (the order rotates each round):
 *  - raw fsync: write of one framed 4 KiB block (same bytes as a lane record) into a preallocated,
 *    fsynced file + `fdatasyncSync`, one at a time (the cost of "one fsync" on this disk);
 *  - raw lanes: the same arrival schedule and bytes, one preallocated file per lane, each lane
 *    writing its queued blocks with one writev and one fdatasync on the thread pool (Cairn's
 *    scheme with none of Cairn: what the disk gives this workload). It has no CommitQC log, no
 *    anchor writes and no pruning, which Cairn does on top.
 * Every run starts with WARMUP_MS of the same workload that is not measured, and a full garbage
 * collection of the pre-generated workload (the bench runs itself with --expose-gc), on both sides.
 * Cairn runs with `verifySignatures: false`: admission-time ed25519 verification is a CPU cost
 * before admission that does not depend on persistence; it is measured separately and printed.
 * Blocks and QCs are generated before the timed part. Medians over the rounds are reported.
 *
 * Also measured, on both sides during the timed window: heap bytes allocated per block
 * (`allocBytesPerBlock`: used-heap growth plus what each collection freed, from v8's GCProfiler)
 * and garbage-collection pause time ('gc' performance entries). And restart time with 40 lanes and
 * 4,000 blocks in the logs, open → ready: after a clean close (`cleanRestartMs`) and after a
 * `kill -9` of a child process that was writing (`crashRestartMs`, bench/support/consensusWriter.ts).
 *
 * Last line: {"bench":"consensus","metrics":{...},"baseline":{...},"ratios":{...}}.
 */

import { fork } from 'node:child_process';
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeSync,
  writevSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { GCProfiler, getHeapStatistics } from 'node:v8';
import { ConsensusPersistence } from '../src/consensus/persistence.ts';
import { encodeSignedLaneProposal } from '../src/domain/codecs.ts';
import { verifyLaneProposal } from '../src/domain/committee.ts';
import type { LaneId, SignedLaneProposal } from '../src/domain/types.ts';
import { RealFileSystem } from '../src/io/realFileSystem.ts';
import { ConsensusFixture } from '../src/testing/consensusFixture.ts';
import { runZeroFillSlice } from '../src/wal/zeroFillGate.ts';
import { fillStore, openWriterStore, writerFixture } from './support/consensusWriter.ts';
import { FRAME_HEADER_BYTES, rawFrameHeader } from './support/rawFrame.ts';
import { median, printTable, round3, verdict } from './support/stats.ts';
import { rerunWithThreadPool } from './support/threadPool.ts';

interface Config {
  lanes: number;
  blockBytes: number;
  /** Blocks per second per lane. */
  ratePerLane: number;
}

interface RunResult {
  p50Ms: number;
  p99Ms: number;
  blocks: number;
  blocksPerSec: number;
  fsyncs: number;
  /** Event-loop delay p99 during the run (what any timer or I/O callback waited). */
  loopDelayP99Ms: number;
  /** Heap bytes allocated per measured block during the timed window (GC-accounted). */
  allocBytesPerBlock: number;
  /** Total and longest garbage-collection pause during the timed window. */
  gcPauseMs: number;
  gcPauseMaxMs: number;
  burst?: { p50Ms: number; p99Ms: number; count: number; drainMs: number };
}

const BURST_BLOCKS = 1000;
/**
 * Each run starts with this much of the same workload, not measured: the JIT warms up, and each
 * side's one-time set-up of a lane (Cairn: the lane log's first segment and its spare, both
 * zero-filled on creation) is behind it, as it is for a node that has been running.
 */
const WARMUP_MS = 1000;
export const MAIN: Config = { lanes: 40, blockBytes: 4096, ratePerLane: 50 };

/** A full collection when the process runs with --expose-gc (the bench re-runs itself with it). */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A file of zeros, fsynced: the raw side's preallocated "segment". */
function preallocatedFile(file: string, bytes: number): number {
  const fd = openSync(file, 'w+');
  const zeros = new Uint8Array(1 << 20);
  for (let pos = 0; pos < bytes; pos += zeros.byteLength) writeSync(fd, zeros, 0, zeros.byteLength, pos);
  fdatasyncSync(fd);
  return fd;
}

/** Raw fsync latency: one framed block written in place + fdatasyncSync, `samples` times. */
export function measureRawFsync(dir: string, record: Uint8Array, samples: number): number[] {
  const frameBytes = FRAME_HEADER_BYTES + record.byteLength;
  const file = join(dir, 'raw-fsync.bin');
  const fd = preallocatedFile(file, samples * frameBytes + (1 << 20));
  const out: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const t = performance.now();
      writevSync(fd, [rawFrameHeader(i, record), record], i * frameBytes);
      fdatasyncSync(fd);
      out.push(performance.now() - t);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  return out;
}

/**
 * Heap allocation and garbage-collection pauses over a window of the run. Allocated bytes = growth
 * of the used heap + what every collection inside the window freed (GCProfiler reports the used
 * heap before and after each one, so nothing needs --trace-gc); pauses are the 'gc' performance
 * entries that started inside the window.
 */
class GcWindow {
  private readonly profiler = new GCProfiler();
  private readonly pauses: { startTime: number; duration: number }[] = [];
  private readonly observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) this.pauses.push({ startTime: e.startTime, duration: e.duration });
  });
  private usedAtStart = 0;
  private startedAt = 0;

  start(): void {
    this.observer.observe({ entryTypes: ['gc'] });
    this.profiler.start();
    this.startedAt = performance.now();
    this.usedAtStart = getHeapStatistics().used_heap_size;
  }

  stop(): { allocatedBytes: number; pauseMs: number; pauseMaxMs: number } {
    const usedAtEnd = getHeapStatistics().used_heap_size;
    const stoppedAt = performance.now();
    const { statistics } = this.profiler.stop();
    let freed = 0;
    for (const gc of statistics) {
      freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
    }
    for (const e of this.observer.takeRecords()) {
      this.pauses.push({ startTime: e.startTime, duration: e.duration });
    }
    this.observer.disconnect();
    let pauseMs = 0;
    let pauseMaxMs = 0;
    for (const p of this.pauses) {
      if (p.startTime < this.startedAt || p.startTime > stoppedAt) continue;
      pauseMs += p.duration;
      pauseMaxMs = Math.max(pauseMaxMs, p.duration);
    }
    return { allocatedBytes: usedAtEnd - this.usedAtStart + freed, pauseMs, pauseMaxMs };
  }
}

/** Pre-generated workload: per lane the scheduled blocks; the burst lane also gets the burst. */
interface Workload {
  f: ConsensusFixture;
  blocks: SignedLaneProposal[][];
  encoded: Uint8Array[][];
  burst: SignedLaneProposal[];
  burstEncoded: Uint8Array[];
}

export function prepare(config: Config, durationMs: number, burst: boolean): Workload {
  const f = new ConsensusFixture({
    lanes: config.lanes,
    seed: 42,
    payloadBytes: config.blockBytes,
    sign: false,
  });
  // +1: block 0 of each lane is pushed before the schedule starts (it creates the lane's log).
  const perLane = Math.ceil((config.ratePerLane * (WARMUP_MS + durationMs)) / 1000) + 2;
  const blocks = f.lanes.map((lane) => Array.from({ length: perLane }, () => f.produceBlock(lane)));
  const burstBlocks = burst ? Array.from({ length: BURST_BLOCKS }, () => f.produceBlock(f.laneAt(0))) : [];
  return {
    f,
    blocks,
    encoded: blocks.map((list) => list.map(encodeSignedLaneProposal)),
    burst: burstBlocks,
    burstEncoded: burstBlocks.map(encodeSignedLaneProposal),
  };
}

/** What the schedule drives: Cairn's persistence or the raw lanes. */
interface Sink {
  push(lane: number, k: number): void;
  pushBurst(): void;
  /** Called every ~1 ms with the elapsed time (QC flow for Cairn). */
  tick?(now: number): void;
  close(): Promise<void>;
  fsyncs(): number;
}

/**
 * Every latency sample of a run, kept exactly (a preallocated Float64Array, no allocation per
 * sample), so quantiles are exact: a histogram's bucket width would be larger than the gap the
 * Cairn ÷ raw ratio is judged on.
 */
export class ExactSamples {
  private samples: Float64Array;
  private n = 0;

  constructor(capacity: number) {
    this.samples = new Float64Array(Math.max(16, capacity));
  }

  record(ms: number): void {
    if (this.n === this.samples.length) {
      const grown = new Float64Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.n++] = ms;
  }

  get count(): number {
    return this.n;
  }

  /** Nearest-rank quantile (q in 0..1), exact; 0 with no samples. */
  quantileMs(q: number): number {
    if (this.n === 0) return 0;
    const sorted = this.samples.slice(0, this.n).sort();
    return sorted[Math.min(this.n - 1, Math.max(0, Math.ceil(q * this.n) - 1))]!;
  }
}

/** Arrival times and the latency recorder shared by both sinks. */
class Recorder {
  readonly arrivals: number[][];
  readonly durableNext: number[];
  readonly all: ExactSamples;
  readonly duringBurst: ExactSamples;
  burstActive = false;
  burstLane = 0;
  blocks = 0;
  /** Blocks that arrived before this time (the warm-up) are not measured. */
  measureFrom = Number.POSITIVE_INFINITY;
  /** Optional per-block observer (bench/votePathTrace.ts): lane, arrival and durable times. */
  onSample: ((lane: number, arrivedMs: number, durableMs: number) => void) | undefined;

  constructor(lanes: number, firstMeasured: number, expectedBlocks: number) {
    this.all = new ExactSamples(expectedBlocks);
    this.duringBurst = new ExactSamples(expectedBlocks);
    this.arrivals = Array.from({ length: lanes }, () => []);
    this.durableNext = Array.from({ length: lanes }, () => firstMeasured);
  }

  arrived(lane: number, k: number, t: number): void {
    this.arrivals[lane]![k] = t;
  }

  /** Blocks of `lane` below `next` are durable. */
  durable(lane: number, next: number): void {
    const now = performance.now();
    const arr = this.arrivals[lane]!;
    for (let k = this.durableNext[lane]!; k < next; k++) {
      const t = arr[k];
      if (t === undefined || t < this.measureFrom) continue;
      const ms = now - t;
      this.all.record(ms);
      this.onSample?.(lane, t, now);
      this.blocks++;
      if (this.burstActive && lane !== this.burstLane) this.duringBurst.record(ms);
    }
    if (next > this.durableNext[lane]!) this.durableNext[lane] = next;
  }
}

/** `qcFlow` false: no CommitQC / AppQC is pushed (a diagnostic side: what the QC flow costs the lanes). */
async function cairnSink(dir: string, w: Workload, rec: Recorder, qcFlow = true): Promise<Sink> {
  const f = w.f;
  const cp = await ConsensusPersistence.open({
    fs: new RealFileSystem(),
    dir,
    committee: f.committee,
    verifySignatures: false,
    blocksPerLane: 1_000_000,
    commitQCWindow: 100_000,
  });
  const laneIndex = new Map<LaneId, number>(f.lanes.map((l, i) => [l, i]));
  // Warm-up: block 0 of every lane creates its log (a one-time cost per lane, not a vote path).
  await Promise.all(
    f.lanes.map((lane, i) => {
      cp.pushBlock(w.blocks[i]![0]!);
      return cp.waitVoteable(lane, 0);
    }),
  );
  await zeroFillSettled();
  cp.subscribeVoteable((lane, next) => rec.durable(laneIndex.get(lane)!, next));
  let nextQCAt = performance.now() + 100;
  return {
    push: (lane, k) => {
      rec.arrived(lane, k, performance.now());
      cp.pushBlock(w.blocks[lane]![k]!);
    },
    pushBurst: () => {
      const base = w.blocks[0]!.length;
      for (let i = 0; i < w.burst.length; i++) {
        rec.arrived(0, base + i, performance.now());
        cp.pushBlock(w.burst[i]!);
      }
    },
    tick: (now) => {
      if (!qcFlow || now < nextQCAt) return;
      nextQCAt += 100;
      // Finalize only blocks that became voteable (a real CommitQC covers certified blocks).
      const qc = f.nextCommitQC({ upTo: (lane) => cp.voteableNext(lane) });
      cp.pushCommitQC(qc);
      if (qc.roadIndex >= 3) {
        const a = f.commitQC(qc.roadIndex - 2);
        cp.pushAppQC(f.appQC(a), a);
      }
    },
    close: () => cp.close(),
    fsyncs: () => cp.metrics.fsyncs,
  };
}

/**
 * Waits until every lane log's spare segment is ready: the process-wide zero-fill gate (one slice
 * of zeros at a time) has let ten probes through at once, 5 ms apart. Creating 40 lane logs queues
 * 40 spares (160 MiB of zeros, paced); on a quiet machine the 1 s warm-up covers them, on a loaded
 * one they ran into the timed part and their fsyncs competed with the lanes', a start-up cost that
 * a node that has been running does not pay (the raw side preallocates before timing, too).
 */
async function zeroFillSettled(): Promise<void> {
  let idleProbes = 0;
  while (idleProbes < 10) {
    await sleep(5);
    const t = performance.now();
    await runZeroFillSlice(async () => undefined);
    idleProbes = performance.now() - t < 1 ? idleProbes + 1 : 0;
  }
}

/** Bytes of `records` once framed. */
function framedBytes(records: readonly Uint8Array[]): number {
  return records.reduce((s, b) => s + b.byteLength + FRAME_HEADER_BYTES, 0);
}

/** Lane `i`'s preallocated raw file, sized for its blocks (lane 0 also takes the burst) + 1 MiB. */
function laneFile(dir: string, w: Workload, i: number): number {
  const records = i === 0 ? [...w.encoded[0]!, ...w.burstEncoded] : w.encoded[i]!;
  return preallocatedFile(join(dir, `lane-${i}.raw`), framedBytes(records) + (1 << 20));
}

/** Bytes of one encoded CommitQC and prune anchor of the 40-lane fixture (measured, unsigned). */
const RAW_COMMITQC_BYTES = 5830;
const RAW_ANCHOR_BYTES = 8484;

/**
 * The other files Cairn's layout needs, with none of Cairn: a CommitQC record appended to its own
 * preallocated file and fdatasynced every 100 ms (one at a time; a QC due while one is in flight
 * joins the next), and an anchor image rewritten in place and fdatasynced once a second. Same
 * sizes and cadence as the bench's QC flow into Cairn (anchor writes coalesced to one a second).
 */
function rawQcFiles(dir: string): {
  tick(now: number): void;
  busy(): boolean;
  close(): void;
  fsyncs(): number;
} {
  mkdirSync(join(dir, 'commitqcs'));
  const qcFd = preallocatedFile(join(dir, 'commitqcs', 'log.raw'), 4 << 20);
  const anchorFd = preallocatedFile(join(dir, 'anchor.raw'), 64 << 10);
  const qcRecord = new Uint8Array(RAW_COMMITQC_BYTES).fill(7);
  const anchorImage = new Uint8Array(RAW_ANCHOR_BYTES).fill(9);
  let qcPos = 0;
  let qcDue = 0;
  let qcBusy = false;
  let anchorBusy = false;
  let nextQCAt = performance.now() + 100;
  let nextAnchorAt = performance.now() + 1000;
  let fsyncs = 0;
  const flushQCs = () => {
    if (qcBusy || qcDue === 0) return;
    qcBusy = true;
    for (; qcDue > 0; qcDue--) {
      writeSync(qcFd, qcRecord, 0, qcRecord.byteLength, qcPos);
      qcPos += qcRecord.byteLength;
    }
    fdatasync(qcFd, (err) => {
      if (err) throw err;
      fsyncs++;
      qcBusy = false;
      flushQCs();
    });
  };
  return {
    tick: (now) => {
      if (now >= nextQCAt) {
        nextQCAt += 100;
        qcDue++;
        flushQCs();
      }
      if (now >= nextAnchorAt && !anchorBusy) {
        nextAnchorAt += 1000;
        anchorBusy = true;
        writeSync(anchorFd, anchorImage, 0, anchorImage.byteLength, 0);
        fdatasync(anchorFd, (err) => {
          if (err) throw err;
          fsyncs++;
          anchorBusy = false;
        });
      }
    },
    busy: () => qcBusy || anchorBusy,
    close: () => {
      closeSync(qcFd);
      closeSync(anchorFd);
    },
    fsyncs: () => fsyncs,
  };
}

/** `qcFiles`: the raw lanes plus `rawQcFiles` (side 'raw+qc'). */
function rawLanesSink(dir: string, w: Workload, rec: Recorder, qcFiles = false): Sink {
  const others = qcFiles ? rawQcFiles(dir) : undefined;
  const lanes = w.encoded.map((_, i) => {
    return {
      fd: laneFile(dir, w, i),
      pos: 0,
      /** Records queued, by block number k; `written` is the first not yet written. */
      queue: [] as Uint8Array[],
      written: 1,
      queued: 1,
      busy: false,
    };
  });
  let fsyncs = 0;
  const flush = (i: number) => {
    const l = lanes[i]!;
    if (l.busy || l.queued === l.written) return;
    l.busy = true;
    const bufs: Uint8Array[] = [];
    for (let k = l.written; k < l.queued; k++) {
      const r = l.queue[k]!;
      bufs.push(rawFrameHeader(k, r), r);
    }
    let bytes = 0;
    for (const b of bufs) bytes += b.byteLength;
    writevSync(l.fd, bufs, l.pos);
    l.pos += bytes;
    const upTo = l.queued;
    l.written = upTo;
    fdatasync(l.fd, (err) => {
      if (err) throw err;
      fsyncs++;
      l.busy = false;
      rec.durable(i, upTo);
      flush(i);
    });
  };
  return {
    push: (lane, k) => {
      rec.arrived(lane, k, performance.now());
      const l = lanes[lane]!;
      l.queue[k] = w.encoded[lane]![k]!;
      l.queued = k + 1;
      flush(lane);
    },
    pushBurst: () => {
      const l = lanes[0]!;
      const base = w.encoded[0]!.length;
      for (let i = 0; i < w.burstEncoded.length; i++) {
        rec.arrived(0, base + i, performance.now());
        l.queue[base + i] = w.burstEncoded[i]!;
      }
      l.queued = base + w.burstEncoded.length;
      flush(0);
    },
    ...(others ? { tick: others.tick } : {}),
    close: async () => {
      while (lanes.some((l) => l.busy) || others?.busy()) await sleep(1);
      for (const l of lanes) closeSync(l.fd);
      others?.close();
    },
    fsyncs: () => fsyncs + (others?.fsyncs() ?? 0),
  };
}

/**
 * Raw shared log (bench/laneLayouts.ts): every lane's blocks appended to ONE preallocated file and
 * group-committed (blocks queued while an fdatasync is in flight share the next one). With
 * `laneCopies`, each block is also written to its own lane's file (page cache only) and every lane
 * file is fdatasynced once a second, one at a time: the cost of keeping per-lane files behind a
 * shared log. No Cairn code.
 */
function rawSharedLogSink(dir: string, w: Workload, rec: Recorder, laneCopies: boolean): Sink {
  const all = [...w.encoded, w.burstEncoded];
  const bytes = all.reduce((s, l) => s + framedBytes(l), 0);
  const fd = preallocatedFile(join(dir, 'shared.raw'), bytes + (1 << 20));
  const laneFds = laneCopies ? w.encoded.map((_, i) => laneFile(dir, w, i)) : [];
  const lanePos = laneFds.map(() => 0);
  let pos = 0;
  let queued: { lane: number; k: number; record: Uint8Array }[] = [];
  let busy = false;
  let checkpointing = false;
  let lastCheckpoint = performance.now();
  let fsyncs = 0;
  const checkpoint = async () => {
    checkpointing = true;
    for (const laneFd of laneFds) {
      await new Promise<void>((resolve, reject) =>
        fdatasync(laneFd, (err) => (err ? reject(err) : resolve())),
      );
      fsyncs++;
      await sleep(12);
    }
    checkpointing = false;
  };
  const flush = () => {
    if (busy || queued.length === 0) return;
    busy = true;
    const batch = queued;
    queued = [];
    const buffers: Uint8Array[] = [];
    for (const q of batch) buffers.push(rawFrameHeader(q.k, q.record), q.record);
    for (let i = 0; i < buffers.length; i += 1024) {
      const part = buffers.slice(i, i + 1024);
      writevSync(fd, part, pos);
      for (const b of part) pos += b.byteLength;
    }
    fdatasync(fd, (err) => {
      if (err) throw err;
      fsyncs++;
      busy = false;
      const next = new Map<number, number>();
      for (const q of batch) next.set(q.lane, Math.max(next.get(q.lane) ?? 0, q.k + 1));
      for (const [lane, n] of next) rec.durable(lane, n);
      flush();
    });
  };
  const enqueue = (lane: number, k: number, record: Uint8Array) => {
    rec.arrived(lane, k, performance.now());
    queued.push({ lane, k, record });
    if (laneCopies) {
      writevSync(laneFds[lane]!, [rawFrameHeader(k, record), record], lanePos[lane]!);
      lanePos[lane]! += FRAME_HEADER_BYTES + record.byteLength;
    }
  };
  return {
    push: (lane, k) => {
      enqueue(lane, k, w.encoded[lane]![k]!);
      if (laneCopies && !checkpointing && performance.now() - lastCheckpoint > 1000) {
        lastCheckpoint = performance.now();
        void checkpoint();
      }
      queueMicrotask(flush);
    },
    pushBurst: () => {
      const base = w.encoded[0]!.length;
      for (let i = 0; i < w.burstEncoded.length; i++) enqueue(0, base + i, w.burstEncoded[i]!);
      queueMicrotask(flush);
    },
    close: async () => {
      while (busy || checkpointing) await sleep(1);
      closeSync(fd);
      for (const laneFd of laneFds) closeSync(laneFd);
    },
    fsyncs: () => fsyncs,
  };
}

/**
 * `cairn-no-qc`: Cairn without the CommitQC / AppQC flow (no CommitQC log or anchor writes);
 * `raw+qc`: the raw lanes plus a raw CommitQC file and anchor file at the QC flow's cadence.
 */
export type Side =
  | 'cairn'
  | 'cairn-no-qc'
  | 'raw'
  | 'raw+qc'
  | 'raw-shared-log'
  | 'raw-shared-log+lane-files';

export async function runSchedule(
  root: string,
  side: Side,
  config: Config,
  w: Workload,
  durationMs: number,
  burst: boolean,
  onSample?: (lane: number, arrivedMs: number, durableMs: number) => void,
  /** Called at every iteration of the schedule's ~1 ms loop (bench/votePathTrace.ts: stalls). */
  onTick?: (nowMs: number) => void,
): Promise<RunResult> {
  const dir = mkdtempSync(join(root, `${side}-${config.lanes}x${config.blockBytes}-`));
  const rec = new Recorder(
    config.lanes,
    1,
    w.blocks.reduce((n, list) => n + list.length, w.burst.length),
  );
  rec.onSample = onSample;
  const sink =
    side === 'cairn' || side === 'cairn-no-qc'
      ? await cairnSink(dir, w, rec, side === 'cairn')
      : side === 'raw'
        ? rawLanesSink(dir, w, rec)
        : side === 'raw+qc'
          ? rawLanesSink(dir, w, rec, true)
          : rawSharedLogSink(dir, w, rec, side === 'raw-shared-log+lane-files');
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  // The pre-generated workload (tens of MB of blocks) is young garbage-collector data: collect it
  // now, or its promotion lands in the first milliseconds of the timed run, on either side.
  collectGarbage();
  const lanes = config.lanes;
  const sent = new Array<number>(lanes).fill(1);
  const limit = w.blocks.map((list) => list.length);
  const intervalMs = 1000 / config.ratePerLane;
  const offsets = Array.from({ length: lanes }, (_, i) => (i * intervalMs) / lanes);
  const burstLast = w.blocks[0]!.length + w.burst.length;
  let burstStartedAt = 0;
  let burstDrainMs = 0;
  const started = performance.now();
  const measureFrom = started + WARMUP_MS;
  rec.measureFrom = measureFrom;
  let loopDelayOn = false;
  const gcWindow = new GcWindow();
  while (performance.now() - measureFrom < durationMs) {
    const now = performance.now();
    for (let i = 0; i < lanes; i++) {
      const due = Math.min(limit[i]!, Math.floor((now - started - offsets[i]!) / intervalMs) + 2);
      while (sent[i]! < due) sink.push(i, sent[i]!++);
    }
    if (!loopDelayOn && now >= measureFrom) {
      loopDelayOn = true;
      loopDelay.enable();
      gcWindow.start();
    }
    if (burst && burstStartedAt === 0 && now - measureFrom > durationMs / 4) {
      // 1,000 blocks queued at once on lane 0 (a lane catching up): the rest of its steady stream
      // plus the burst, all pushed now; the lane gets nothing further afterwards.
      rec.burstActive = true;
      burstStartedAt = performance.now();
      while (sent[0]! < limit[0]!) sink.push(0, sent[0]!++);
      limit[0] = 0;
      sink.pushBurst();
    }
    if (rec.burstActive && rec.durableNext[0]! >= burstLast) {
      rec.burstActive = false;
      burstDrainMs = performance.now() - burstStartedAt;
    }
    sink.tick?.(now);
    onTick?.(now);
    await sleep(1);
  }
  const gc = gcWindow.stop();
  // Drain: wait until every pushed block is durable (bounded).
  const deadline = performance.now() + 30_000;
  const pending = () => sent.some((s, i) => rec.durableNext[i]! < (i === 0 && burst ? burstLast : s));
  while (pending() && performance.now() < deadline) {
    if (rec.burstActive && rec.durableNext[0]! >= burstLast) {
      rec.burstActive = false;
      burstDrainMs = performance.now() - burstStartedAt;
    }
    await sleep(1);
  }
  // The burst may finish in the drain's last wait (its loop body then never sees it).
  if (rec.burstActive && rec.durableNext[0]! >= burstLast) {
    rec.burstActive = false;
    burstDrainMs = performance.now() - burstStartedAt;
  }
  loopDelay.disable();
  const elapsedMs = performance.now() - measureFrom;
  const fsyncs = sink.fsyncs();
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
  return {
    p50Ms: rec.all.quantileMs(0.5),
    p99Ms: rec.all.quantileMs(0.99),
    blocks: rec.blocks,
    blocksPerSec: (rec.blocks / elapsedMs) * 1000,
    fsyncs,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    allocBytesPerBlock: gc.allocatedBytes / Math.max(1, rec.blocks),
    gcPauseMs: gc.pauseMs,
    gcPauseMaxMs: gc.pauseMaxMs,
    ...(burst
      ? {
          burst: {
            p50Ms: rec.duringBurst.quantileMs(0.5),
            p99Ms: rec.duringBurst.quantileMs(0.99),
            count: rec.duringBurst.count,
            drainMs: burstDrainMs,
          },
        }
      : {}),
  };
}

/** Blocks in the logs for the restart measurements ("a few thousand", 4 KiB each). */
const RESTART_BLOCKS = 4000;

/** Time from `ConsensusPersistence.open` to its promise resolving (the store is ready), then closed. */
async function timeOpen(dir: string, lanes: number): Promise<number> {
  const f = writerFixture(lanes);
  const t = performance.now();
  const cp = await openWriterStore(dir, f);
  const ms = performance.now() - t;
  await cp.close();
  return ms;
}

/**
 * Clean restart: a store holding RESTART_BLOCKS blocks (plus their CommitQCs and a moving anchor),
 * closed cleanly, then opened again. Returns the open-to-ready time.
 */
export async function measureCleanRestart(root: string, lanes: number): Promise<number> {
  const dir = mkdtempSync(join(root, 'restart-clean-'));
  try {
    const f = writerFixture(lanes);
    const cp = await openWriterStore(dir, f);
    await fillStore(cp, f, RESTART_BLOCKS);
    await cp.close();
    return await timeOpen(dir, lanes);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Restart after kill -9: a child process writes (bench/support/consensusWriter.ts) and is SIGKILLed
 * mid-write once RESTART_BLOCKS blocks are durable; then this process opens the store. Returns the
 * open-to-ready time (recovery of every torn tail included).
 */
export async function measureCrashRestart(root: string, lanes: number): Promise<number> {
  const dir = mkdtempSync(join(root, 'restart-kill-'));
  try {
    const script = fileURLToPath(new URL('./support/consensusWriter.ts', import.meta.url));
    const child = fork(script, [dir, String(lanes)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.on('message', (msg) => {
        if ((msg as { durableBlocks: number }).durableBlocks >= RESTART_BLOCKS) resolve();
      });
      child.once('exit', (code, signal) => reject(new Error(`writer child exited (${code ?? signal})`)));
    });
    child.kill('SIGKILL');
    await exited;
    return await timeOpen(dir, lanes);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Per-block cost of admission-time signature verification (ed25519), for the table. */
function measureVerifyUs(): number {
  const f = new ConsensusFixture({ lanes: 4, seed: 7, payloadBytes: 4096, sign: true });
  const blocks = Array.from({ length: 200 }, (_, i) => f.produceBlock(f.laneAt(i % 4)));
  const t = performance.now();
  for (const b of blocks) verifyLaneProposal(b, f.committee);
  return ((performance.now() - t) / blocks.length) * 1000;
}

interface Round {
  fsync: number[];
  cairn: RunResult;
  raw: RunResult;
  cairnBurst: RunResult;
  rawBurst: RunResult;
}

export async function run(args: string[]): Promise<void> {
  // Lanes fsync on the libuv pool: make sure it really has 64 threads (see threadPool.ts).
  if (rerunWithThreadPool(64)) return;
  const quick = args.includes('--quick');
  const rounds = quick ? 3 : 5;
  const durationMs = quick ? 2500 : 6000;
  const fsyncSamples = quick ? 300 : 1000;
  const root = mkdtempSync(join(tmpdir(), 'cairn-bench-consensus-'));
  try {
    const main = prepare(MAIN, durationMs, false);
    const burst = prepare(MAIN, durationMs, true);
    const record = main.encoded[0]![0]!;
    const out: Round[] = [];
    for (let r = 0; r < rounds; r++) {
      const round: Partial<Round> = {};
      const steps: Array<() => Promise<void>> = [
        async () => {
          round.fsync = measureRawFsync(root, record, fsyncSamples);
        },
        async () => {
          // A fresh fixture (same seed, same bytes): its CommitQC chain starts again at road 0.
          round.cairn = await runSchedule(
            root,
            'cairn',
            MAIN,
            prepare(MAIN, durationMs, false),
            durationMs,
            false,
          );
        },
        async () => {
          round.raw = await runSchedule(root, 'raw', MAIN, main, durationMs, false);
        },
        async () => {
          round.cairnBurst = await runSchedule(
            root,
            'cairn',
            MAIN,
            prepare(MAIN, durationMs, true),
            durationMs,
            true,
          );
        },
        async () => {
          round.rawBurst = await runSchedule(root, 'raw', MAIN, burst, durationMs, true);
        },
      ];
      for (let i = 0; i < steps.length; i++) await steps[(r + i) % steps.length]!();
      out.push(round as Round);
    }
    // Full mode adds the other shapes (one round each, Cairn only) for the table.
    const extra: Array<Config & RunResult> = [];
    if (!quick) {
      for (const c of [
        { lanes: 16, blockBytes: 4096, ratePerLane: 50 },
        { lanes: 16, blockBytes: 65536, ratePerLane: 10 },
        { lanes: 40, blockBytes: 65536, ratePerLane: 10 },
      ]) {
        extra.push({
          ...c,
          ...(await runSchedule(root, 'cairn', c, prepare(c, durationMs, false), durationMs, false)),
        });
      }
    }
    const verifyUs = measureVerifyUs();
    const restartRounds = quick ? 1 : 3;
    const cleanRestarts: number[] = [];
    const crashRestarts: number[] = [];
    for (let r = 0; r < restartRounds; r++) {
      cleanRestarts.push(await measureCleanRestart(root, MAIN.lanes));
      crashRestarts.push(await measureCrashRestart(root, MAIN.lanes));
    }

    const q = (xs: number[], p: number) => {
      const s = [...xs].sort((a, b) => a - b);
      return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
    };
    const med = (pick: (r: Round) => number) => median(out.map(pick));
    const fsyncP50 = med((r) => q(r.fsync, 0.5));
    const fsyncP99 = med((r) => q(r.fsync, 0.99));
    const m = {
      voteP50: med((r) => r.cairn.p50Ms),
      voteP99: med((r) => r.cairn.p99Ms),
      rawP50: med((r) => r.raw.p50Ms),
      rawP99: med((r) => r.raw.p99Ms),
      burstP50: med((r) => r.cairnBurst.burst!.p50Ms),
      burstP99: med((r) => r.cairnBurst.burst!.p99Ms),
      rawBurstP99: med((r) => r.rawBurst.burst!.p99Ms),
      drain: med((r) => r.cairnBurst.burst!.drainMs),
      rawDrain: med((r) => r.rawBurst.burst!.drainMs),
      loopP99: med((r) => r.cairn.loopDelayP99Ms),
      rawLoopP99: med((r) => r.raw.loopDelayP99Ms),
      alloc: med((r) => r.cairn.allocBytesPerBlock),
      rawAlloc: med((r) => r.raw.allocBytesPerBlock),
      gcPause: med((r) => r.cairn.gcPauseMs),
      gcPauseMax: med((r) => r.cairn.gcPauseMaxMs),
      rawGcPause: med((r) => r.raw.gcPauseMs),
      rawGcPauseMax: med((r) => r.raw.gcPauseMaxMs),
      cleanRestart: median(cleanRestarts),
      crashRestart: median(crashRestarts),
    };
    const ratios = {
      voteP50VsFsyncP50: round3(m.voteP50 / fsyncP50),
      voteP99VsFsyncP99: round3(m.voteP99 / fsyncP99),
      otherLanesP99DuringBurstVsFsyncP99: round3(m.burstP99 / fsyncP99),
      voteP50VsRawLanesP50: round3(m.voteP50 / m.rawP50),
      voteP99VsRawLanesP99: round3(m.voteP99 / m.rawP99),
      // The same p50 ratio taken within each round (Cairn and raw ran minutes apart at most), then
      // the median: less exposed to load drift between rounds than a ratio of two medians.
      voteP50VsRawLanesP50MedianOfRounds: round3(med((r) => r.cairn.p50Ms / r.raw.p50Ms)),
      otherLanesP99DuringBurstVsRawLanes: round3(m.burstP99 / m.rawBurstP99),
      // The same three bars applied to the raw-lanes baseline (no Cairn code): what the disk and
      // the runtime allow this workload at all.
      rawLanesP50VsFsyncP50: round3(m.rawP50 / fsyncP50),
      rawLanesP99VsFsyncP99: round3(m.rawP99 / fsyncP99),
      rawLanesBurstP99VsFsyncP99: round3(m.rawBurstP99 / fsyncP99),
    };

    console.log(
      `consensus persistence (${quick ? 'quick' : 'full'}: ${rounds} interleaved rounds of ${durationMs} ms, medians): ` +
        `arrival → voteable latency, ${MAIN.lanes} lanes × ${MAIN.blockBytes / 1024} KiB × ${MAIN.ratePerLane} blocks/s`,
    );
    console.log(
      `raw fsync (framed ${record.byteLength}-byte block, preallocated file, fdatasyncSync, ${fsyncSamples}/round): ` +
        `p50 ${fsyncP50.toFixed(3)} ms, p99 ${fsyncP99.toFixed(3)} ms`,
    );
    const fmt3 = (x: number) => x.toFixed(3);
    printTable(
      [
        'side',
        'p50 ms',
        'p99 ms',
        'burst others p50',
        'burst others p99',
        'burst drain ms',
        'loop delay p99',
      ],
      [
        [
          'cairn',
          fmt3(m.voteP50),
          fmt3(m.voteP99),
          fmt3(m.burstP50),
          fmt3(m.burstP99),
          m.drain.toFixed(1),
          fmt3(m.loopP99),
        ],
        [
          'raw lanes',
          fmt3(m.rawP50),
          fmt3(m.rawP99),
          fmt3(med((r) => r.rawBurst.burst!.p50Ms)),
          fmt3(m.rawBurstP99),
          m.rawDrain.toFixed(1),
          fmt3(m.rawLoopP99),
        ],
      ],
    );
    for (const [i, r] of out.entries()) {
      console.log(
        `  round ${i + 1}: fsync p50/p99 ${fmt3(q(r.fsync, 0.5))}/${fmt3(q(r.fsync, 0.99))}  cairn ${fmt3(r.cairn.p50Ms)}/${fmt3(r.cairn.p99Ms)} ` +
          `(${r.cairn.blocks} blocks, ${r.cairn.fsyncs} fsyncs)  raw ${fmt3(r.raw.p50Ms)}/${fmt3(r.raw.p99Ms)}  ` +
          `burst others cairn ${fmt3(r.cairnBurst.burst!.p99Ms)} raw ${fmt3(r.rawBurst.burst!.p99Ms)} p99  ` +
          `p50 ratio ${fmt3(r.cairn.p50Ms / r.raw.p50Ms)}`,
      );
    }
    for (const e of extra) {
      console.log(
        `  ${e.lanes} lanes × ${e.blockBytes / 1024} KiB × ${e.ratePerLane}/s: vote p50 ${fmt3(e.p50Ms)} ms, p99 ${fmt3(e.p99Ms)} ms, ` +
          `${e.blocksPerSec.toFixed(0)} blocks/s, ${e.fsyncs} fsyncs`,
      );
    }
    console.log(
      `allocation per block (timed window, GC-accounted): cairn ${m.alloc.toFixed(0)} B, raw lanes ${m.rawAlloc.toFixed(0)} B; ` +
        `GC pauses in the ${durationMs} ms window: cairn ${fmt3(m.gcPause)} ms (longest ${fmt3(m.gcPauseMax)}), ` +
        `raw lanes ${fmt3(m.rawGcPause)} ms (longest ${fmt3(m.rawGcPauseMax)})`,
    );
    console.log(
      `restart, ${MAIN.lanes} lanes × ${RESTART_BLOCKS} blocks in the logs, open → ready (median of ${restartRounds}): ` +
        `clean close ${m.cleanRestart.toFixed(1)} ms [${cleanRestarts.map((x) => x.toFixed(0)).join(', ')}], ` +
        `after kill -9 ${m.crashRestart.toFixed(1)} ms [${crashRestarts.map((x) => x.toFixed(0)).join(', ')}]`,
    );
    console.log(
      `admission-time ed25519 verification (off in this bench): ${verifyUs.toFixed(1)} µs per block, before pushBlock returns`,
    );
    console.log(
      `ratios: voteP50VsFsyncP50 ${verdict(ratios.voteP50VsFsyncP50, 2, '<=')}, voteP99VsFsyncP99 ${verdict(ratios.voteP99VsFsyncP99, 3, '<=')}, ` +
        `otherLanesP99DuringBurstVsFsyncP99 ${verdict(ratios.otherLanesP99DuringBurstVsFsyncP99, 3, '<=')}; ` +
        `vs raw lanes: p50 ${ratios.voteP50VsRawLanesP50}, p99 ${ratios.voteP99VsRawLanesP99}, burst ${ratios.otherLanesP99DuringBurstVsRawLanes}; ` +
        `raw lanes against the same bars: ${ratios.rawLanesP50VsFsyncP50}, ${ratios.rawLanesP99VsFsyncP99}, ${ratios.rawLanesBurstP99VsFsyncP99}`,
    );
    const metrics: Record<string, number> = {
      '40x4KiBVoteP50Ms': round3(m.voteP50),
      '40x4KiBVoteP99Ms': round3(m.voteP99),
      burstOtherLanesP50Ms: round3(m.burstP50),
      burstOtherLanesP99Ms: round3(m.burstP99),
      burstDrainMs: round3(m.drain),
      eventLoopDelayP99Ms: round3(m.loopP99),
      verifySignatureUsPerBlock: round3(verifyUs),
      cleanRestartMs: round3(m.cleanRestart),
      crashRestartMs: round3(m.crashRestart),
      allocBytesPerBlock: Math.round(m.alloc),
      gcPauseMs: round3(m.gcPause),
      gcPauseMaxMs: round3(m.gcPauseMax),
    };
    for (const e of extra) {
      const k = `${e.lanes}x${e.blockBytes / 1024}KiB`;
      metrics[`${k}VoteP50Ms`] = round3(e.p50Ms);
      metrics[`${k}VoteP99Ms`] = round3(e.p99Ms);
    }
    const baseline = {
      fsyncP50Ms: round3(fsyncP50),
      fsyncP99Ms: round3(fsyncP99),
      rawLanesP50Ms: round3(m.rawP50),
      rawLanesP99Ms: round3(m.rawP99),
      rawLanesBurstOtherLanesP99Ms: round3(m.rawBurstP99),
      rawLanesAllocBytesPerBlock: Math.round(m.rawAlloc),
      rawLanesGcPauseMs: round3(m.rawGcPause),
    };
    console.log(JSON.stringify({ bench: 'consensus', metrics, baseline, ratios }));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run(process.argv.slice(2));
}
