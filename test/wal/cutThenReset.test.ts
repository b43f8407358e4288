/**
 * Review (rrev2): a truncateBack(n) followed, before it resolved, by a reset(n) (legal: the cut makes
 * n the next index at once). When n is the first index of the tail segment, the reset reuses that
 * segment (empty after the cut) with its salt; its commit point, the meta with first index n, can
 * reach the disk before the cut's truncate of the segment does. Power cut at every mutation of the
 * two calls: recovery must give one of the logs the calls can leave (nothing applied: [0, 10); the
 * cut only: [0, n); both: empty at n), never the truncated records n.. under the reset's first index
 * (a log no sequence of these calls produces, handing back records the caller cut).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import { SEGMENT_HEADER_BYTES } from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor } from './helpers.ts';

const DIR = '/wal';
const PAYLOAD = 100;
/** Five records fill a segment: segment boundaries at 0, 5, 10. */
const SEGMENT_BYTES = SEGMENT_HEADER_BYTES + 5 * (FRAME_HEADER_BYTES + PAYLOAD);
const open = (fs: SimulatedFileSystem) => Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES });

async function prepared(seed: number): Promise<SimulatedFileSystem> {
  const fs = new SimulatedFileSystem({ seed });
  const wal = await open(fs);
  for (let i = 0; i < 10; i++) wal.append([payloadFor(i, PAYLOAD)]);
  await wal.sync();
  await wal.close();
  fs.makeEverythingDurable();
  return fs;
}

for (const [cut, resetTo] of [
  [5, 5],
  [5, 6],
  [7, 7],
] as const) {
  test(`power loss across truncateBack(${cut}) then reset(${resetTo}), neither awaited first: recovery yields a log the calls can leave`, async () => {
    const seed = seedFromEnv();
    const rng = new Rng(seed);
    const session = async (fs: SimulatedFileSystem): Promise<void> => {
      const wal = await open(fs);
      const a = wal.truncateBack(cut);
      const b = wal.reset(resetTo);
      await Promise.all([a, b]);
      await wal.close();
    };
    const dry = await prepared(1);
    const before = dry.mutationCount;
    await session(dry);
    const total = dry.mutationCount - before;
    let images = 0;
    const seen = new Set<string>();
    for (let at = 1; at <= total; at++) {
      for (let variant = 0; variant < 4; variant++) {
        const fs = await prepared(rng.nextU32());
        fs.crashAfter(fs.mutationCount + at, { seed: rng.nextU32() });
        await session(fs).catch(() => undefined);
        const image = fs.crashedImage();
        images++;
        const where = `crash after mutation ${at} of ${total}, variant ${variant} (CAIRN_SEED=${seed})`;
        const wal = await open(image).catch((err: unknown) => assert.fail(`${where}: ${String(err)}`));
        try {
          const range = `[${wal.firstIndex}, ${wal.nextIndex})`;
          seen.add(range);
          const admissible = [`[0, 10)`, `[0, ${cut})`, `[${resetTo}, ${resetTo})`];
          assert.ok(
            admissible.includes(range),
            `${where}: recovered ${range}, expected one of ${admissible.join(' ')}`,
          );
          for (let i = wal.firstIndex; i < wal.nextIndex; i++) {
            assert.deepEqual(wal.read(i), payloadFor(i, PAYLOAD), `${where}: record ${i}`);
          }
        } finally {
          await wal.close();
        }
      }
    }
    console.log(`cutThenReset(${cut}, ${resetTo}): ${images} images, recovered ${[...seen].join(' ')}`);
  });
}
