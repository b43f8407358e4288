/**
 * Review finding: recovery's "intact frame after the damage" check (findIntactFrameAfter) only
 * considers bytes up to the last non-zero byte of the tail segment, so a later synced record that
 * ends in zero bytes (an empty payload, a payload ending in zeros) is cut off and not recognised.
 * The damage is then taken for a torn tail and synced records are silently truncated. (Seen first
 * as test/crash/wal-bitflip.test.ts failing with CAIRN_SEED=3384981673.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';

for (const [name, last] of [
  ['an empty payload', new Uint8Array(0)],
  ['a payload ending in zeros', new Uint8Array([7, 7, 0, 0, 0, 0])],
] as const) {
  test(`bit rot in a synced tail record followed by a synced record with ${name} fails loudly`, async () => {
    const fs = new SimulatedFileSystem({ seed: 1 });
    const wal = await Wal.open({ fs, dir: '/w', segmentBytes: 64 * 1024 });
    wal.append([new Uint8Array(40).fill(1), new Uint8Array(40).fill(2), last]);
    await wal.sync();
    const segment = wal.segments()[0]!;
    await wal.close();
    // Record 1 starts at 32 (segment header) + 16 + 40 (record 0); flip a bit in its payload.
    fs.flipBit(segment.file, 32 + 56 + 16 + 5, 3);
    await assert.rejects(
      Wal.open({ fs, dir: '/w', segmentBytes: 64 * 1024 }),
      (err: unknown) => isCairnError(err, 'WAL_CORRUPT'),
      'synced records 1 and 2 were dropped as a torn tail',
    );
  });
}
