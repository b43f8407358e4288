/**
 * Corruption: single-bit flips in sealed WAL segments and in A/B slots (≥ 2,000 per run, every one
 * detected), plus flips in the mutable tail segment, where only a flip in the LAST record may pass
 * as a torn write: a flip in an earlier record of the tail, followed by intact synced records, must
 * fail loudly instead of silently truncating acknowledged data.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { openAbFile } from '../../src/io/abFile.ts';
import { mkdirDurable } from '../../src/io/fileSystem.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import { SEGMENT_HEADER_BYTES } from '../../src/wal/segmentFile.ts';
import type { SegmentInfo } from '../../src/wal/types.ts';
import { Wal } from '../../src/wal/wal.ts';

const DIR = '/node/wal';
const SEGMENT_BYTES = 4096;
const WAL_FLIPS = 1_500;
const AB_FLIPS = 600;

interface BuiltLog {
  fs: SimulatedFileSystem;
  payloads: Uint8Array[];
  segments: SegmentInfo[];
}

async function buildLog(seed: number, records: number, maxPayloadBytes = 400): Promise<BuiltLog> {
  const rng = new Rng(seed);
  const fs = new SimulatedFileSystem({ seed });
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES });
  const payloads: Uint8Array[] = [];
  for (let i = 0; i < records; i++) {
    const p = rng.bytes(rng.int(0, maxPayloadBytes));
    payloads.push(p);
    wal.append([p]);
    if (rng.bool(0.3)) await wal.sync();
  }
  await wal.sync();
  const segments = wal.segments();
  await wal.close();
  return { fs, payloads, segments };
}

type Outcome =
  | { kind: 'open-error' | 'verify-error'; file: unknown; offset: unknown }
  | { kind: 'undetected' };

async function openAndVerify(
  image: SimulatedFileSystem,
  warnings: string[] = [],
): Promise<Outcome & { wal?: Wal }> {
  let wal: Wal;
  try {
    wal = await Wal.open({
      fs: image,
      dir: DIR,
      segmentBytes: SEGMENT_BYTES,
      onWarning: (m) => warnings.push(m),
    });
  } catch (err) {
    assert.ok(
      isCairnError(err, 'WAL_CORRUPT'),
      `open failed with something other than WAL_CORRUPT: ${String(err)}`,
    );
    return { kind: 'open-error', file: err.details.file, offset: err.details.offset };
  }
  try {
    wal.verify();
  } catch (err) {
    await wal.close().catch(() => {});
    assert.ok(
      isCairnError(err, 'WAL_CORRUPT'),
      `verify failed with something other than WAL_CORRUPT: ${String(err)}`,
    );
    return { kind: 'verify-error', file: err.details.file, offset: err.details.offset };
  }
  return { kind: 'undetected', wal };
}

describe('bit flips', () => {
  test(`WAL: ${WAL_FLIPS} single-bit flips in sealed segments are all detected, naming file and offset`, async () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const rng = new Rng(seed);
    const built = await buildLog(seed, 400);
    const sealed = built.segments.filter((s) => s.sealed);
    assert.ok(sealed.length >= 10, `expected many sealed segments, got ${sealed.length}`);
    let onOpen = 0;
    let onVerify = 0;
    let paddingFlips = 0;
    for (let i = 0; i < WAL_FLIPS; i++) {
      const seg = rng.pick(sealed);
      const image = built.fs.crashImage(DROP_ALL);
      const fileBytes = image.readFileBytes(seg.file).byteLength;
      // Mostly the bytes that carry data ([0, end of last frame)); sometimes the zero padding after it.
      const inData = seg.bytes >= fileBytes || rng.bool(0.9);
      const offset = inData ? rng.int(0, seg.bytes) : rng.int(seg.bytes, fileBytes);
      const bit = rng.int(0, 8);
      image.flipBit(seg.file, offset, bit);
      const where = `flip of bit ${bit} at ${seg.file}:${offset} (flip ${i}, CAIRN_SEED=${seed})`;
      const outcome = await openAndVerify(image);
      if (outcome.kind === 'undetected') {
        // Padding past a clean end-of-data marker carries nothing; it may go unnoticed, but then
        // every record must still read back exactly.
        assert.ok(!inData, `${where}: corruption in sealed data went undetected`);
        const wal = outcome.wal!;
        for (const { index, payload } of wal.iterate()) {
          assert.ok(
            bytesEqual(payload, built.payloads[index]!),
            `${where}: record ${index} reads back wrong`,
          );
        }
        await wal.close();
        paddingFlips++;
        continue;
      }
      assert.equal(outcome.file, seg.file, `${where}: error names ${String(outcome.file)}`);
      assert.equal(typeof outcome.offset, 'number', `${where}: error has no offset`);
      assert.ok(
        (outcome.offset as number) <= offset,
        `${where}: reported offset ${String(outcome.offset)} is past the flip`,
      );
      if (outcome.kind === 'open-error') onOpen++;
      else onVerify++;
    }
    console.log(
      `WAL sealed flips: ${WAL_FLIPS} (detected on open ${onOpen}, on verify ${onVerify}, harmless padding ${paddingFlips})`,
    );
    assert.ok(onOpen + onVerify >= WAL_FLIPS * 0.8);
  });

  test('WAL: every bit of a sealed segment header is protected', async () => {
    const built = await buildLog(7, 200);
    const seg = built.segments.find((s) => s.sealed)!;
    const missed: string[] = [];
    for (let offset = 0; offset < SEGMENT_HEADER_BYTES; offset++) {
      for (let bit = 0; bit < 8; bit++) {
        const image = built.fs.crashImage(DROP_ALL);
        image.flipBit(seg.file, offset, bit);
        const outcome = await openAndVerify(image);
        if (outcome.kind === 'undetected') {
          await outcome.wal!.close();
          missed.push(`${offset}.${bit}`);
        }
      }
    }
    assert.deepEqual(missed, [], `undetected header flips (byte.bit) in ${seg.file}`);
  });

  test('WAL: a flip in a record of the tail segment followed by intact synced records fails loudly', async () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const rng = new Rng(seed);
    // Grow the log until its tail segment holds several records.
    let built = await buildLog(seed, 60, 100);
    for (let n = 61; built.segments.at(-1)!.nextIndex - built.segments.at(-1)!.firstIndex < 4; n++) {
      built = await buildLog(seed, n, 100);
    }
    const tail = built.segments.at(-1)!;
    const tailRecords = tail.nextIndex - tail.firstIndex;
    const frameStarts = frameOffsets(built.fs, tail);
    let checked = 0;
    for (let i = 0; i < 100; i++) {
      // Any record but the last: intact records follow it.
      const k = rng.int(0, tailRecords - 1);
      const offset = rng.int(frameStarts[k]!, frameStarts[k + 1]!);
      const image = built.fs.crashImage(DROP_ALL);
      image.flipBit(tail.file, offset, rng.int(0, 8));
      const warnings: string[] = [];
      const outcome = await openAndVerify(image, warnings);
      if (outcome.kind === 'undetected') {
        const wal = outcome.wal!;
        const next = wal.nextIndex;
        await wal.close();
        assert.fail(
          `flip in record ${tail.firstIndex + k} of the tail ${tail.file} at ${offset} (CAIRN_SEED=${seed}) was ` +
            `treated as a torn tail: recovered up to ${next} of ${tail.nextIndex}, silently dropping synced records ` +
            `(${warnings.join('; ')})`,
        );
      }
      assert.equal(outcome.file, tail.file);
      checked++;
    }
    assert.equal(checked, 100);
  });

  test(`A/B: ${AB_FLIPS} single-bit flips in either slot fall back to the other slot with a warning, never a wrong payload`, () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const rng = new Rng(seed);
    let fellBack = 0;
    for (let i = 0; i < AB_FLIPS; i++) {
      const fs = new SimulatedFileSystem({ seed: seed + i });
      mkdirDurable(fs, '/ab', path.posix);
      const { file } = openAbFile(fs, '/ab', 'anchor');
      const writes = rng.int(2, 6);
      const payloads: Uint8Array[] = [];
      for (let w = 0; w < writes; w++) {
        const p = rng.bytes(rng.int(0, 300));
        payloads.push(p);
        file.write(p);
      }
      file.close();
      const newest = payloads.at(-1)!;
      const previous = payloads.at(-2)!;
      // Slot a holds odd writes (1st, 3rd, ...), slot b even ones: find which holds the newest.
      const slot = rng.pick(['a', 'b'] as const);
      const slotFile = `/ab/anchor.${slot}`;
      const size = fs.readFileBytes(slotFile).byteLength;
      const offset = rng.int(0, size);
      const image = fs.crashImage(DROP_ALL);
      image.flipBit(slotFile, offset, rng.int(0, 8));
      const where = `flip in ${slotFile} at ${offset} after ${writes} writes (CAIRN_SEED=${seed})`;
      let loaded: ReturnType<typeof openAbFile>['loaded'];
      try {
        loaded = openAbFile(image, '/ab', 'anchor', { readOnly: true }).loaded;
      } catch (err) {
        assert.fail(`${where}: one intact slot remains, yet loading failed: ${String(err)}`);
      }
      const newestSlot = writes % 2 === 1 ? 'a' : 'b';
      const expected = slot === newestSlot ? previous : newest;
      assert.equal(loaded.seq, slot === newestSlot ? writes - 1 : writes, `${where}: seq`);
      assert.ok(loaded.payload && bytesEqual(loaded.payload, expected), `${where}: wrong payload`);
      assert.ok(loaded.warnings.length > 0, `${where}: no warning about the corrupt slot`);
      if (slot === newestSlot) fellBack++;
    }
    console.log(`A/B flips: ${AB_FLIPS}, fell back to the older slot ${fellBack} times`);
    assert.ok(fellBack > 0);
  });
});

/** Start offsets of the tail's frames, plus the end of its data. */
function frameOffsets(fs: SimulatedFileSystem, tail: SegmentInfo): number[] {
  const bytes = fs.readFileBytes(tail.file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const starts: number[] = [];
  let at = SEGMENT_HEADER_BYTES;
  for (let i = tail.firstIndex; i < tail.nextIndex; i++) {
    starts.push(at);
    // The frame's u32 payload length sits at offset 4 of its header.
    at += FRAME_HEADER_BYTES + view.getUint32(at + 4, true);
  }
  starts.push(at);
  assert.equal(at, tail.bytes, 'frame walk disagrees with the segment size');
  return starts;
}
