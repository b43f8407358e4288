/**
 * Hostile review (rwal): record payloads are caller data (blocks, transactions), so they can hold
 * bytes that look like an intact frame of the same log. Recovery's proof search (recovery.ts
 * `damageToSyncedData`) scans a torn tail byte by byte; a frame forged inside the torn record's
 * own payload, with an index and `syncedNext` above the torn record, then reads as proof that
 * synced data was damaged, and a healthy log whose only damage is an unsynced, torn last record is
 * refused with WAL_CORRUPT. (A torn record whose header page was lost and whose payload page
 * reached the disk is an ordinary power-cut state.)
 *
 * Not fixed on this branch: the forged frame passes every check a real frame passes, so telling
 * them apart needs something a payload cannot know, e.g. a random per-segment salt in the segment
 * header folded into each frame's CRC (a frame format change). The test is `todo` until then.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { encodeFrame, FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import { encodeSegmentHeader, SEGMENT_HEADER_BYTES, segmentFileName } from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor } from './helpers.ts';

const DIR = '/wal';
const SEGMENT_BYTES = 64 * 1024;
const TAIL = `${DIR}/${segmentFileName(0)}`;

/**
 * Frames 0..9 (each written after the fsync of the records before it), then record 10, unsynced,
 * whose header is lost (zeroed) or whose payload is torn. Record 10's payload is `payload10`.
 */
function tornTailLog(payload10: Uint8Array, how: 'zero-header' | 'torn-payload'): SimulatedFileSystem {
  const fs = new SimulatedFileSystem({ seed: 11 });
  fs.mkdir(DIR);
  const bytes = new Uint8Array(SEGMENT_BYTES);
  bytes.set(encodeSegmentHeader(0), 0);
  let at = SEGMENT_HEADER_BYTES;
  for (let i = 0; i < 10; i++) {
    const frame = encodeFrame(i, payloadFor(i, 100), i);
    bytes.set(frame, at);
    at += frame.byteLength;
  }
  bytes.set(encodeFrame(10, payload10, 10), at);
  if (how === 'zero-header') bytes.fill(0, at, at + FRAME_HEADER_BYTES);
  else bytes[at + FRAME_HEADER_BYTES + payload10.byteLength - 1]! ^= 0x40;
  fs.writeFileBytes(TAIL, bytes);
  return fs;
}

/** A payload holding, at byte 8, a frame of index 12 that claims records below 11 were fsynced. */
function payloadWithForgedFrame(): Uint8Array {
  const payload = new Uint8Array(200).fill(0x5a);
  payload.set(encodeFrame(12, new Uint8Array([1, 2, 3, 4]), 11), 8);
  return payload;
}

async function recoveredNext(fs: SimulatedFileSystem): Promise<number> {
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES, onWarning: () => {} });
  try {
    return wal.nextIndex;
  } finally {
    await wal.close();
  }
}

for (const how of ['zero-header', 'torn-payload'] as const) {
  test(`control (${how}): a torn, unsynced last record is cut`, async () => {
    assert.equal(await recoveredNext(tornTailLog(new Uint8Array(200).fill(0x5a), how)), 10);
  });

  test(`a frame forged inside a torn record's payload does not make recovery refuse the log (${how})`, {
    todo: 'needs a per-segment salt in the frame CRC (frame format change); see the file comment',
  }, async () => {
    assert.equal(await recoveredNext(tornTailLog(payloadWithForgedFrame(), how)), 10);
  });
}
