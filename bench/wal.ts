/**
 * WAL benchmark: Cairn's WAL against a raw `fs` loop doing the same work, and against classic-level
 * used as a log, measured in the same run. Every mode runs its contenders in interleaved rounds
 * (the order rotates each round) and reports medians over the rounds.
 *
 * Same work on both sides:
 *  - records: the same pre-generated payloads, framed the same way (16-byte header: crc32c over
 *    length, index and payload; the raw side checksums header and payload, Cairn its frame);
 *  - preallocation: Cairn's segment and the raw file are both filled with zeros and fsynced
 *    before the timed part (overwrites in place: no size change per fdatasync);
 *  - grouping:
 *    noSync      records appended one by one, written to the OS in writes of ~256 KiB (Cairn's
 *                buffering threshold), no fsync; raw: the same writev batches;
 *    syncSeq     one record per fsync, each awaited (latency per op); raw: writev + fdatasyncSync;
 *    groupCommit 64 concurrent appenders each `append` + `await sync()`; raw: one writev of the
 *                64 records + one fdatasyncSync per group; level: one chained batch of 64 puts
 *                written with {sync: true} per group.
 * Fsyncs are fdatasync on the main thread on both sides (Cairn's default, syncOffThread off).
 * Data goes to `.bench-tmp/` under the repository (the same disk as the repo, not tmpfs).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { realFileSystem } from '../src/io/realFileSystem.ts';
import { Wal } from '../src/wal/wal.ts';
import { rawFrameHeader } from './support/rawFrame.ts';
import { fmt, interleaved, median, nowMs, percentile, printTable, round3, verdict } from './support/stats.ts';

const SIZES = [128, 1024, 4096] as const;
const GROUP = 64;
const MIN_SEGMENT_BYTES = 64 * 1024 * 1024;

/**
 * Cairn's segment for a run writing `bytes`: large enough that the run stays below half of it, so
 * no spare segment is zero-filled inside the timed part, as the raw file is preallocated before it
 * (rotation has its own cost, outside what these modes compare).
 */
function segmentBytesFor(bytes: number): number {
  let seg = MIN_SEGMENT_BYTES;
  while (seg < 2 * bytes + (1 << 20)) seg *= 2;
  return seg;
}
/** Cairn writes buffered records once this many bytes are pending (WRITE_THRESHOLD_BYTES). */
const WRITE_BATCH_BYTES = 256 * 1024;
const FRAME_HEADER_BYTES = 16;

interface Plan {
  name: string;
  reps: number;
  noSyncBytes: number;
  syncSeqOps: number;
  groupRounds: number;
}

const QUICK: Plan = { name: 'quick', reps: 5, noSyncBytes: 16 << 20, syncSeqOps: 300, groupRounds: 60 };
const FULL: Plan = { name: 'full', reps: 9, noSyncBytes: 32 << 20, syncSeqOps: 1000, groupRounds: 200 };

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '.bench-tmp');
let dirCounter = 0;
function freshDir(): string {
  const dir = path.join(root, `wal-${process.pid}-${dirCounter++}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

function payloads(size: number, count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(new Uint8Array(size).fill(i & 0xff));
  return out;
}

// ---- raw fs baseline ---------------------------------------------------------------------------

/** A file filled with zeros and fsynced, like a preallocated segment. */
function rawFile(bytes: number): { fd: number; dir: string } {
  const dir = freshDir();
  const fd = fs.openSync(path.join(dir, 'raw.log'), 'w+');
  const zeros = new Uint8Array(1 << 20);
  for (let pos = 0; pos < bytes; pos += zeros.byteLength) fs.writeSync(fd, zeros, 0, zeros.byteLength, pos);
  fs.fdatasyncSync(fd);
  return { fd, dir };
}

function rawDone(fd: number, dir: string): void {
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
}

function rawNoSync(size: number, count: number): number {
  const data = payloads(size, 256);
  const { fd, dir } = rawFile(count * (size + FRAME_HEADER_BYTES) + (1 << 20));
  const t0 = nowMs();
  let pos = 0;
  let bufs: Uint8Array[] = [];
  let pendingBytes = 0;
  const flush = () => {
    pos += fs.writevSync(fd, bufs, pos);
    bufs = [];
    pendingBytes = 0;
  };
  for (let i = 0; i < count; i++) {
    const p = data[i & 255]!;
    bufs.push(rawFrameHeader(i, p), p);
    pendingBytes += FRAME_HEADER_BYTES + p.byteLength;
    if (pendingBytes >= WRITE_BATCH_BYTES || bufs.length >= 1024) flush();
  }
  if (bufs.length > 0) flush();
  const elapsed = nowMs() - t0;
  rawDone(fd, dir);
  return count / (elapsed / 1000);
}

function rawSyncSeq(size: number, ops: number): number[] {
  const data = payloads(size, 256);
  const { fd, dir } = rawFile(ops * (size + FRAME_HEADER_BYTES) + (1 << 20));
  const lat: number[] = [];
  let pos = 0;
  for (let i = 0; i < ops; i++) {
    const p = data[i & 255]!;
    const t0 = nowMs();
    pos += fs.writevSync(fd, [rawFrameHeader(i, p), p], pos);
    fs.fdatasyncSync(fd);
    lat.push(nowMs() - t0);
  }
  rawDone(fd, dir);
  return lat;
}

function rawGroup(size: number, rounds: number): number {
  const data = payloads(size, GROUP);
  const { fd, dir } = rawFile(rounds * GROUP * (size + FRAME_HEADER_BYTES) + (1 << 20));
  const t0 = nowMs();
  let pos = 0;
  let index = 0;
  for (let r = 0; r < rounds; r++) {
    const bufs: Uint8Array[] = [];
    for (const p of data) bufs.push(rawFrameHeader(index++, p), p);
    pos += fs.writevSync(fd, bufs, pos);
    fs.fdatasyncSync(fd);
  }
  const elapsed = nowMs() - t0;
  rawDone(fd, dir);
  return (rounds * GROUP) / (elapsed / 1000);
}

// ---- Cairn -------------------------------------------------------------------------------------

async function openWal(mode: 'none' | 'on-request', bytes: number): Promise<{ wal: Wal; dir: string }> {
  const dir = freshDir();
  const wal = await Wal.open({
    fs: realFileSystem,
    dir,
    segmentBytes: segmentBytesFor(bytes),
    durability: { mode },
  });
  return { wal, dir };
}

async function closeWal(wal: Wal, dir: string): Promise<void> {
  await wal.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

async function cairnNoSync(size: number, count: number): Promise<number> {
  const data = payloads(size, 256);
  const { wal, dir } = await openWal('none', count * (size + FRAME_HEADER_BYTES));
  const t0 = nowMs();
  for (let i = 0; i < count; i++) wal.append([data[i & 255]!]);
  await wal.sync();
  const elapsed = nowMs() - t0;
  await closeWal(wal, dir);
  return count / (elapsed / 1000);
}

async function cairnSyncSeq(size: number, ops: number): Promise<number[]> {
  const data = payloads(size, 256);
  const { wal, dir } = await openWal('on-request', ops * (size + FRAME_HEADER_BYTES));
  const lat: number[] = [];
  for (let i = 0; i < ops; i++) {
    const t0 = nowMs();
    wal.append([data[i & 255]!]);
    await wal.sync();
    lat.push(nowMs() - t0);
  }
  await closeWal(wal, dir);
  return lat;
}

async function cairnGroup(size: number, rounds: number): Promise<number> {
  const data = payloads(size, GROUP);
  const { wal, dir } = await openWal('on-request', rounds * GROUP * (size + FRAME_HEADER_BYTES));
  const appender = async (p: Uint8Array) => {
    for (let r = 0; r < rounds; r++) {
      wal.append([p]);
      await wal.sync();
    }
  };
  const t0 = nowMs();
  await Promise.all(data.map(appender));
  const elapsed = nowMs() - t0;
  await closeWal(wal, dir);
  return (rounds * GROUP) / (elapsed / 1000);
}

// ---- classic-level -----------------------------------------------------------------------------

async function levelGroup(size: number, rounds: number): Promise<number> {
  const data = payloads(size, GROUP).map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength));
  const keys = Array.from({ length: rounds * GROUP }, (_, i) => {
    const k = Buffer.alloc(8);
    k.writeBigUInt64BE(BigInt(i));
    return k;
  });
  const dir = freshDir();
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  let index = 0;
  const t0 = nowMs();
  for (let r = 0; r < rounds; r++) {
    const batch = db.batch();
    for (const p of data) batch.put(keys[index++]!, p);
    await batch.write({ sync: true });
  }
  const elapsed = nowMs() - t0;
  await db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return (rounds * GROUP) / (elapsed / 1000);
}

// ---- driver ------------------------------------------------------------------------------------

const label = (size: number) => (size >= 1024 ? `${size / 1024}KiB` : `${size}B`);

export async function run(args: string[]): Promise<void> {
  const plan = args.includes('--quick') ? QUICK : FULL;
  fs.mkdirSync(root, { recursive: true });
  const metrics: Record<string, number> = {};
  const baseline: Record<string, number> = {};
  const rows: string[][] = [];
  try {
    for (const size of SIZES) {
      const noSyncCount = Math.max(1000, Math.floor(plan.noSyncBytes / size));
      const noSync = await interleaved(plan.reps, {
        cairn: () => cairnNoSync(size, noSyncCount),
        raw: () => rawNoSync(size, noSyncCount),
      });
      const seqLat = { cairn: [] as number[][], raw: [] as number[][] };
      await interleaved(plan.reps, {
        cairn: async () => {
          seqLat.cairn.push(await cairnSyncSeq(size, plan.syncSeqOps));
          return 0;
        },
        raw: () => {
          seqLat.raw.push(rawSyncSeq(size, plan.syncSeqOps));
          return 0;
        },
      });
      const group = await interleaved(plan.reps, {
        cairn: () => cairnGroup(size, plan.groupRounds),
        raw: () => rawGroup(size, plan.groupRounds),
        level: () => levelGroup(size, plan.groupRounds),
      });
      const L = label(size);
      const p = (runs: number[][], q: number) => median(runs.map((lat) => percentile(lat, q)));
      metrics[`noSyncRecordsPerSec${L}`] = Math.round(median(noSync.cairn));
      metrics[`syncSeqP50Ms${L}`] = round3(p(seqLat.cairn, 0.5));
      metrics[`syncSeqP99Ms${L}`] = round3(p(seqLat.cairn, 0.99));
      metrics[`groupCommitRecordsPerSec${L}`] = Math.round(median(group.cairn));
      baseline[`rawNoSyncRecordsPerSec${L}`] = Math.round(median(noSync.raw));
      baseline[`rawSyncSeqP50Ms${L}`] = round3(p(seqLat.raw, 0.5));
      baseline[`rawSyncSeqP99Ms${L}`] = round3(p(seqLat.raw, 0.99));
      baseline[`rawGroupCommitRecordsPerSec${L}`] = Math.round(median(group.raw));
      baseline[`levelGroupCommitRecordsPerSec${L}`] = Math.round(median(group.level));
      rows.push([
        L,
        fmt(median(noSync.cairn)),
        fmt(median(noSync.raw)),
        fmt(p(seqLat.cairn, 0.5), 3),
        fmt(p(seqLat.raw, 0.5), 3),
        fmt(p(seqLat.cairn, 0.99), 3),
        fmt(p(seqLat.raw, 0.99), 3),
        fmt(median(group.cairn)),
        fmt(median(group.raw)),
        fmt(median(group.level)),
      ]);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  const ratios = {
    groupCommitVsRaw: round3(
      metrics.groupCommitRecordsPerSec1KiB! / baseline.rawGroupCommitRecordsPerSec1KiB!,
    ),
    noSyncVsRaw: round3(metrics.noSyncRecordsPerSec1KiB! / baseline.rawNoSyncRecordsPerSec1KiB!),
    syncP50VsRaw: round3(metrics.syncSeqP50Ms1KiB! / baseline.rawSyncSeqP50Ms1KiB!),
    groupCommitVsLevel: round3(
      metrics.groupCommitRecordsPerSec1KiB! / baseline.levelGroupCommitRecordsPerSec1KiB!,
    ),
  };
  console.log(
    `WAL benchmark (${plan.name}: medians of ${plan.reps} interleaved rounds; group = ${GROUP} appenders; ` +
      'both sides: same 16-byte frames, preallocated+fsynced file, fdatasync on the main thread)',
  );
  printTable(
    [
      'size',
      'noSync rec/s',
      'raw rec/s',
      'seq p50 ms',
      'raw p50',
      'seq p99 ms',
      'raw p99',
      'group rec/s',
      'raw group',
      'level group',
    ],
    rows,
  );
  console.log(
    `ratios (1 KiB): groupCommitVsRaw ${verdict(ratios.groupCommitVsRaw, 0.9, '>=')}, ` +
      `noSyncVsRaw ${verdict(ratios.noSyncVsRaw, 0.7, '>=')}, syncP50VsRaw ${verdict(ratios.syncP50VsRaw, 1.3, '<=')}, ` +
      `groupCommitVsLevel ${verdict(ratios.groupCommitVsLevel, 3, '>=')}`,
  );
  console.log(JSON.stringify({ bench: 'wal', metrics, baseline, ratios }));
}
