/**
 * Review of WAL frame format v2 (issue #9, finding F1): attacks on the torn-tail decision and on
 * the search for intact frames past damage.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { FileHandle, FileSystem, OpenOptions } from '../../src/io/fileSystem.ts';
import { readAt } from '../../src/io/fileSystem.ts';
import { crc32c } from '../../src/lib/crc32c.ts';
import { CairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { encodeFrame, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES_V1 } from '../../src/wal/frame.ts';
import { checkSalvageable, planSalvage } from '../../src/wal/salvage.ts';
import {
  decodeSegmentHeader,
  encodeSegmentHeader,
  findIntactFramesAfter,
  type IntactFrameSearch,
  type IntactFramesAfter,
  SEGMENT_HEADER_BYTES,
  scanSegment,
  segmentFileName,
} from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';
import { WrappingFileSystem, writeV1Segment } from './helpers.ts';

const DIR = '/wal';
const TAIL = `${DIR}/${segmentFileName(0)}`;

/**
 * Payload bytes are the caller's (in a blockchain: transactions anyone can send). A payload full of
 * fake frame headers (plausible index, a length reaching to the end of the file, wrong CRC) sits in
 * a record that a power cut tears. The search for intact frames past the damage tries every byte
 * offset in the torn record, and checksummed each candidate's whole claimed length: quadratic, a
 * node that never finishes opening. The work must stay a small multiple of the file size.
 */
test('the search past a torn record full of fake headers with huge lengths reads a bounded amount', async () => {
  const fileBytes = 8 * 1024 * 1024;
  const sim = new SimulatedFileSystem({ seed: 1 });
  const bytes = new Uint8Array(fileBytes);
  bytes.set(encodeSegmentHeader(0), 0);
  const first = encodeFrame(0, new Uint8Array(100).fill(7), 0);
  bytes.set(first, SEGMENT_HEADER_BYTES);
  const tornAt = SEGMENT_HEADER_BYTES + first.byteLength;
  const evil = new Uint8Array(64 * 1024);
  const view = new DataView(evil.buffer);
  for (let p = 0; p + FRAME_HEADER_BYTES <= evil.byteLength; p += FRAME_HEADER_BYTES) {
    const at = tornAt + FRAME_HEADER_BYTES + p;
    view.setUint32(p, 0x12345678, true); // a CRC that will not match
    view.setUint32(p + 4, fileBytes - at - FRAME_HEADER_BYTES - 1, true); // reaches the last byte
    view.setUint32(p + 8, 2, true); // index 2: plausible at this position
    view.setUint32(p + 16, 0, true); // syncedNext 0
  }
  const torn = encodeFrame(1, evil, 1);
  torn[40] = torn[40]! ^ 0x01; // one flipped bit: the record is torn
  bytes.set(torn, tornAt);
  bytes[fileBytes - 1] = 0xee; // a garbled byte at the end: the search reads all the way
  sim.writeFileBytes(TAIL, bytes);

  const fs = new WrappingFileSystem(sim);
  const budget = 8 * fileBytes;
  fs.failWhen = (call) =>
    call === 'read' && fs.bytesRead > budget
      ? new Error(`read ${fs.bytesRead} bytes, budget ${budget}`)
      : undefined;
  const warnings: string[] = [];
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: fileBytes, onWarning: (m) => warnings.push(m) });
  try {
    assert.deepEqual([wal.firstIndex, wal.nextIndex], [0, 1]);
    assert.ok(
      warnings.some((w) => w.includes('torn tail')),
      warnings.join('\n'),
    );
  } finally {
    await wal.close();
  }
});

/** The search as it was written before (every candidate checksummed over its whole length), in memory. */
function naiveIntactFrames(bytes: Uint8Array, search: IntactFrameSearch): IntactFramesAfter {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const result: IntactFramesAfter = { first: undefined, highest: undefined, count: 0 };
  let end = bytes.byteLength;
  while (end > search.from && bytes[end - 1] === 0) end--;
  let at = search.from;
  while (at < end && at + FRAME_HEADER_BYTES <= search.fileBytes) {
    const index = view.getUint32(at + 12, true) * 2 ** 32 + view.getUint32(at + 8, true);
    const syncedNext = view.getUint32(at + 20, true) * 2 ** 32 + view.getUint32(at + 16, true);
    const frameEnd = at + FRAME_HEADER_BYTES + view.getUint32(at + 4, true);
    const plausible =
      view.getUint32(at + 12, true) < 0x20_0000 &&
      view.getUint32(at + 20, true) < 0x20_0000 &&
      index >= search.minIndex &&
      index <= search.segmentFirstIndex + Math.floor((at - SEGMENT_HEADER_BYTES) / FRAME_HEADER_BYTES) &&
      frameEnd <= search.fileBytes &&
      syncedNext <= index;
    if (!plausible || crc32c(bytes.subarray(at + 4, frameEnd), search.salt) !== view.getUint32(at, true)) {
      at++;
      continue;
    }
    const frame = { offset: at, index, syncedNext };
    result.count++;
    result.first ??= frame;
    if (result.highest === undefined || syncedNext > result.highest.syncedNext) result.highest = frame;
    if (syncedNext > search.stopAboveSyncedNext) return result;
    at = frameEnd;
  }
  return result;
}

/**
 * The bounded search must find exactly what checksumming every candidate in full finds: frames
 * spanning the 1 MiB read chunks, frames whose payload runs into the zeros past the last non-zero
 * byte, frames starting at any byte offset, garbage in between.
 */
test('the bounded search finds the same intact frames as a full checksum of every candidate', () => {
  const seed = seedFromEnv();
  console.log(`frameV2Review search equivalence: CAIRN_SEED=${seed}`);
  const rng = new Rng(seed);
  for (let trial = 0; trial < 6; trial++) {
    const fileBytes = rng.int(64 * 1024, 2_200_000);
    const bytes = new Uint8Array(fileBytes);
    // Version 3 with a random salt (the search seeds its CRC algebra with it); 0 now and then, which
    // is the unseeded CRC of version 2.
    const salt = rng.bool(0.2) ? 0 : rng.nextU32();
    bytes.set(encodeSegmentHeader(0, 3, salt), 0);
    let at = SEGMENT_HEADER_BYTES + rng.int(0, 64);
    let index = 1;
    while (at < fileBytes) {
      const kind = rng.int(0, 10);
      if (kind < 2) {
        at += rng.int(1, 5000); // a hole (zeros) or garbage
        // (A hole may reach past the end: nothing to write then; set() refuses an offset past it.)
        if (rng.bool() && at < fileBytes) bytes.set(rng.bytes(Math.min(300, fileBytes - at)), at);
        continue;
      }
      const big = rng.bool(0.1);
      const payload = rng.bytes(big ? rng.int(300_000, 700_000) : rng.int(0, 3000));
      if (rng.bool(0.3)) payload.fill(0, rng.int(0, payload.byteLength + 1)); // ends in zeros
      // Now and then a frame sealed with another salt: never intact in this segment.
      const foreign = rng.bool(0.1);
      const frame = encodeFrame(index, payload, rng.int(0, index + 1), 3, foreign ? salt ^ 1 : salt);
      if (at + frame.byteLength > fileBytes) break;
      bytes.set(frame, at);
      if (rng.bool(0.2)) {
        const hit = at + rng.int(0, frame.byteLength);
        bytes[hit] = bytes[hit]! ^ (1 << rng.int(0, 8));
      }
      at += frame.byteLength;
      index += rng.int(1, 3);
    }
    const sim = new SimulatedFileSystem({ seed });
    sim.writeFileBytes('/seg', bytes);
    const handle = sim.open('/seg', { readOnly: true });
    try {
      for (let probe = 0; probe < 4; probe++) {
        const search: IntactFrameSearch = {
          from: SEGMENT_HEADER_BYTES + rng.int(0, 2000),
          minIndex: rng.int(0, 4),
          fileBytes,
          segmentFirstIndex: 0,
          format: 3,
          salt,
          stopAboveSyncedNext: rng.bool(0.5) ? Number.MAX_SAFE_INTEGER : rng.int(0, index),
        };
        assert.deepEqual(
          findIntactFramesAfter(handle, search),
          naiveIntactFrames(bytes, search),
          `trial ${trial} probe ${probe} (CAIRN_SEED=${seed})`,
        );
      }
    } finally {
      handle.close();
    }
  }
});

/** The last segment file of `dir` and the byte offset of each frame in it (either format). */
function tailFrames(
  fs: SimulatedFileSystem,
  dir: string,
): { file: string; offsets: number[]; format: number } {
  const names = fs
    .readdir(dir)
    .filter((n) => n.endsWith('.wal'))
    .sort();
  const file = `${dir}/${names.at(-1)!}`;
  const bytes = fs.readFileBytes(file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = view.getUint32(8, true);
  const headerBytes = format === 1 ? FRAME_HEADER_BYTES_V1 : FRAME_HEADER_BYTES;
  const offsets: number[] = [];
  for (let at = SEGMENT_HEADER_BYTES; at + headerBytes <= bytes.byteLength; ) {
    const length = view.getUint32(at + 4, true);
    if (view.getUint32(at, true) === 0 && length === 0) break;
    offsets.push(at);
    at += headerBytes + length;
  }
  return { file, offsets, format };
}

/**
 * The upgrade path: a log written by the previous build (a version-1 tail) is opened by this one,
 * which appends and acknowledges records, then writes three more and loses power before their
 * fsync. Page writeback kept the later records' pages and zeroed one page of the first (a state
 * the page-subset model produces). Nothing acknowledged is damaged, so the log must open with a
 * torn tail. Before the fix the new records went into the version-1 tail, whose frames carry no
 * syncedNext, and the old rule refused the log (WAL_CORRUPT): finding F1, alive after the upgrade
 * until 64 MiB more had been written.
 */
test('after the upgrade, an ordinary power cut in the records this build appended is a torn tail', async () => {
  const sim = new SimulatedFileSystem({ seed: 21 });
  const dir = '/upgrade';
  const segmentBytes = 1024 * 1024;
  const payload = (i: number, n = 300): Uint8Array => new Uint8Array(n).fill(i + 1);
  writeV1Segment(
    sim,
    dir,
    0,
    [0, 1, 2, 3, 4].map((i) => payload(i)),
    segmentBytes,
  );
  const wal = await Wal.open({ fs: sim, dir, segmentBytes });
  for (let i = 5; i < 10; i++) wal.append([payload(i)]);
  await wal.sync(); // records 0..9 acknowledged
  sim.crashAfter(sim.mutationCount + 1, { data: 'keep', dirOps: 'keep' }); // after the writev
  wal.append([payload(10, 9000), payload(11, 9000), payload(12, 9000)]);
  await wal.sync().then(
    () => assert.fail('the power cut should have failed the sync'),
    () => undefined,
  );
  const image = sim.crashedImage();
  const tail = tailFrames(image, dir);
  const tornStart = tail.offsets.at(-3)!; // record 10
  image.zeroPage(tail.file, Math.ceil(tornStart / 4096)); // a page inside record 10 only

  const warnings: string[] = [];
  const reopened = await Wal.open({ fs: image, dir, segmentBytes, onWarning: (m) => warnings.push(m) });
  try {
    assert.equal(reopened.nextIndex, 10, 'records 0..9 kept, the torn 10..12 cut');
    for (let i = 0; i < 10; i++) assert.deepEqual(reopened.read(i), payload(i));
    assert.ok(
      warnings.some((w) => w.includes('torn tail')),
      warnings.join('\n'),
    );
  } finally {
    await reopened.close();
  }
});

/** A u64 field written as two u32 halves (values up to 2^64 - 1, as BigInt). */
function setU64(view: DataView, at: number, value: bigint): void {
  view.setBigUint64(at, value, true);
}

/**
 * Version-2 header extremes behind a VALID checksum (the decoder fuzz mutates bytes but never
 * re-checksums frames, so these never reached the decision): length 0 / 2^32 - 1, index and
 * syncedNext at 2^32, 2^53 - 1, 2^53, 2^64 - 1, syncedNext above the frame's own index. Frame k of a
 * valid log is replaced by such a frame (re-checksummed where its length stays inside the file),
 * optionally after a torn frame k - 1. Scan, search and a writable open: typed errors only, a forged
 * frame never counts as an intact record or as proof (its syncedNext exceeds its index or 2^53), and
 * whatever opens reads back.
 */
test('version-2 frames with extreme lengths, indexes and syncedNext behind a valid checksum', async () => {
  const seed = seedFromEnv();
  console.log(`frameV2Review header extremes: CAIRN_SEED=${seed}`);
  const u64Edge = (k: number): fc.Arbitrary<bigint> =>
    fc.oneof(
      fc.constantFrom(
        0n,
        BigInt(Math.max(0, k - 1)),
        BigInt(k),
        BigInt(k + 1),
        2n ** 32n - 1n,
        2n ** 32n,
        2n ** 53n - 1n,
        2n ** 53n,
        2n ** 64n - 1n,
      ),
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    );
  const lengthEdge = fc.oneof(
    fc.constantFrom(0, 1, 0xffffffff, 0x7fffffff),
    fc.integer({ min: 0, max: 400 }),
  );
  const scenario = fc.integer({ min: 1, max: 6 }).chain((k) =>
    fc.record({
      k: fc.constant(k),
      index: u64Edge(k),
      synced: u64Edge(k),
      length: lengthEdge,
      tornBefore: fc.boolean(),
    }),
  );
  await fc.assert(
    fc.asyncProperty(scenario, async ({ k, index, synced, length, tornBefore }) => {
      const count = 8;
      const frames = Array.from({ length: count }, (_, i) =>
        encodeFrame(i, new Uint8Array(40).fill(i + 1), 0),
      );
      const forged = new Uint8Array(FRAME_HEADER_BYTES + 40);
      forged.set(frames[k]!);
      const fv = new DataView(forged.buffer);
      fv.setUint32(4, length, true);
      setU64(fv, 8, index);
      setU64(fv, 16, synced);
      frames[k] = forged;
      const fileBytes = 64 * 1024;
      const bytes = new Uint8Array(fileBytes);
      bytes.set(encodeSegmentHeader(0), 0);
      let at = SEGMENT_HEADER_BYTES;
      const offsets: number[] = [];
      for (const f of frames) {
        offsets.push(at);
        bytes.set(f, at);
        at += f.byteLength;
      }
      const forgedAt = offsets[k]!;
      const end = forgedAt + FRAME_HEADER_BYTES + length;
      if (end <= fileBytes) {
        new DataView(bytes.buffer).setUint32(forgedAt, crc32c(bytes.subarray(forgedAt + 4, end)), true);
      }
      if (tornBefore) {
        const hit = offsets[k - 1]! + 30;
        bytes[hit] = bytes[hit]! ^ 0x40;
      }
      const sim = new SimulatedFileSystem({ seed: 3 });
      sim.writeFileBytes(TAIL, bytes);
      const forgedIsSane = synced <= index && index < 2n ** 53n;

      const h = sim.open(TAIL, { readOnly: true });
      try {
        const scan = scanSegment(h, 0, fileBytes, { format: 2, salt: 0 });
        for (const off of scan.offsets) {
          const v = new DataView(bytes.buffer, off);
          assert.ok(
            v.getBigUint64(16, true) <= v.getBigUint64(8, true),
            `accepted a frame at ${off} claiming too much`,
          );
        }
        if (scan.defect) {
          const found = findIntactFramesAfter(h, {
            from: scan.defect.offset + 1,
            minIndex: scan.offsets.length + 1,
            fileBytes,
            segmentFirstIndex: 0,
            format: 2,
            salt: 0,
            stopAboveSyncedNext: scan.offsets.length,
          });
          for (const f of [found.first, found.highest]) {
            if (f === undefined) continue;
            assert.ok(f.syncedNext <= f.index && Number.isSafeInteger(f.index));
            if (f.offset === forgedAt) assert.ok(forgedIsSane, 'a forged frame was taken as intact');
          }
        }
      } finally {
        h.close();
      }

      // Every genuine frame says nothing was fsynced (syncedNext 0): damage is a torn tail unless the
      // forged frame serves as proof, which only a sane one (syncedNext <= index < 2^53) may.
      const opened = await Wal.open({ fs: sim, dir: DIR, segmentBytes: fileBytes }).catch((err: unknown) => {
        assert.ok(err instanceof CairnError, `untyped: ${String(err)}`);
        assert.equal(err.code, 'WAL_CORRUPT', err.message);
        assert.ok(forgedIsSane, `refused on an insane forged frame: ${err.message}`);
        return undefined;
      });
      if (opened === undefined) return;
      try {
        for (let i = opened.firstIndex; i < opened.nextIndex; i++) opened.read(i);
        if (!forgedIsSane) assert.equal(opened.nextIndex, tornBefore ? k - 1 : k);
        else assert.ok(opened.nextIndex <= count);
      } finally {
        await opened.close();
      }
    }),
    { seed, numRuns: 150 },
  );
});

/**
 * End of the contiguous run of records that a power cut keeping only fsynced data and directory
 * entries would leave (from the lowest surviving segment on).
 */
function durableEnd(sim: SimulatedFileSystem, dir: string): { first: number; end: number } {
  const image = sim.crashImage({ data: 'drop', dirOps: 'drop' });
  if (!image.exists(dir)) return { first: 0, end: 0 };
  const names = image
    .readdir(dir)
    .filter((n) => /^\d{20}\.wal$/.test(n))
    .sort();
  let first: number | undefined;
  let expected = 0;
  for (const name of names) {
    const h = image.open(`${dir}/${name}`, { readOnly: true });
    try {
      const header = decodeSegmentHeader(readAt(h, 0, SEGMENT_HEADER_BYTES));
      if ('problem' in header) break;
      if (first === undefined) {
        first = header.firstIndex;
        expected = first;
      } else if (header.firstIndex !== expected) break;
      const scan = scanSegment(h, header.firstIndex, h.size(), header);
      expected = header.firstIndex + scan.offsets.length;
      if (scan.defect) break;
    } finally {
      h.close();
    }
  }
  return { first: first ?? 0, end: expected };
}

/**
 * A view of `sim` that, before every write of version-2 frames to a segment, checks that each
 * frame's syncedNext is backed by what is fsynced right now.
 */
function checkingFs(sim: SimulatedFileSystem, dir: string, onClaim: (message: string) => void): FileSystem {
  const check = (file: string, buffers: readonly Uint8Array[], position: number): void => {
    if (position === 0 || !file.endsWith('.wal')) return;
    const current = sim.readFileBytes(file);
    if (new DataView(current.buffer, current.byteOffset).getUint32(8, true) !== 2) return;
    const bytes = Buffer.concat(buffers.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let durable: { first: number; end: number } | undefined;
    for (let at = 0; at + FRAME_HEADER_BYTES <= bytes.byteLength; ) {
      const index = Number(view.getBigUint64(at + 8, true));
      const synced = Number(view.getBigUint64(at + 16, true));
      durable ??= durableEnd(sim, dir);
      if (synced > durable.first && synced > durable.end) {
        onClaim(
          `frame ${index} written to ${file} at ${position + at} claims records below ${synced} fsynced, ` +
            `but only [${durable.first}, ${durable.end}) survive a power cut now`,
        );
      }
      at += FRAME_HEADER_BYTES + view.getUint32(at + 4, true);
    }
  };
  return new Proxy(sim, {
    get(target, prop) {
      if (prop === 'open') {
        return (file: string, options?: OpenOptions): FileHandle => {
          const handle = target.open(file, options);
          return new Proxy(handle, {
            get(h, hp) {
              if (hp === 'writev') {
                return (buffers: readonly Uint8Array[], position: number): number => {
                  check(file, buffers, position);
                  return h.writev(buffers, position);
                };
              }
              const value = Reflect.get(h, hp, h);
              return typeof value === 'function' ? value.bind(h) : value;
            },
          });
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as FileSystem;
}

/**
 * No frame may claim more than is really fsynced. A random workload over every path that changes
 * the log's range (appends with and without sync, syncs in flight off-thread, truncateBack below
 * and above the synced point, truncateFront, reset forward, rotation with preallocated segments and
 * the always-ready spare, close and reopen, kill and reopen); at every write of frames, each frame's
 * syncedNext is compared with what a power cut keeping only fsynced data would leave at that moment.
 */
test('no frame is written claiming records fsynced that a power cut keeping only synced data would lose', async () => {
  const seed = seedFromEnv();
  console.log(`frameV2Review syncedNext bound: CAIRN_SEED=${seed}`);
  const rng = new Rng(seed);
  const claims: string[] = [];
  let writesChecked = 0;
  for (let run = 0; run < 6 && claims.length === 0; run++) {
    const production = run % 2 === 1;
    const options = {
      dir: DIR,
      segmentBytes: rng.bool() ? 4096 : 128 * 1024,
      syncOffThread: rng.bool(),
      ...(run % 3 === 2 ? { durability: { mode: 'none' as const } } : {}),
      ...(production ? { preallocate: true, spareSegment: 'always-ready' as const } : {}),
    };
    let sim = new SimulatedFileSystem({ seed: rng.nextU32() });
    const view = (s: SimulatedFileSystem): FileSystem =>
      checkingFs(s, DIR, (m) => claims.push(`run ${run}: ${m} (CAIRN_SEED=${seed})`));
    let wal = await Wal.open({ fs: view(sim), ...options });
    const inFlight: Promise<unknown>[] = [];
    for (let step = 0; step < 40 && claims.length === 0; step++) {
      const op = rng.int(0, 11);
      if (op === 10) {
        // More than the write threshold without a sync: frames go to the file before any fsync.
        for (let i = 0; i < 150; i++) wal.append([new Uint8Array(2048).fill(step)]);
        writesChecked += 150;
      } else if (op <= 3) {
        const n = rng.int(1, 6);
        for (let i = 0; i < n; i++) wal.append([new Uint8Array(rng.int(1, 700)).fill(step)]);
        writesChecked += n;
        const synced = wal.sync();
        if (rng.bool(0.5)) await synced;
        else inFlight.push(synced.catch(() => undefined));
      } else if (op === 4 && wal.nextIndex > wal.firstIndex) {
        await wal.truncateBack(rng.int(wal.firstIndex, wal.nextIndex));
      } else if (op === 5 && wal.nextIndex > wal.firstIndex) {
        await wal.truncateFront(rng.int(wal.firstIndex, wal.nextIndex + 1));
      } else if (op === 6) {
        await wal.reset(wal.nextIndex + rng.int(0, 5));
      } else if (op === 7) {
        await Promise.all(inFlight.splice(0));
        await wal.close();
        wal = await Wal.open({ fs: view(sim), ...options });
      } else if (op === 8) {
        sim = sim.kill();
        inFlight.splice(0);
        wal = await Wal.open({ fs: view(sim), ...options });
      } else {
        await Promise.all(inFlight.splice(0));
      }
    }
    await Promise.all(inFlight.splice(0));
    await wal.close();
  }
  assert.deepEqual(claims, []);
  assert.ok(writesChecked > 100, `only ${writesChecked} records written`);
});

/**
 * A mixed log (a sealed version-1 segment of an earlier build, then version-2 segments of this one):
 * verify, the read-only open that inspect uses, and salvage's plan read each segment in its own
 * format; damage in the sealed version-1 segment is corruption that salvage refuses below the
 * durable marker.
 */
test('a mixed version-1/version-3 log: verify, read-only open and salvage read each segment in its format', async () => {
  const sim = new SimulatedFileSystem({ seed: 31 });
  const dir = '/mixed';
  const segmentBytes = 64 * 1024;
  const payload = (i: number): Uint8Array => new Uint8Array(100 + i).fill(i + 1);
  writeV1Segment(sim, dir, 0, [0, 1, 2, 3, 4].map(payload), segmentBytes);
  const wal = await Wal.open({ fs: sim, dir, segmentBytes });
  for (let i = 5; i < 10; i++) wal.append([payload(i)]);
  await wal.sync();
  await wal.close();

  const ro = await Wal.open({ fs: sim, dir, segmentBytes, readOnly: true });
  try {
    assert.deepEqual(
      ro.segments().map((s) => [s.firstIndex, s.nextIndex, s.formatVersion]),
      [
        [0, 5, 1],
        [5, 10, 3],
      ],
    );
    ro.verify();
    for (let i = 0; i < 10; i++) assert.deepEqual(ro.read(i), payload(i));
  } finally {
    await ro.close();
  }
  assert.equal(planSalvage(sim, dir).cut, undefined, 'a healthy mixed log needs no salvage');

  const v1File = `${dir}/${segmentFileName(0)}`;
  sim.flipBit(v1File, SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES_V1 + 100) + 20, 3); // in record 2
  await assert.rejects(
    Wal.open({ fs: sim, dir, segmentBytes }),
    (e) => e instanceof CairnError && e.code === 'WAL_CORRUPT',
  );
  const plan = planSalvage(sim, dir);
  assert.equal(plan.cut?.file, v1File);
  assert.equal(plan.cut?.index, 2);
  assert.deepEqual(plan.cut?.laterSegments, [`${dir}/${segmentFileName(5)}`]);
  assert.throws(
    () => checkSalvageable(plan),
    (e) => e instanceof CairnError && e.code === 'WAL_CORRUPT',
  );
});

/**
 * truncateBack into a sealed version-1 segment makes it the tail again. Records appended after that
 * must not go to it as version-1 frames: those carry no syncedNext, and finding F1 (an ordinary power
 * cut refused as WAL_CORRUPT) would be back for that segment until it filled.
 */
test('after truncateBack into a sealed version-1 segment, new records go to a version-3 segment', async () => {
  const sim = new SimulatedFileSystem({ seed: 41 });
  const dir = '/back';
  const segmentBytes = 64 * 1024;
  const payload = (i: number, n = 100): Uint8Array => new Uint8Array(n).fill(i + 1);
  writeV1Segment(
    sim,
    dir,
    0,
    [0, 1, 2, 3, 4].map((i) => payload(i)),
    segmentBytes,
  );
  const wal = await Wal.open({ fs: sim, dir, segmentBytes });
  for (let i = 5; i < 8; i++) wal.append([payload(i)]);
  await wal.sync();
  await wal.truncateBack(3);
  for (let i = 3; i < 6; i++) wal.append([payload(i + 100)]);
  await wal.sync(); // records 0..5 acknowledged
  const formats = wal.segments().map((s) => [s.firstIndex, s.nextIndex, s.formatVersion]);
  assert.deepEqual(formats.at(-1), [3, 6, 3], JSON.stringify(formats));

  // And the consequence: three more records, power cut before their fsync, a page of the first lost.
  sim.crashAfter(sim.mutationCount + 1, { data: 'keep', dirOps: 'keep' });
  wal.append([payload(6, 9000), payload(7, 9000), payload(8, 9000)]);
  await wal.sync().then(
    () => assert.fail('the power cut should have failed the sync'),
    () => undefined,
  );
  const image = sim.crashedImage();
  const tail = tailFrames(image, dir);
  image.zeroPage(tail.file, Math.ceil(tail.offsets.at(-3)! / 4096));
  const reopened = await Wal.open({ fs: image, dir, segmentBytes });
  try {
    assert.equal(reopened.nextIndex, 6);
    for (let i = 3; i < 6; i++) assert.deepEqual(reopened.read(i), payload(i + 100));
  } finally {
    await reopened.close();
  }
});
