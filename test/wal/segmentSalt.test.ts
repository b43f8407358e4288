/**
 * Segment format 3: the salt in the segment header (segmentFile.ts) that seeds every frame CRC of the
 * segment. Where it comes from, that the header checksum covers it, that every segment file (and
 * every life of a spare) gets its own, and what that buys against stale frames of an earlier file of
 * the same name.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readAt } from '../../src/io/fileSystem.ts';
import { crc32c } from '../../src/lib/crc32c.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { encodeFrame, FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import {
  decodeSegmentHeader,
  drawSegmentSalt,
  encodeSegmentHeader,
  SEGMENT_HEADER_BYTES,
  segmentFileName,
} from '../../src/wal/segmentFile.ts';
import { SPARE_SEGMENT_NAME } from '../../src/wal/spareSegment.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor } from './helpers.ts';

const DIR = '/wal';

function saltOnDisk(fs: SimulatedFileSystem, file: string): number {
  const h = fs.open(file, { readOnly: true });
  try {
    const header = decodeSegmentHeader(readAt(h, 0, SEGMENT_HEADER_BYTES));
    if ('problem' in header) throw new Error(`${file}: ${header.problem}`);
    assert.equal(header.format, 3, file);
    return header.salt;
  } finally {
    h.close();
  }
}

test('the salt is stored in the header, under its checksum; versions 1 and 2 keep those bytes zero', () => {
  const header = encodeSegmentHeader(77, 3, 0xdead_beef);
  assert.deepEqual(decodeSegmentHeader(header), { firstIndex: 77, format: 3, salt: 0xdead_beef });
  const flipped = header.slice();
  flipped[13]! ^= 0x10; // inside the salt
  assert.deepEqual(decodeSegmentHeader(flipped), { problem: 'header checksum mismatch' });
  // A version-2 header with non-zero bytes 12..15 (checksum recomputed) is not a valid header.
  const v2 = encodeSegmentHeader(77, 2);
  const view = new DataView(v2.buffer);
  view.setUint32(12, 5, true);
  view.setUint32(24, crc32c(v2.subarray(0, 24)), true);
  assert.deepEqual(decodeSegmentHeader(v2), { problem: 'reserved header bytes are not zero' });
  assert.throws(() => encodeSegmentHeader(1, 2, 9), /has no salt/);
});

test('drawn salts are never 0 and never make the all-zero frame header a valid frame', () => {
  const seen = new Set<number>();
  const zeroHeaderRest = new Uint8Array(FRAME_HEADER_BYTES - 4);
  for (let i = 0; i < 2000; i++) {
    const salt = drawSegmentSalt();
    assert.ok(Number.isInteger(salt) && salt > 0 && salt <= 0xffff_ffff);
    assert.notEqual(crc32c(zeroHeaderRest, salt), 0);
    seen.add(salt);
  }
  assert.ok(seen.size > 1990, `2000 draws gave only ${seen.size} distinct salts`);
});

test('a frame verifies only under the salt it was sealed with', () => {
  const payload = payloadFor(3, 500);
  const a = encodeFrame(3, payload, 1, 3, 0x1234_5678);
  const b = encodeFrame(3, payload, 1, 3, 0x1234_5679);
  assert.deepEqual(a.subarray(4), b.subarray(4), 'the same bytes apart from the CRC');
  assert.notEqual(a.subarray(0, 4).join(), b.subarray(0, 4).join());
  // Salt 0 is the unseeded CRC: the version-2 frame of the same record.
  assert.deepEqual(encodeFrame(3, payload, 1, 3, 0), encodeFrame(3, payload, 1, 2));
});

test('every segment gets its own salt: created, taken from a spare, and taken from a spare kept across a clean close', async () => {
  const fs = new SimulatedFileSystem({ seed: 5 });
  const segmentBytes = 8 * 1024;
  const options = { fs, dir: DIR, segmentBytes, spareSegment: 'always-ready' as const };
  const salts = new Map<string, number>();
  const record = (fsWal: Wal) => {
    for (const s of fsWal.segments()) {
      const salt = saltOnDisk(fs, s.file);
      const known = salts.get(s.file);
      if (known !== undefined) assert.equal(salt, known, `${s.file} kept its salt`);
      salts.set(s.file, salt);
    }
  };
  const spare = `${DIR}/${SPARE_SEGMENT_NAME}`;
  const spareReady = async () => {
    for (let turn = 0; turn < 500 && !(fs.exists(spare) && fs.stat(spare).size === segmentBytes); turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    // One more round of turns for the spare's last fsync.
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
  };
  let wal = await Wal.open(options);
  for (let i = 0; i < 40; i++) {
    await spareReady();
    wal.append([payloadFor(i, 900)]);
    await wal.sync();
  }
  record(wal);
  await spareReady();
  await wal.close(); // keeps the ready spare
  assert.ok(fs.exists(spare), 'precondition: a clean close kept the spare');
  wal = await Wal.open(options);
  for (let i = 40; i < 80; i++) {
    wal.append([payloadFor(i, 900)]);
    await wal.sync();
  }
  record(wal);
  assert.ok(salts.size >= 8, `${salts.size} segments`);
  assert.equal(new Set(salts.values()).size, salts.size, 'no two segments share a salt');
  wal.verify();
  await wal.close();
});

/**
 * Stale frames of an earlier file with the same name. A truncate back deletes later segments; when
 * the log grows again a segment of the same name is created, and its frames sit at the same offsets
 * with the same indices as the deleted file's. If a crash ever showed the new file with the old
 * file's blocks past its written end (a file system that exposes stale blocks of an extended file,
 * a log without preallocation), an unsalted frame there would pass every check and come back as a
 * record that was truncated away. With a fresh salt per file it cannot verify.
 */
test('frames of a deleted segment of the same name never verify in the new file', async () => {
  const fs = new SimulatedFileSystem({ seed: 6 });
  const segmentBytes = 4096;
  const options = { fs, dir: DIR, segmentBytes, preallocate: false, onWarning: () => {} };
  const wal = await Wal.open(options);
  const payload = (i: number, life: number) => payloadFor(i, 300, life);
  for (let i = 0; i < 24; i++) wal.append([payload(i, 0)]);
  await wal.sync();
  const second = wal.segments()[1]!;
  const k = second.firstIndex;
  const stale = fs.readFileBytes(second.file);
  await wal.truncateBack(k - 1);
  assert.equal(fs.exists(second.file), false);
  for (let i = k - 1; i <= k; i++) wal.append([payload(i, 1)]);
  await wal.sync();
  const reborn = wal.segments().at(-1)!;
  assert.equal(reborn.file, second.file, 'the log grew into a file of the same name');
  assert.equal(reborn.nextIndex, k + 1);
  const next = fs.kill();
  // The crash shows the old file's blocks past the new file's written end.
  const now = next.readFileBytes(reborn.file);
  assert.equal(now.byteLength, reborn.bytes);
  const exposed = stale.slice();
  exposed.set(now, 0);
  next.writeFileBytes(reborn.file, exposed);
  const warnings: string[] = [];
  const reopened = await Wal.open({ ...options, fs: next, onWarning: (m) => warnings.push(m) });
  try {
    assert.equal(reopened.nextIndex, k + 1, 'no record of the deleted file came back');
    assert.deepEqual(reopened.read(k), payload(k, 1));
    assert.ok(
      warnings.some((w) => /torn tail truncated/.test(w)),
      warnings.join('; '),
    );
  } finally {
    await reopened.close();
  }
  assert.equal(segmentFileName(k), reborn.file.split('/').at(-1));
});
