/**
 * The spare segment (the next segment prepared in the background), open-time error wrapping and
 * the recovery checks added with them: crash safety of rotating through the spare, failures of
 * the background work latching the log, leftovers, and typed errors from `Wal.open`.
 */
import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { CairnError, isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { type CrashPolicy, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import { SEGMENT_HEADER_BYTES } from '../../src/wal/segmentFile.ts';
import { SPARE_SEGMENT_NAME } from '../../src/wal/spareSegment.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor, tempDir, WrappingFileSystem } from './helpers.ts';

const DIR = '/node/wal';
const SEGMENT_BYTES = 2048;

/** Lets background work (slices, off-thread syncs) run. */
async function turns(n = 30): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

test('a full segment is sealed by renaming the prepared spare, without a zero-fill on the commit path', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const fs = new WrappingFileSystem();
    const wal = await Wal.open({ fs, dir, segmentBytes: 64 * 1024 });
    // Past half of the first segment: the spare is prepared in the background.
    for (let i = 0; i < 40; i++) wal.append([payloadFor(i, 1000)]);
    await wal.sync();
    await turns();
    assert.ok(nodeFs.existsSync(path.join(dir, SPARE_SEGMENT_NAME)), 'spare prepared');
    fs.recordEvents = true;
    for (let i = 40; i < 100; i++) wal.append([payloadFor(i, 1000)]);
    await wal.sync();
    const calls = fs.events.filter((e) => e.phase === 'start');
    assert.ok(
      calls.some((e) => e.call === 'rename' && e.path.endsWith(SPARE_SEGMENT_NAME)),
      'the spare became the next segment',
    );
    assert.ok(
      !calls.some((e) => e.call === 'allocate' && e.path.endsWith('.wal')),
      'no segment was zero-filled while records waited',
    );
    assert.equal(wal.segments().length, 2);
    await wal.close();
    const kept = path.join(dir, SPARE_SEGMENT_NAME);
    if (nodeFs.existsSync(kept)) {
      // A ready spare is kept by a clean close (for the next open); it is a full segment of zeros.
      const bytes = nodeFs.readFileSync(kept);
      assert.ok(bytes.byteLength === 64 * 1024 && bytes.every((b) => b === 0), 'a kept spare is all zeros');
    }
    const again = await Wal.open({ fs, dir, segmentBytes: 64 * 1024 });
    assert.equal(again.nextIndex, 100);
    for (const { index, payload } of again.iterate()) assert.ok(bytesEqual(payload, payloadFor(index, 1000)));
    again.verify();
    await again.close();
  } finally {
    cleanup();
  }
});

test('a leftover spare (crash, garbage) is deleted at open and never read as log data', async () => {
  const fs = new SimulatedFileSystem({ seed: 5 });
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES });
  wal.append([payloadFor(0, 100)]);
  await wal.sync();
  await wal.close();
  fs.writeFileBytes(`${DIR}/${SPARE_SEGMENT_NAME}`, new Uint8Array(SEGMENT_BYTES).fill(0x5a));
  const again = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES });
  assert.equal(again.nextIndex, 1);
  assert.ok(!fs.exists(`${DIR}/${SPARE_SEGMENT_NAME}`));
  await again.close();
});

test('a failed spare preparation latches the log with an IO_FATAL naming the spare', async () => {
  const fs = new SimulatedFileSystem({ seed: 6 });
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES });
  const fault = fs.injectFault({ op: 'syncAsync', nth: 1, error: 'EIO', pathIncludes: SPARE_SEGMENT_NAME });
  const err = await (async () => {
    for (let i = 0; i < 40; i++) {
      wal.append([payloadFor(i, 100)]);
      await wal.sync();
    }
  })().then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.equal(fault.firedCount, 1);
  assert.ok(isCairnError(err, 'IO_FATAL'), `got ${String(err)}`);
  assert.match((err as CairnError).message, new RegExp(SPARE_SEGMENT_NAME));
  assert.throws(
    () => wal.append([payloadFor(99, 1)]),
    (e: unknown) => e === err,
  );
  await assert.rejects(wal.close(), (e: unknown) => e === err);
});

test('power loss at every call of a workload rotating through spares loses no acknowledged record', async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  // The workload: appends of varied sizes, each batch awaited (acked), with segment rotations.
  const workload = async (fs: SimulatedFileSystem, acked: { next: number }): Promise<void> => {
    const rng = new Rng(seed);
    const wal = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES, syncOffThread: rng.bool(0.5) });
    for (let i = 0; i < 60; ) {
      const n = rng.int(1, 4);
      const batch = Array.from({ length: n }, (_, k) => payloadFor(i + k, rng.int(10, 300)));
      // Payload sizes depend on the index only through payloadFor's content; keep them recoverable.
      wal.append(batch);
      await wal.sync();
      i += n;
      acked.next = i;
    }
    await wal.close();
  };
  const probe = new SimulatedFileSystem({ seed });
  await workload(probe, { next: 0 });
  const mutations = probe.mutationCount;
  assert.ok(probe.opCounts.rename > 0, 'the workload rotated through at least one spare');
  const policies: CrashPolicy[] = [
    {},
    { data: 'torn', dirOps: 'random' },
    { data: 'drop', dirOps: 'prefix' },
  ];
  let states = 0;
  for (let k = 1; k <= mutations; k++) {
    for (const policy of policies) {
      const fs = new SimulatedFileSystem({ seed });
      fs.crashAfter(k, policy);
      const acked = { next: 0 };
      await workload(fs, acked).catch((err: unknown) => {
        if (!fs.crashed) throw err;
      });
      const image = fs.crashedImage();
      const where = `crash after mutation ${k}/${mutations} (CAIRN_SEED=${seed})`;
      const wal = await Wal.open({ fs: image, dir: DIR, segmentBytes: SEGMENT_BYTES });
      assert.ok(wal.nextIndex >= acked.next, `${where}: acked ${acked.next}, recovered ${wal.nextIndex}`);
      assert.equal(wal.firstIndex, 0, where);
      wal.verify();
      const spare = `${DIR}/${SPARE_SEGMENT_NAME}`;
      if (image.exists(spare)) {
        // Only a spare kept by a completed clean close is adopted; it is a full segment of zeros.
        const bytes = image.readFileBytes(spare);
        assert.ok(
          bytes.byteLength === SEGMENT_BYTES && bytes.every((b) => b === 0),
          `${where}: leftover spare not removed`,
        );
      }
      await wal.close();
      states++;
    }
  }
  console.log(`spare rotation: ${mutations} mutations, ${states} crash states`);
});

test('Wal.open turns raw OS errors (readdir EIO) into IO_FATAL naming the directory', async () => {
  const fs = new SimulatedFileSystem({ seed: 7 });
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES });
  await wal.close();
  fs.injectFault({ op: 'readdir', nth: 1, error: 'EIO' });
  const err = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof CairnError, `raw error escaped: ${String(err)}`);
  assert.equal(err.code, 'IO_FATAL');
  assert.equal(err.details.file, DIR);
  assert.match(err.message, /opening WAL \/node\/wal failed \(EIO\)/);
  // The same for a failing mkdir of a brand-new log.
  const fresh = new SimulatedFileSystem({ seed: 8 });
  fresh.injectFault({ op: 'mkdir', nth: 1, error: 'EACCES' });
  await assert.rejects(Wal.open({ fs: fresh, dir: DIR }), (e: unknown) => isCairnError(e, 'IO_FATAL'));
});

test('a damaged record of the tail followed by intact records fails loudly instead of being cut as torn', async () => {
  const fs = new SimulatedFileSystem({ seed: 9 });
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
  for (let i = 0; i < 10; i++) wal.append([payloadFor(i, 200)]);
  await wal.sync();
  await wal.close();
  const tail = `${DIR}/00000000000000000000.wal`;
  // Record 3 starts after the header and three frames of 200 payload bytes; flip a payload bit.
  const frameBytes = FRAME_HEADER_BYTES + 200;
  fs.flipBit(tail, SEGMENT_HEADER_BYTES + 3 * frameBytes + 40, 2);
  const err = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(isCairnError(err, 'WAL_CORRUPT'), `got ${String(err)}`);
  assert.equal(err.details.file, tail);
  assert.equal(err.details.offset, SEGMENT_HEADER_BYTES + 3 * frameBytes);
  assert.match(
    err.message,
    /record 3\b.*(record 4 at offset \d+ after it is intact|below the durable marker)/,
  );
});

test('a non-zero reserved byte in a segment header is corruption, not ignored', async () => {
  const fs = new SimulatedFileSystem({ seed: 10 });
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES });
  for (let i = 0; i < 30; i++) wal.append([payloadFor(i, 200)]);
  await wal.sync();
  await wal.close();
  fs.flipBit(`${DIR}/00000000000000000000.wal`, 29, 0);
  await assert.rejects(
    Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES }),
    (e: unknown) => isCairnError(e, 'WAL_CORRUPT') && /reserved header bytes/.test((e as Error).message),
  );
});

test("spareSegment 'always-ready': a spare from open, flushed slice by slice, and a new one after each seal", async () => {
  const { dir, cleanup } = tempDir();
  try {
    const fs = new WrappingFileSystem();
    fs.recordEvents = true;
    const segmentBytes = 1024 * 1024;
    const spareSyncsDone = () =>
      fs.events.filter(
        (e) => e.phase === 'end' && e.call === 'syncAsync' && e.path.endsWith(SPARE_SEGMENT_NAME),
      ).length;
    const wal = await Wal.open({ fs, dir, segmentBytes, spareSegment: 'always-ready' });
    // Thread-pool fsyncs take real time: wait (bounded) for the four slices of the spare.
    for (let i = 0; i < 1000 && spareSyncsDone() < 4; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(
      nodeFs.existsSync(path.join(dir, SPARE_SEGMENT_NAME)),
      'spare prepared at open, before any append',
    );
    const spareCalls = fs.events.filter((e) => e.phase === 'start' && e.path.endsWith(SPARE_SEGMENT_NAME));
    const allocations = spareCalls.filter((e) => e.call === 'allocate').length;
    const syncs = spareCalls.filter((e) => e.call === 'syncAsync').length;
    assert.equal(allocations, segmentBytes / (256 * 1024), 'zeros written in 256 KiB slices');
    assert.equal(syncs, allocations, 'each slice flushed before the next');
    // Fill the first segment completely: the seal renames the spare and starts the next one at once.
    for (let i = 0; i < 1100; i++) wal.append([payloadFor(i, 1000)]);
    await wal.sync();
    assert.equal(wal.segments().length, 2);
    for (let i = 0; i < 1000 && spareSyncsDone() < 8; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(spareSyncsDone(), 8, 'a new spare prepared right after the seal');
    assert.ok(nodeFs.existsSync(path.join(dir, SPARE_SEGMENT_NAME)));
    await wal.close();
    const again = await Wal.open({ fs, dir, segmentBytes, spareSegment: 'always-ready' });
    assert.equal(again.nextIndex, 1100);
    again.verify();
    await again.close();
  } finally {
    cleanup();
  }
});

test('an unknown spareSegment mode is refused', async () => {
  const { dir, cleanup } = tempDir();
  try {
    await assert.rejects(
      Wal.open({ fs: new WrappingFileSystem(), dir, spareSegment: 'sometimes' as 'always-ready' }),
      (err: unknown) => isCairnError(err) && err.code === 'INVALID_ARGUMENT',
    );
  } finally {
    cleanup();
  }
});
