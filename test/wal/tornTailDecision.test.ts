/**
 * Issue #9 finding F1: the torn-tail-or-corruption decision on frame format 2. Every frame records
 * `syncedNext` (every record below it had been fsynced when the frame was written); damage at record
 * d of the tail, at or above the durable marker, is corruption only if an intact later frame has
 * syncedNext > d. Version-1 segments (earlier builds) keep the old rule: any intact later frame.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CairnError } from '../../src/lib/errors.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FRAME_HEADER_BYTES_V1,
  type FrameFormat,
} from '../../src/wal/frame.ts';
import { encodeSegmentHeader, SEGMENT_HEADER_BYTES, segmentFileName } from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor, writeV1Segment } from './helpers.ts';

const DIR = '/wal';
const SEGMENT_BYTES = 64 * 1024;
const PAYLOAD = 100;
const TAIL = `${DIR}/${segmentFileName(0)}`;

/** The salt of the version-3 segments crafted here (versions 1 and 2 have none). */
const CRAFTED_SALT = 0x5eed_1234;
const saltFor = (format: FrameFormat): number => (format === 3 ? CRAFTED_SALT : 0);

/** A tail segment holding frames 0..n-1 with the given syncedNext values (no meta: marker 0). */
function craftSegment(fs: SimulatedFileSystem, format: FrameFormat, synced: readonly number[]): number[] {
  const bytes = new Uint8Array(SEGMENT_BYTES);
  bytes.set(encodeSegmentHeader(0, format, saltFor(format)), 0);
  const offsets: number[] = [];
  let at = SEGMENT_HEADER_BYTES;
  synced.forEach((s, i) => {
    const frame = encodeFrame(i, payloadFor(i, PAYLOAD), s, format, saltFor(format));
    bytes.set(frame, at);
    offsets.push(at);
    at += frame.byteLength;
  });
  fs.writeFileBytes(TAIL, bytes);
  return offsets;
}

function damage(
  fs: SimulatedFileSystem,
  offset: number,
  how: 'flip' | 'zero-header',
  format: FrameFormat,
): void {
  if (how === 'flip') {
    fs.flipBit(TAIL, offset + 30, 1);
    return;
  }
  const bytes = fs.readFileBytes(TAIL);
  bytes.fill(0, offset, offset + (format === 1 ? FRAME_HEADER_BYTES_V1 : FRAME_HEADER_BYTES));
  fs.writeFileBytes(TAIL, bytes);
}

async function open(fs: SimulatedFileSystem, warnings: string[] = []): Promise<Wal> {
  return Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES, onWarning: (m) => warnings.push(m) });
}

async function openError(fs: SimulatedFileSystem): Promise<CairnError> {
  const err = await open(fs).then(
    async (wal) => {
      await wal.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  assert.ok(err instanceof CairnError, `open succeeded or threw untyped: ${String(err)}`);
  return err;
}

/** syncedNext of every frame in the tail, read from the bytes on disk. */
function syncedNextOnDisk(fs: SimulatedFileSystem, file = TAIL): number[] {
  const bytes = fs.readFileBytes(file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: number[] = [];
  for (let at = SEGMENT_HEADER_BYTES; at + FRAME_HEADER_BYTES <= bytes.byteLength; ) {
    const length = view.getUint32(at + 4, true);
    if (view.getUint32(at, true) === 0 && length === 0) break;
    out.push(Number(view.getBigUint64(at + 16, true)));
    at += FRAME_HEADER_BYTES + length;
  }
  return out;
}

for (const format of [2, 3] as const)
  describe(`format ${format}: damage at d with intact later frames`, () => {
    for (const how of ['flip', 'zero-header'] as const) {
      test(`${how}: a later frame with syncedNext > d proves d was fsynced: WAL_CORRUPT`, async () => {
        const fs = new SimulatedFileSystem({ seed: 1 });
        // Records 0..4 synced together; 5..7 written after that fsync (syncedNext 5).
        const offsets = craftSegment(fs, format, [0, 0, 0, 0, 0, 5, 5, 5]);
        damage(fs, offsets[3]!, how, format);
        const err = await openError(fs);
        assert.equal(err.code, 'WAL_CORRUPT');
        assert.equal(err.details.offset, offsets[3]);
        assert.match(
          err.message,
          /record 5 at offset \d+ after it is intact and was written after records below 5/,
        );
      });

      test(`${how}: later frames with syncedNext <= d are an unsynced tail written out of order: cut at d`, async () => {
        const fs = new SimulatedFileSystem({ seed: 2 });
        const offsets = craftSegment(fs, format, [0, 0, 0, 3, 3, 3, 3, 3]);
        damage(fs, offsets[3]!, how, format);
        const warnings: string[] = [];
        const wal = await open(fs, warnings);
        assert.equal(wal.nextIndex, 3);
        assert.ok(
          warnings.some((w) => /torn tail truncated/.test(w) && /4 intact later frame\(s\)/.test(w)),
          warnings.join('; '),
        );
        await wal.close();
        const bytes = fs.readFileBytes(TAIL);
        assert.ok(
          bytes.subarray(offsets[3]!).every((b) => b === 0),
          'the later frames are erased',
        );
        assert.equal(bytes.byteLength, SEGMENT_BYTES, 'preallocated again');
      });
    }

    test('the proof may sit in any later frame, not only the first one', async () => {
      const fs = new SimulatedFileSystem({ seed: 3 });
      // 4..6 were written before the fsync of 0..3 completed; 7 after it.
      const offsets = craftSegment(fs, format, [0, 0, 0, 0, 0, 0, 0, 4]);
      damage(fs, offsets[2]!, 'flip', format);
      const err = await openError(fs);
      assert.equal(err.code, 'WAL_CORRUPT');
      assert.match(err.message, /record 7 at offset \d+ after it is intact/);
    });

    test('the proof is found behind a second damaged frame too', async () => {
      const fs = new SimulatedFileSystem({ seed: 4 });
      const offsets = craftSegment(fs, format, [0, 0, 0, 0, 0, 0, 0, 4, 4]);
      damage(fs, offsets[2]!, 'flip', format);
      damage(fs, offsets[7]!, 'flip', format);
      const err = await openError(fs);
      assert.match(err.message, /record 8 at offset \d+ after it is intact/);
    });
  });

describe('the durable marker', () => {
  test('below the durable marker damage is corruption whatever the later frames say', async () => {
    const fs = new SimulatedFileSystem({ seed: 5 });
    const wal = await open(fs);
    for (let i = 0; i < 6; i++) wal.append([payloadFor(i, PAYLOAD)]);
    await wal.close(); // marker 6, all frames in one batch (syncedNext 0)
    assert.deepEqual(syncedNextOnDisk(fs), [0, 0, 0, 0, 0, 0]);
    fs.flipBit(TAIL, SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + PAYLOAD) + 40, 0);
    const err = await openError(fs);
    assert.match(err.message, /below the durable marker 6/);
  });
});

describe('what the log writes (format 3)', () => {
  test('each frame carries the index below which every record was fsynced when it was written', async () => {
    const fs = new SimulatedFileSystem({ seed: 6 });
    const wal = await open(fs);
    for (const batch of [3, 2, 4]) {
      for (let i = 0; i < batch; i++) wal.append([payloadFor(wal.nextIndex, PAYLOAD)]);
      await wal.sync();
    }
    assert.deepEqual(syncedNextOnDisk(fs), [0, 0, 0, 3, 3, 5, 5, 5, 5]);
    // A back truncation: re-appended records were never fsynced, whatever was synced before.
    await wal.truncateBack(4);
    wal.append([payloadFor(4, PAYLOAD), payloadFor(5, PAYLOAD)]);
    await wal.sync();
    assert.deepEqual(syncedNextOnDisk(fs), [0, 0, 0, 3, 4, 4]);
    await wal.close();
    const reopened = await open(fs);
    reopened.append([payloadFor(6, PAYLOAD)]);
    await reopened.sync();
    assert.deepEqual(syncedNextOnDisk(fs).at(-1), 6, 'recovery fsynced everything it found');
    await reopened.close();
  });

  test('a front truncation does not raise syncedNext over records that were only written', async () => {
    const fs = new SimulatedFileSystem({ seed: 7 });
    const wal = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES, durability: { mode: 'none' } });
    for (let i = 0; i < 5; i++) wal.append([payloadFor(i, PAYLOAD)]);
    await wal.sync(); // written, never fsynced
    await wal.truncateFront(4);
    wal.append([payloadFor(5, PAYLOAD)]);
    await wal.sync();
    assert.deepEqual(syncedNextOnDisk(fs), [0, 0, 0, 0, 0, 0]);
    await wal.close();
  });

  test('damage to a synced record behind a later synced batch fails loudly through the real write path', async () => {
    const fs = new SimulatedFileSystem({ seed: 8 });
    const wal = await open(fs);
    for (const batch of [5, 3]) {
      for (let i = 0; i < batch; i++) wal.append([payloadFor(wal.nextIndex, PAYLOAD)]);
      await wal.sync();
    }
    // The process dies (no clean close: the marker says nothing); record 2 rots.
    fs.flipBit(TAIL, SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + PAYLOAD) + 50, 4);
    const err = await openError(fs);
    assert.equal(err.code, 'WAL_CORRUPT');
    await wal.close().catch(() => undefined);
  });

  test('known limit: rot in the last fsynced batch with nothing written after it reads as a torn tail', async () => {
    const fs = new SimulatedFileSystem({ seed: 9 });
    const wal = await open(fs);
    for (let i = 0; i < 5; i++) wal.append([payloadFor(i, PAYLOAD)]);
    await wal.sync(); // one batch, then the process dies
    fs.flipBit(TAIL, SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + PAYLOAD) + 50, 4);
    const reopened = await open(fs);
    assert.equal(reopened.nextIndex, 2, 'documented in docs/DATA_FILES.md §2');
    await reopened.close();
    await wal.close().catch(() => undefined);
  });
});

describe('format 1 segments (earlier builds)', () => {
  test('damage followed by any intact frame is corruption (the old rule); without one, a torn tail', async () => {
    const fs = new SimulatedFileSystem({ seed: 10 });
    const offsets = craftSegment(fs, 1, [0, 0, 0, 0, 0, 0]);
    damage(fs, offsets[3]!, 'zero-header', 1);
    const err = await openError(fs);
    assert.match(err.message, /record 4 at offset \d+ after it is intact: damaged data/);

    const torn = new SimulatedFileSystem({ seed: 11 });
    const tornOffsets = craftSegment(torn, 1, [0, 0, 0, 0, 0, 0]);
    damage(torn, tornOffsets[5]!, 'flip', 1);
    const wal = await open(torn);
    assert.equal(wal.nextIndex, 5);
    await wal.close();
  });

  test('a version-1 tail is sealed at open: new records go to a version-3 segment', async () => {
    const fs = new SimulatedFileSystem({ seed: 12 });
    const payloads = Array.from({ length: 5 }, (_, i) => payloadFor(i, PAYLOAD));
    writeV1Segment(fs, DIR, 0, payloads, SEGMENT_BYTES);
    const wal = await open(fs);
    assert.equal(wal.nextIndex, 5);
    wal.append([payloadFor(5, PAYLOAD), payloadFor(6, PAYLOAD)]);
    await wal.sync();
    assert.deepEqual(
      wal.segments().map((s) => [s.firstIndex, s.nextIndex, s.formatVersion]),
      [
        [0, 5, 1],
        [5, 7, 3],
      ],
    );
    assert.equal(wal.segments()[0]!.bytes, SEGMENT_HEADER_BYTES + 5 * (FRAME_HEADER_BYTES_V1 + PAYLOAD));
    assert.deepEqual(syncedNextOnDisk(fs, wal.segments()[1]!.file), [5, 5]);
    await wal.close();
    const again = await open(fs);
    assert.equal(again.nextIndex, 7);
    assert.deepEqual(
      [...again.iterate()].map((r) => r.payload),
      [...payloads, payloadFor(5, PAYLOAD), payloadFor(6, PAYLOAD)],
    );
    again.verify();
    await again.close();
  });

  test('an empty version-1 tail is replaced at open by a version-3 segment: no version-1 frame is written', async () => {
    const fs = new SimulatedFileSystem({ seed: 13 });
    const small = 32 + 4 * (FRAME_HEADER_BYTES_V1 + PAYLOAD); // four v1 frames (three v3 frames) fill it
    // An empty version-1 tail: nothing to seal, so it is replaced under its own name (rrev2; it
    // used to be kept and to receive version-1 frames until it filled).
    writeV1Segment(fs, DIR, 0, [], small);
    const wal = await Wal.open({ fs, dir: DIR, segmentBytes: small });
    // One batch spanning the seal: four frames fit the v1 tail, the rest go to a new segment.
    const batch = Array.from({ length: 7 }, (_, i) => payloadFor(i, PAYLOAD));
    wal.append(batch);
    await wal.sync();
    const segs = wal.segments();
    assert.deepEqual(
      segs.map((s) => [s.firstIndex, s.nextIndex, s.formatVersion]),
      [
        [0, 3, 3],
        [3, 6, 3],
        [6, 7, 3],
      ],
    );
    assert.deepEqual(syncedNextOnDisk(fs, segs[1]!.file), [3, 3, 3], 'the sealed segment was fsynced first');
    await wal.close();
    const again = await Wal.open({ fs, dir: DIR, segmentBytes: small });
    assert.deepEqual(
      [...again.iterate()].map((r) => r.payload),
      batch,
    );
    again.verify();
    await again.close();
  });
});
