/**
 * WAL benchmark: Cairn's WAL against a raw `fs` loop doing the same work, and against classic-level
 * used as a log, measured in the same run. Every mode runs its contenders in interleaved rounds
 * (the order rotates each round) and reports medians over the rounds.
 *
 * Same work on both sides:
 *  - records: the same pre-generated payloads, framed the same way (16-byte header: crc32c over
 *    length, index and payload; the raw side checksums header and payload, Cairn its frame);
 *  - preallocation: the raw file is filled with zeros and fsynced before the timed part; Cairn's
 *    segments are about a quarter of a run each, so seals and spare preparation (zeros written in
 *    the background, as in production) happen inside the timed part;
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
import { FRAME_HEADER_BYTES, rawFrameHeader } from './support/rawFrame.ts';
import { fmt, interleaved, median, nowMs, percentile, printTable, round3, verdict } from './support/stats.ts';

const SIZES = [128, 1024, 4096] as const;
const GROUP = 64;
/**
 * Cairn's segment for a run writing `bytes`: about a quarter of the run, so every timed run seals
 * several segments and takes the spare each time (with the spare prepared in the background), as a
 * production log does. The raw baseline writes one preallocated file: the physical limit of the
 * same records, with no rotation at all, so the ratios include what rotation costs Cairn.
 */
function segmentBytesFor(bytes: number): number {
  let seg = 256 * 1024;
  while (seg * 8 <= bytes && seg < 64 * 1024 * 1024) seg *= 2;
  return seg;
}
/** Cairn writes buffered records once this many bytes are pending (WRITE_THRESHOLD_BYTES). */
const WRITE_BATCH_BYTES = 256 * 1024;

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

/** Segments sealed inside timed parts, for the report (a check that rotation really happened). */
let rotations = 0;

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
  rotations += wal.segments().length - 1;
  await wal.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

// ---- open cost -----------------------------------------------------------------------------------

const OPEN_RECORDS = 100;
const OPEN_RECORD_BYTES = 100;

/**
 * A small log (100 records of 100 bytes) in big preallocated segments, closed cleanly or left by a
 * killed writer (no close): the time `Wal.open` takes on it. Baseline: opening a file and reading
 * just the data bytes, what the data costs.
 */
async function smallLogDir(segmentBytes: number, clean: boolean): Promise<string> {
  const dir = freshDir();
  const wal = await Wal.open({ fs: realFileSystem, dir, segmentBytes });
  for (let i = 0; i < OPEN_RECORDS; i++) wal.append([new Uint8Array(OPEN_RECORD_BYTES).fill(i)]);
  await wal.sync();
  if (clean) await wal.close();
  // A killed writer: the log object is dropped without close (its fds leak until exit).
  return dir;
}

async function cairnOpenMs(dir: string, segmentBytes: number): Promise<number> {
  const t0 = nowMs();
  const wal = await Wal.open({ fs: realFileSystem, dir, segmentBytes });
  const elapsed = nowMs() - t0;
  await wal.close();
  return elapsed;
}

function rawOpenMs(dir: string): number {
  const file = fs.readdirSync(dir).find((n) => n.endsWith('.wal'))!;
  const t0 = nowMs();
  const fd = fs.openSync(path.join(dir, file), 'r');
  const buf = Buffer.alloc(32 + OPEN_RECORDS * (FRAME_HEADER_BYTES + OPEN_RECORD_BYTES));
  fs.readSync(fd, buf, 0, buf.byteLength, 0);
  fs.closeSync(fd);
  return nowMs() - t0;
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
  const openRows: string[][] = [];
  try {
    // `--open-only`: just the open-cost section (seconds instead of minutes).
    // `--sizes=1024,4096`: only these record sizes (ratios need 1024).
    const sizesArg = args.find((a) => a.startsWith('--sizes='));
    const sizes = sizesArg === undefined ? SIZES : sizesArg.slice('--sizes='.length).split(',').map(Number);
    for (const size of args.includes('--open-only') ? [] : sizes) {
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
    for (const segMiB of [1, 64]) {
      const segmentBytes = segMiB * 1024 * 1024;
      for (const clean of [true, false]) {
        const cairnMs: number[] = [];
        const rawMs: number[] = [];
        for (let r = 0; r < plan.reps; r++) {
          const dir = await smallLogDir(segmentBytes, clean);
          // The first open after a kill repairs and records; time it, then the raw read of the data.
          cairnMs.push(await cairnOpenMs(dir, segmentBytes));
          rawMs.push(rawOpenMs(dir));
          fs.rmSync(dir, { recursive: true, force: true });
        }
        const key = `${clean ? 'clean' : 'afterKill'}OpenSmallLogMs${segMiB}MiB`;
        metrics[key] = round3(median(cairnMs));
        baseline[`rawReadSmallLogMs${segMiB}MiB`] = round3(median(rawMs));
        openRows.push([
          `${segMiB} MiB`,
          clean ? 'clean close' : 'killed',
          fmt(median(cairnMs), 3),
          fmt(median(rawMs), 3),
        ]);
      }
    }
    metrics.segmentsSealedInTimedParts = rotations;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  const ratios: Record<string, number> = {
    groupCommitVsRaw: round3(
      metrics.groupCommitRecordsPerSec1KiB! / baseline.rawGroupCommitRecordsPerSec1KiB!,
    ),
    noSyncVsRaw: round3(metrics.noSyncRecordsPerSec1KiB! / baseline.rawNoSyncRecordsPerSec1KiB!),
    syncP50VsRaw: round3(metrics.syncSeqP50Ms1KiB! / baseline.rawSyncSeqP50Ms1KiB!),
    groupCommitVsLevel: round3(
      metrics.groupCommitRecordsPerSec1KiB! / baseline.levelGroupCommitRecordsPerSec1KiB!,
    ),
    cleanOpen64MiBVs1MiB: round3(metrics.cleanOpenSmallLogMs64MiB! / metrics.cleanOpenSmallLogMs1MiB!),
    afterKillOpen64MiBVs1MiB: round3(
      metrics.afterKillOpenSmallLogMs64MiB! / metrics.afterKillOpenSmallLogMs1MiB!,
    ),
  };
  for (const [k, v] of Object.entries(ratios)) if (!Number.isFinite(v)) delete ratios[k];
  console.log(
    `WAL benchmark (${plan.name}: medians of ${plan.reps} interleaved rounds; group = ${GROUP} appenders; ` +
      'same 16-byte frames, fdatasync on the main thread; raw: one preallocated file; Cairn: segments of ' +
      '~1/4 run, sealed and replaced by the background-prepared spare inside the timed part)',
  );
  if (rows.length > 0)
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
  console.log(`segments sealed (spare taken) inside timed parts: ${rotations}`);
  console.log(
    `open of a ${OPEN_RECORDS}-record log (${OPEN_RECORD_BYTES}-byte records), medians of ${plan.reps}:`,
  );
  printTable(['segment', 'state', 'Wal.open ms', 'raw read of the data ms'], openRows);
  if (rows.length > 0) {
    console.log(
      `ratios (1 KiB): groupCommitVsRaw ${verdict(ratios.groupCommitVsRaw!, 0.9, '>=')}, ` +
        `noSyncVsRaw ${verdict(ratios.noSyncVsRaw!, 0.7, '>=')}, syncP50VsRaw ${verdict(ratios.syncP50VsRaw!, 1.3, '<=')}, ` +
        `groupCommitVsLevel ${verdict(ratios.groupCommitVsLevel!, 3, '>=')}`,
    );
  }
  console.log(JSON.stringify({ bench: 'wal', metrics, baseline, ratios }));
}
