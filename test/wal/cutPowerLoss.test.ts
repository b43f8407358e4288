/**
 * Two rollbacks in a row (the second issued before the first's disk work ran) and a front
 * truncation beside them, cut by a power failure at every file-system call, each image taken with
 * page-subset writeback. Frames span pages, and the records past the cuts carry `syncedNext` proofs,
 * so a cut that ran while the meta did not say CUT could leave zeroed frames in front of stale,
 * intact ones that read as damage to synced data. Every image must open (WAL_CORRUPT never) and keep
 * every record below the lower cut.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errnoCode } from '../../src/lib/errors.ts';
import { seedFromEnv } from '../../src/lib/rng.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';

const DIR = '/w';
const SEGMENT_BYTES = 256 * 1024;
const PAYLOAD_BYTES = 3000;
const IMAGES_PER_POINT = 12;

function payload(i: number): Uint8Array {
  return new Uint8Array(PAYLOAD_BYTES).fill((i * 37 + 1) & 0xff);
}

/** The workload; `onReady` runs once every record is synced, before the rollbacks. */
async function workload(fs: SimulatedFileSystem, onReady?: () => void): Promise<void> {
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: SEGMENT_BYTES, onWarning: () => {} });
  // Synced in three batches: the frames of the last two carry syncedNext 8 and 16.
  for (let batch = 0; batch < 3; batch++) {
    for (let i = 0; i < 8; i++) wal.append([payload(batch * 8 + i)]);
    await wal.sync();
  }
  onReady?.();
  // Unsynced records past the end too: they are what the page-subset model tears.
  for (let i = 24; i < 28; i++) wal.append([payload(i)]);
  await Promise.all([wal.truncateBack(20), wal.truncateBack(10), wal.truncateFront(2)]);
  await wal.close();
}

test('rollbacks in a row under a power cut at every call: never WAL_CORRUPT, the prefix below the lower cut kept', async () => {
  const seed = seedFromEnv();
  console.log(`cutPowerLoss seed ${seed} (replay with CAIRN_SEED=${seed})`);
  let readyAt = 0;
  const probe = new SimulatedFileSystem({ seed });
  await workload(probe, () => {
    readyAt = probe.mutationCount;
  });
  const total = probe.mutationCount;
  let states = 0;
  for (let k = readyAt + 1; k <= total; k++) {
    const fs = new SimulatedFileSystem({ seed: seed + k });
    fs.crashAfter(k, { data: 'pages', seed: seed * 31 + k });
    try {
      await workload(fs);
    } catch (err) {
      if (errnoCode(err) !== 'ECRASH' && !(err instanceof Error && /ECRASH/.test(err.message))) throw err;
    }
    const crashed = fs.crashedImage();
    for (let j = 0; j < IMAGES_PER_POINT; j++) {
      const image = j === 0 ? crashed : fs.crashImage({ data: 'pages', seed: seed * 7 + k * 101 + j });
      states++;
      let wal: Wal;
      try {
        wal = await Wal.open({ fs: image, dir: DIR, segmentBytes: SEGMENT_BYTES, onWarning: () => {} });
      } catch (err) {
        assert.fail(`crash after call ${k} (image ${j}, seed ${seed}): ${(err as Error).message}`);
      }
      try {
        assert.ok(wal.nextIndex >= 10, `crash after call ${k}: records below 10 were acknowledged`);
        for (let i = Math.max(wal.firstIndex, 0); i < 10; i++) assert.deepEqual(wal.read(i), payload(i));
      } finally {
        await wal.close();
      }
    }
  }
  console.log(`cutPowerLoss: ${total - readyAt} crash points, ${states} states`);
});
