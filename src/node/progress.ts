import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import type { DevnetSimulation } from './devnetSimulation.ts';
import { BLOCKS_DIR, type CairnNode } from './node.ts';

const TTY_REFRESH_MS = 500;
/** Disk usage walks the data directory; do it at most this often. */
const DISK_SCAN_INTERVAL_MS = 2_000;

interface Sample {
  atMs: number;
  globalNext: number;
  votes: number;
}

/**
 * Live progress of the devnet: one line rewritten in place on a terminal, a plain log line every
 * `logIntervalS` seconds otherwise (so logs stay readable when redirected).
 */
export class ProgressReporter {
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAtMs = performance.now();
  private last: Sample;
  private diskBytes = 0;
  private blockStoreBytes = 0;
  private diskScannedAtMs = -Infinity;
  private readonly tty: boolean;

  constructor(
    private readonly node: CairnNode,
    private readonly simulation: DevnetSimulation,
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean },
    private readonly logIntervalS: number,
  ) {
    this.tty = out.isTTY === true;
    this.last = this.sample();
  }

  start(): void {
    const everyMs = this.tty ? TTY_REFRESH_MS : Math.max(1, this.logIntervalS) * 1000;
    this.timer = setInterval(() => this.report(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.tty) this.out.write('\n');
  }

  /** The closing line: totals since start and why the run ended. */
  summary(stoppedBy: string): string {
    const s = this.simulation.stats;
    const elapsedS = (performance.now() - this.startedAtMs) / 1000;
    const fsync = this.node.consensus.metrics.fsyncLatency.summary();
    const vote = this.node.consensus.metrics.arrivalToVoteable.summary();
    return (
      `devnet stopped (${stoppedBy}) after ${elapsedS.toFixed(1)} s: ${s.blocksProposed} blocks proposed, ` +
      `${s.votes} votes, ${s.roadsFlushed} roads finalized, block store next ${s.globalNext}, ` +
      `${s.appQCs} AppQCs; vote latency p50 ${vote.p50Ms.toFixed(2)} ms p99 ${vote.p99Ms.toFixed(2)} ms, ` +
      `fsync p99 ${fsync.p99Ms.toFixed(2)} ms`
    );
  }

  private sample(): Sample {
    const s = this.simulation.stats;
    return { atMs: performance.now(), globalNext: s.globalNext, votes: s.votes };
  }

  private report(): void {
    const now = this.sample();
    const dtS = Math.max(0.001, (now.atMs - this.last.atMs) / 1000);
    const blocksPerS = (now.globalNext - this.last.globalNext) / dtS;
    const votesPerS = (now.votes - this.last.votes) / dtS;
    this.last = now;
    let lag = 0;
    for (const v of this.node.consensus.persistLag().values()) lag += v;
    const fsync = this.node.consensus.metrics.fsyncLatency.summary();
    const ranges = this.node.blocks.ranges();
    const anchor = this.node.consensus.durableAnchor();
    const line =
      `finalized ${blocksPerS.toFixed(0)} blocks/s (votes ${votesPerS.toFixed(0)}/s) | ` +
      `persist lag ${lag} blocks | fsync p99 ${fsync.p99Ms.toFixed(2)} ms | ` +
      `block store [${ranges.blocks.first}, ${ranges.blocks.next}) ${formatBytes(this.diskUsage().blocks)} | ` +
      `anchor road ${anchor ? anchor.commitQC.roadIndex : '-'} | disk ${formatBytes(this.diskUsage().total)}`;
    if (this.tty) this.out.write(`\r\x1b[2K${line}`);
    else this.out.write(`${new Date().toISOString()} ${line}\n`);
  }

  private diskUsage(): { total: number; blocks: number } {
    const nowMs = performance.now();
    if (nowMs - this.diskScannedAtMs >= DISK_SCAN_INTERVAL_MS) {
      this.diskScannedAtMs = nowMs;
      this.diskBytes = directoryBytes(this.node.fs, this.node.dataDir);
      this.blockStoreBytes = directoryBytes(this.node.fs, path.join(this.node.dataDir, BLOCKS_DIR));
    }
    return { total: this.diskBytes, blocks: this.blockStoreBytes };
  }
}

/** Total size of the files under `dir`; entries that vanish mid-walk (pruning) are skipped. */
export function directoryBytes(fs: FileSystem, dir: string): number {
  let total = 0;
  let names: string[];
  try {
    names = fs.readdir(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const full = path.join(dir, name);
    try {
      const st = fs.stat(full);
      total += st.isDirectory ? directoryBytes(fs, full) : st.size;
    } catch {
      // Deleted between readdir and stat.
    }
  }
  return total;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
