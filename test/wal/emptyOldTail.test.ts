/**
 * Review (rrev2): an EMPTY tail segment of an earlier build (format 1 or 2) was kept at the first
 * writable open ("nothing to seal"), and a truncateBack that cut an old-format segment back to its
 * very start left it the tail: either way this build went on writing records in the old format
 * (version 2: no salt, so a frame forged inside a record's payload poses as proof of damage to synced
 * data and makes recovery refuse an ordinary torn tail; version 1: no syncedNext, so any intact frame
 * after a torn one is refused) for as long as that segment took to fill. Consensus lanes get an empty
 * tail from every re-positioning (reset), so an upgraded node can hold many. Both tests fail on
 * 8322612 (the records went to a version-2 segment).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readAt } from '../../src/io/fileSystem.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { encodeFrame, type FrameFormat } from '../../src/wal/frame.ts';
import { decodeSegmentHeader, encodeSegmentHeader, SEGMENT_HEADER_BYTES } from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor } from './helpers.ts';

const DIR = '/wal';
const SEGMENT_BYTES = 4096;

/** A segment file of an earlier build holding records [first, first + count), payloadFor(i, 100). */
function oldSegment(format: FrameFormat, first: number, count: number): Uint8Array {
  const bytes = new Uint8Array(SEGMENT_BYTES);
  bytes.set(encodeSegmentHeader(first, format), 0);
  let at = SEGMENT_HEADER_BYTES;
  for (let i = first; i < first + count; i++) {
    const frame = encodeFrame(i, payloadFor(i, 100), i, format);
    bytes.set(frame, at);
    at += frame.byteLength;
  }
  return bytes;
}

/**
 * An earlier build's log: records [0, full) in segment 0, then segment `full` holding `tailRecords`
 * records (0: an empty tail).
 */
function oldLogWithEmptyTail(
  format: FrameFormat,
  full: number,
  seed = 1,
  tailRecords = 0,
): SimulatedFileSystem {
  const fs = new SimulatedFileSystem({ seed });
  fs.writeFileBytes(`${DIR}/${'0'.padStart(20, '0')}.wal`, oldSegment(format, 0, full));
  fs.writeFileBytes(`${DIR}/${String(full).padStart(20, '0')}.wal`, oldSegment(format, full, tailRecords));
  return fs;
}

function headerOnDisk(fs: SimulatedFileSystem, file: string): { format: number; salt: number } {
  const h = fs.open(file, { readOnly: true });
  try {
    const header = decodeSegmentHeader(readAt(h, 0, SEGMENT_HEADER_BYTES));
    assert.ok(!('problem' in header), `header of ${file}: ${'problem' in header ? header.problem : ''}`);
    return { format: header.format, salt: header.salt };
  } finally {
    h.close();
  }
}

const open = (fs: SimulatedFileSystem) => Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES });

for (const format of [1, 2] as const) {
  test(`an empty version-${format} tail at the first writable open is replaced by a salted version-3 segment`, async () => {
    const fs = oldLogWithEmptyTail(format, 10);
    const wal = await open(fs);
    assert.equal(wal.nextIndex, 10);
    const tail = wal.segments().at(-1)!;
    assert.deepEqual([tail.firstIndex, tail.formatVersion], [10, 3]);
    const onDisk = headerOnDisk(fs, tail.file);
    assert.equal(onDisk.format, 3, 'the file itself carries the new header');
    assert.notEqual(onDisk.salt, 0);
    for (let i = 10; i < 20; i++) wal.append([payloadFor(i, 100)]);
    await wal.sync();
    assert.deepEqual(
      wal.segments().map((s) => [s.firstIndex, s.nextIndex, s.formatVersion]),
      [
        [0, 10, format],
        [10, 20, 3],
      ],
    );
    await wal.close();
    const again = await open(fs.crash(DROP_ALL));
    for (let i = 0; i < 20; i++) assert.deepEqual(again.read(i), payloadFor(i, 100), `record ${i}`);
    assert.deepEqual(
      fs.listFiles(DIR).filter((f) => !/\d{20}\.wal$|wal\.meta\.[ab]$/.test(f)),
      [],
      'no temporary file left behind',
    );
    await again.close();
  });
}

for (const format of [1, 2] as const) {
  test(`a truncateBack to the first record of a version-${format} segment leaves a version-3 tail, records appended during the cut included`, async () => {
    // An earlier build's segment 10 holding records 10..14.
    const fs = oldLogWithEmptyTail(format, 10, 1, 5);
    const wal = await open(fs);
    // The first writable open sealed the non-empty old tail: a version-3 segment at 15.
    assert.deepEqual(
      wal.segments().map((s) => [s.firstIndex, s.formatVersion]),
      [
        [0, format],
        [10, format],
        [15, 3],
      ],
    );
    const cut = wal.truncateBack(10);
    // Appended while the cut's disk work runs: buffered, laid out for the (old-format) tail of the
    // moment, laid out again when it is replaced.
    const payload = (i: number) => payloadFor(i + 1000, 50 + (i % 7) * 9);
    for (let i = 10; i < 16; i++) wal.append([payload(i)]);
    const synced = wal.sync();
    await cut;
    await synced;
    const tail = wal.segments().at(-1)!;
    assert.deepEqual([tail.firstIndex, tail.nextIndex, tail.formatVersion], [10, 16, 3]);
    assert.equal(headerOnDisk(fs, tail.file).format, 3);
    for (let i = 10; i < 16; i++) assert.deepEqual(wal.read(i), payload(i), `record ${i}`);
    await wal.close();
    const again = await open(fs.crash(DROP_ALL));
    assert.equal(again.nextIndex, 16);
    for (let i = 10; i < 16; i++)
      assert.deepEqual(again.read(i), payload(i), `record ${i} after the power cut`);
    again.verify();
    await again.close();
  });
}

/**
 * Power loss at every mutation of a session that opens such a log (replacing its empty tail), appends
 * and syncs in rounds, cuts back to the start of the replaced segment (or, for the version-2 shape
 * with records, to the start of the old segment, replaced then) and appends again. Each image opens,
 * holds every record synced before the cut and the earlier build's records, and leaves no scratch.
 */
test('power loss across the replacement of an empty old-format tail: every image opens with every synced record', async () => {
  const seed = seedFromEnv();
  console.log(`emptyOldTail power loss: CAIRN_SEED=${seed}`);
  const rng = new Rng(seed);
  const OLD = 10;
  const extra = (i: number, life: number): Uint8Array => payloadFor(i + life * 1000, 120 + (i % 4) * 90);
  let crashPoints = 0;
  // Empty old tails of both formats (replaced at open), and a version-2 tail holding 5 records
  // (sealed at open; the cut back to its start replaces it then).
  for (const [format, tailRecords] of [
    [1, 0],
    [2, 0],
    [2, 5],
  ] as const) {
    /** Records synced so far: index -> payload life (0 first appends, 1 after the cut). */
    const run = async (
      fs: SimulatedFileSystem,
      synced: Map<number, number>,
      progress = { cutCalled: false },
    ) => {
      const wal = await open(fs);
      for (let round = 0; round < 3; round++) {
        const base = wal.nextIndex;
        for (let k = 0; k < 4; k++) wal.append([extra(base + k, 0)]);
        await wal.sync();
        for (let k = 0; k < 4; k++) synced.set(base + k, 0);
      }
      // Back to the first record of the segment that was replaced at open, then new records.
      const replacedFirst = wal.segments().find((s) => s.firstIndex === OLD)!.firstIndex;
      // From the call on, the records it drops are no longer owed (a crash inside it may keep them).
      for (const k of [...synced.keys()]) if (k >= replacedFirst) synced.delete(k);
      progress.cutCalled = true;
      await wal.truncateBack(replacedFirst);
      for (let k = 0; k < 6; k++) wal.append([extra(replacedFirst + k, 1)]);
      await wal.sync();
      for (let k = 0; k < 6; k++) synced.set(replacedFirst + k, 1);
      await wal.close();
    };
    const dry = oldLogWithEmptyTail(format, OLD, 1, tailRecords);
    const before = dry.mutationCount;
    await run(dry, new Map());
    const total = dry.mutationCount - before;
    for (let at = 1; at <= total; at++) {
      const fs = oldLogWithEmptyTail(format, OLD, rng.nextU32(), tailRecords);
      fs.crashAfter(fs.mutationCount + at, { seed: rng.nextU32() });
      const synced = new Map<number, number>();
      const progress = { cutCalled: false };
      await run(fs, synced, progress).catch(() => undefined);
      const image = fs.crashedImage();
      crashPoints++;
      const where = `format ${format} (${tailRecords} records in its tail), crash after mutation ${at} of ${total} (CAIRN_SEED=${seed})`;
      const wal = await open(image).catch((err: unknown) => assert.fail(`${where}: ${String(err)}`));
      try {
        for (let i = 0; i < OLD; i++)
          assert.deepEqual(wal.read(i), payloadFor(i, 100), `${where}: record ${i}`);
        // The earlier build's records of its tail are owed until the cut is called.
        if (!progress.cutCalled) {
          assert.ok(wal.nextIndex >= OLD + tailRecords, `${where}: records of the earlier build lost`);
        }
        for (const [i, life] of synced) {
          assert.ok(i < wal.nextIndex, `${where}: synced record ${i} lost (next ${wal.nextIndex})`);
          assert.deepEqual(wal.read(i), extra(i, life), `${where}: record ${i}`);
        }
        for (let i = OLD; i < wal.nextIndex; i++) {
          const got = wal.read(i);
          const known =
            [0, 1].some((life) => Buffer.from(got).equals(extra(i, life))) ||
            (i < OLD + tailRecords && Buffer.from(got).equals(payloadFor(i, 100)));
          assert.ok(known, `${where}: record ${i} is neither payload ever appended at that index`);
        }
        assert.equal(wal.segments().at(-1)!.formatVersion, 3, `${where}: the tail is version 3`);
        wal.verify();
        assert.deepEqual(
          image.listFiles(DIR).filter((f) => f.endsWith('.replacement')),
          [],
          `${where}: scratch removed`,
        );
      } finally {
        await wal.close();
      }
    }
  }
  console.log(`emptyOldTail power loss: ${crashPoints} crash points`);
  assert.ok(crashPoints > 50);
});
