/**
 * WAL benchmark: Cairn's WAL against a raw `fs` loop and classic-level, measured in the same run,
 * interleaved (each repetition runs every contender once), medians reported.
 *
 * Modes, per record size (128 B, 1 KiB, 4 KiB):
 *  - noSync:      append records one by one, durability 'none', one final sync (writes to the OS).
 *                 Raw baseline: one `writevSync([header, payload])` per record, no fsync.
 *  - syncSeq:     one record per fsync, each append awaited until durable; per-op latency.
 *                 Raw baseline: `writevSync` + `fdatasyncSync` per record.
 *  - groupCommit: 64 concurrent appenders each `append` + `await sync()`; records/s.
 *                 Raw baseline: one `writevSync` of 64 records + one `fdatasyncSync` per group.
 *                 classic-level baseline: one chained batch of 64 puts written with {sync: true}.
 * Raw baselines write into a preallocated file, as Cairn's segments are preallocated.
 * Data goes to `.bench-tmp/` under the repository (same disk as the repo, not tmpfs).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { realFileSystem } from '../src/io/realFileSystem.ts';
import { crc32c } from '../src/lib/crc32c.ts';
import { Wal } from '../src/wal/wal.ts';

const SIZES = [128, 1024, 4096] as const;
const GROUP = 64;
const SEGMENT_BYTES = 64 * 1024 * 1024;

interface Plan {
  reps: number;
  noSyncBytes: number;
  syncSeqOps: number;
  groupRounds: number;
}

const QUICK: Plan = { reps: 3, noSyncBytes: 8 << 20, syncSeqOps: 300, groupRounds: 60 };
const FULL: Plan = { reps: 5, noSyncBytes: 40 << 20, syncSeqOps: 1500, groupRounds: 300 };

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

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

// ---- raw fs baseline ---------------------------------------------------------------------------

/** A preallocated, synced file and a frame header maker (8 bytes: length + crc32c). */
function rawFile(bytes: number): { fd: number; dir: string } {
  const dir = freshDir();
  const fd = fs.openSync(path.join(dir, 'raw.log'), 'w+');
  const zeros = new Uint8Array(1 << 20);
  for (let pos = 0; pos < bytes; pos += zeros.byteLength) fs.writeSync(fd, zeros, 0, zeros.byteLength, pos);
  fs.fdatasyncSync(fd);
  return { fd, dir };
}

function rawHeader(payload: Uint8Array): Uint8Array {
  const h = Buffer.allocUnsafe(8);
  h.writeUInt32LE(payload.byteLength, 0);
  h.writeUInt32LE(crc32c(payload), 4);
  return h;
}

function done(fd: number, dir: string): void {
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
}

function rawNoSync(size: number, count: number): number {
  const data = payloads(size, 256);
  const { fd, dir } = rawFile(count * (size + 8) + (1 << 20));
  const t0 = nowMs();
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const p = data[i & 255]!;
    pos += fs.writevSync(fd, [rawHeader(p), p], pos);
  }
  const elapsed = nowMs() - t0;
  done(fd, dir);
  return count / (elapsed / 1000);
}

function rawSyncSeq(size: number, ops: number): number[] {
  const data = payloads(size, 256);
  const { fd, dir } = rawFile(ops * (size + 8) + (1 << 20));
  const lat: number[] = [];
  let pos = 0;
  for (let i = 0; i < ops; i++) {
    const p = data[i & 255]!;
    const t0 = nowMs();
    pos += fs.writevSync(fd, [rawHeader(p), p], pos);
    fs.fdatasyncSync(fd);
    lat.push(nowMs() - t0);
  }
  done(fd, dir);
  return lat;
}

function rawGroup(size: number, rounds: number): number {
  const data = payloads(size, GROUP);
  const { fd, dir } = rawFile(rounds * GROUP * (size + 8) + (1 << 20));
  const t0 = nowMs();
  let pos = 0;
  for (let r = 0; r < rounds; r++) {
    const bufs: Uint8Array[] = [];
    for (const p of data) bufs.push(rawHeader(p), p);
    pos += fs.writevSync(fd, bufs, pos);
    fs.fdatasyncSync(fd);
  }
  const elapsed = nowMs() - t0;
  done(fd, dir);
  return (rounds * GROUP) / (elapsed / 1000);
}

// ---- Cairn -------------------------------------------------------------------------------------

async function openWal(mode: 'none' | 'on-request'): Promise<{ wal: Wal; dir: string }> {
  const dir = freshDir();
  const wal = await Wal.open({ fs: realFileSystem, dir, segmentBytes: SEGMENT_BYTES, durability: { mode } });
  return { wal, dir };
}

async function closeWal(wal: Wal, dir: string): Promise<void> {
  await wal.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

async function cairnNoSync(size: number, count: number): Promise<number> {
  const data = payloads(size, 256);
  const { wal, dir } = await openWal('none');
  const t0 = nowMs();
  for (let i = 0; i < count; i++) wal.append([data[i & 255]!]);
  await wal.sync();
  const elapsed = nowMs() - t0;
  await closeWal(wal, dir);
  return count / (elapsed / 1000);
}

async function cairnSyncSeq(size: number, ops: number): Promise<number[]> {
  const data = payloads(size, 256);
  const { wal, dir } = await openWal('on-request');
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
  const { wal, dir } = await openWal('on-request');
  const t0 = nowMs();
  await Promise.all(
    data.map(async (p) => {
      for (let r = 0; r < rounds; r++) {
        wal.append([p]);
        await wal.sync();
      }
    }),
  );
  const elapsed = nowMs() - t0;
  await closeWal(wal, dir);
  return (rounds * GROUP) / (elapsed / 1000);
}

// ---- classic-level -----------------------------------------------------------------------------

async function levelGroup(size: number, rounds: number): Promise<number> {
  const data = payloads(size, GROUP);
  const dir = freshDir();
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  const key = Buffer.alloc(8);
  let index = 0;
  const t0 = nowMs();
  for (let r = 0; r < rounds; r++) {
    const batch = db.batch();
    for (const p of data) {
      key.writeBigUInt64BE(BigInt(index++));
      batch.put(Buffer.from(key), Buffer.from(p.buffer, p.byteOffset, p.byteLength));
    }
    await batch.write({ sync: true });
  }
  const elapsed = nowMs() - t0;
  await db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return (rounds * GROUP) / (elapsed / 1000);
}

// ---- driver ------------------------------------------------------------------------------------

const label = (size: number) => (size >= 1024 ? `${size / 1024}KiB` : `${size}B`);
const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

export async function run(args: string[]): Promise<void> {
  const plan = args.includes('--quick') ? QUICK : FULL;
  fs.mkdirSync(root, { recursive: true });
  const metrics: Record<string, number> = {};
  const baseline: Record<string, number> = {};
  const rows: string[][] = [];
  try {
    for (const size of SIZES) {
      const noSyncCount = Math.max(1000, Math.floor(plan.noSyncBytes / size));
      const s = {
        cairnNoSync: [] as number[],
        rawNoSync: [] as number[],
        cairnP50: [] as number[],
        rawP50: [] as number[],
      };
      const more = {
        cairnP99: [] as number[],
        rawP99: [] as number[],
        cairnGroup: [] as number[],
        rawGroup: [] as number[],
        level: [] as number[],
      };
      for (let rep = 0; rep < plan.reps; rep++) {
        // Interleaved: each repetition measures every contender once, alternating who goes first.
        const order = rep % 2 === 0;
        const pair = async <T>(a: () => Promise<T> | T, b: () => Promise<T> | T): Promise<[T, T]> => {
          if (order) {
            const x = await a();
            return [x, await b()];
          }
          const y = await b();
          return [await a(), y];
        };
        const [cn, rn] = await pair(
          () => cairnNoSync(size, noSyncCount),
          () => rawNoSync(size, noSyncCount),
        );
        s.cairnNoSync.push(cn);
        s.rawNoSync.push(rn);
        const [cl, rl] = await pair(
          () => cairnSyncSeq(size, plan.syncSeqOps),
          () => rawSyncSeq(size, plan.syncSeqOps),
        );
        s.cairnP50.push(percentile(cl, 0.5));
        s.rawP50.push(percentile(rl, 0.5));
        more.cairnP99.push(percentile(cl, 0.99));
        more.rawP99.push(percentile(rl, 0.99));
        const [cg, rg] = await pair(
          () => cairnGroup(size, plan.groupRounds),
          () => rawGroup(size, plan.groupRounds),
        );
        more.cairnGroup.push(cg);
        more.rawGroup.push(rg);
        more.level.push(await levelGroup(size, plan.groupRounds));
      }
      const L = label(size);
      metrics[`noSyncRecordsPerSec${L}`] = Math.round(median(s.cairnNoSync));
      metrics[`syncSeqP50Ms${L}`] = median(s.cairnP50);
      metrics[`syncSeqP99Ms${L}`] = median(more.cairnP99);
      metrics[`groupCommitRecordsPerSec${L}`] = Math.round(median(more.cairnGroup));
      baseline[`rawNoSyncRecordsPerSec${L}`] = Math.round(median(s.rawNoSync));
      baseline[`rawSyncSeqP50Ms${L}`] = median(s.rawP50);
      baseline[`rawSyncSeqP99Ms${L}`] = median(more.rawP99);
      baseline[`rawGroupCommitRecordsPerSec${L}`] = Math.round(median(more.rawGroup));
      baseline[`levelGroupCommitRecordsPerSec${L}`] = Math.round(median(more.level));
      rows.push([
        L,
        fmt(median(s.cairnNoSync)),
        fmt(median(s.rawNoSync)),
        fmt(median(s.cairnP50), 3),
        fmt(median(s.rawP50), 3),
        fmt(median(more.cairnGroup)),
        fmt(median(more.rawGroup)),
        fmt(median(more.level)),
      ]);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  const ratios = {
    groupCommitVsRaw: round(
      metrics.groupCommitRecordsPerSec1KiB! / baseline.rawGroupCommitRecordsPerSec1KiB!,
    ),
    noSyncVsRaw: round(metrics.noSyncRecordsPerSec1KiB! / baseline.rawNoSyncRecordsPerSec1KiB!),
    syncP50VsRaw: round(metrics.syncSeqP50Ms1KiB! / baseline.rawSyncSeqP50Ms1KiB!),
    groupCommitVsLevel: round(
      metrics.groupCommitRecordsPerSec1KiB! / baseline.levelGroupCommitRecordsPerSec1KiB!,
    ),
  };
  const header = [
    'size',
    'noSync rec/s',
    'raw rec/s',
    'sync p50 ms',
    'raw p50 ms',
    'group rec/s',
    'raw group',
    'level group',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(
    `WAL benchmark (${plan === QUICK ? 'quick' : 'full'}; medians of ${plan.reps}; group = ${GROUP} appenders)`,
  );
  console.log(line(header));
  for (const r of rows) console.log(line(r));
  console.log(
    `ratios (1 KiB): groupCommitVsRaw ${ratios.groupCommitVsRaw} (bar >= 0.9), noSyncVsRaw ${ratios.noSyncVsRaw} (>= 0.7), ` +
      `syncP50VsRaw ${ratios.syncP50VsRaw} (<= 1.3), groupCommitVsLevel ${ratios.groupCommitVsLevel} (>= 3)`,
  );
  console.log(JSON.stringify({ bench: 'wal', metrics, baseline, ratios }));
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
