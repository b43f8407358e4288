/**
 * Issue #9 items 5, 15, 16 and issue #12 (open cost): what recovery does with damage in the tail
 * segment, with the durable marker kept in the WAL meta, and how much of a preallocated tail it reads.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CairnError } from '../../src/lib/errors.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import { SEGMENT_HEADER_BYTES, segmentFileName } from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor, tempDir, WrappingFileSystem } from './helpers.ts';

const DIR = '/wal';
const RECORD_BYTES = 100;
const FRAME_BYTES = FRAME_HEADER_BYTES + RECORD_BYTES;
const frameOffset = (i: number): number => SEGMENT_HEADER_BYTES + i * FRAME_BYTES;
const TAIL = `${DIR}/${segmentFileName(0)}`;

async function writeLog(fs: SimulatedFileSystem, records: number, close: boolean): Promise<Wal> {
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
  for (let i = 0; i < records; i++) wal.append([payloadFor(i, RECORD_BYTES)]);
  await wal.sync();
  if (close) await wal.close();
  return wal;
}

function zeroRange(fs: SimulatedFileSystem, file: string, from: number, to: number): void {
  const bytes = fs.readFileBytes(file);
  bytes.fill(0, from, to);
  fs.writeFileBytes(file, bytes);
}

async function openCode(fs: SimulatedFileSystem): Promise<{ code?: string; next?: number }> {
  try {
    const wal = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
    const next = wal.nextIndex;
    await wal.close();
    return { next };
  } catch (err) {
    assert.ok(err instanceof CairnError, `typed error expected, got ${String(err)}`);
    return { code: err.code };
  }
}

test('item 5: a zeroed frame header in the tail followed by intact records written after its fsync is corruption, not the end of data (killed process)', async () => {
  const fs = new SimulatedFileSystem({ seed: 5 });
  const wal = await writeLog(fs, 10, false); // abandoned: no clean close
  // Written after the fsync of 0..9: its frame says so (syncedNext 10), which proves record 5 synced.
  wal.append([payloadFor(10, RECORD_BYTES)]);
  await wal.sync();
  zeroRange(fs, TAIL, frameOffset(5), frameOffset(5) + FRAME_HEADER_BYTES);
  assert.deepEqual(await openCode(fs), { code: 'WAL_CORRUPT' });
});

test('F1: a zeroed frame header in front of intact frames of the same unsynced write is a torn tail (killed process)', async () => {
  const fs = new SimulatedFileSystem({ seed: 5 });
  await writeLog(fs, 10, false); // one batch: no frame was written after an fsync covering record 5
  zeroRange(fs, TAIL, frameOffset(5), frameOffset(5) + FRAME_HEADER_BYTES);
  assert.deepEqual(await openCode(fs), { next: 5 });
});

test('item 5: a zeroed frame header in the tail of a cleanly closed log is corruption', async () => {
  const fs = new SimulatedFileSystem({ seed: 6 });
  await writeLog(fs, 10, true);
  zeroRange(fs, TAIL, frameOffset(5), frameOffset(5) + FRAME_HEADER_BYTES);
  assert.deepEqual(await openCode(fs), { code: 'WAL_CORRUPT' });
});

test('item 16: a bit flip in the last record of a cleanly closed log is corruption, not a torn tail', async () => {
  const fs = new SimulatedFileSystem({ seed: 16 });
  await writeLog(fs, 10, true);
  fs.flipBit(TAIL, frameOffset(9) + FRAME_HEADER_BYTES + 3, 2);
  assert.deepEqual(await openCode(fs), { code: 'WAL_CORRUPT' });
});

test('item 16: a zeroed page reaching the last records of a cleanly closed log is corruption', async () => {
  const fs = new SimulatedFileSystem({ seed: 17 });
  await writeLog(fs, 10, true);
  zeroRange(fs, TAIL, frameOffset(7), 4096);
  assert.deepEqual(await openCode(fs), { code: 'WAL_CORRUPT' });
});

test('item 16: a torn tail above the durable marker is still repaired (records never acknowledged)', async () => {
  const fs = new SimulatedFileSystem({ seed: 18 });
  const wal = await writeLog(fs, 10, true);
  assert.equal(wal.nextIndex, 10);
  const again = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
  again.append([payloadFor(10, RECORD_BYTES)]);
  await again.sync();
  // The process dies; the unacknowledged last frame is torn (its checksum no longer matches).
  fs.flipBit(TAIL, frameOffset(10) + FRAME_HEADER_BYTES + 1, 0);
  const warnings: string[] = [];
  const reopened = await Wal.open({
    fs,
    dir: DIR,
    segmentBytes: 64 * 1024,
    onWarning: (m) => warnings.push(m),
  });
  assert.equal(reopened.nextIndex, 10);
  assert.ok(warnings.some((w) => w.includes('torn tail')));
  await reopened.close();
});

function newestMetaSlot(fs: SimulatedFileSystem): string {
  const seqOf = (f: string): bigint => {
    const b = fs.readFileBytes(f);
    return b.byteLength < 16 ? 0n : new DataView(b.buffer, b.byteOffset).getBigUint64(4, true);
  };
  const a = `${DIR}/wal.meta.a`;
  const b = `${DIR}/wal.meta.b`;
  return seqOf(a) >= seqOf(b) ? a : b;
}

test('item 15: one bit flip in the newest meta slot never brings front-truncated records back', async () => {
  for (const close of [true, false]) {
    const fs = new SimulatedFileSystem({ seed: 15 });
    const wal = await writeLog(fs, 10, false);
    await wal.truncateFront(6);
    if (close) await wal.close();
    fs.flipBit(newestMetaSlot(fs), 8, 1);
    let first: number | undefined;
    try {
      const reopened = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
      first = reopened.firstIndex;
      await reopened.close();
    } catch (err) {
      // Refusing loudly is acceptable; silently reverting is not.
      assert.ok(err instanceof CairnError && err.code === 'WAL_CORRUPT', String(err));
      continue;
    }
    assert.equal(first, 6, `closed=${close}: the first index went back to ${first}`);
  }
});

test('issue #12: opening a small log does not read its whole preallocated tail', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const segmentBytes = 8 * 1024 * 1024;
    const wal = await Wal.open({ fs: new WrappingFileSystem(), dir, segmentBytes });
    for (let i = 0; i < 100; i++) wal.append([payloadFor(i, RECORD_BYTES)]);
    await wal.sync();
    await wal.close();
    const counting = new WrappingFileSystem();
    const reopened = await Wal.open({ fs: counting, dir, segmentBytes });
    assert.equal(reopened.nextIndex, 100);
    await reopened.close();
    assert.ok(
      counting.bytesRead < segmentBytes / 8,
      `open read ${counting.bytesRead} bytes of a ${segmentBytes}-byte preallocated tail holding ${100 * FRAME_BYTES} bytes of data`,
    );
  } finally {
    cleanup();
  }
});
