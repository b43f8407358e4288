/** `planSalvage` / `applySalvage` on the simulated file system: where the cut goes, what is kept aside. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import { applySalvage, planSalvage } from '../../src/wal/salvage.ts';
import { SEGMENT_HEADER_BYTES, segmentFileName } from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor } from './helpers.ts';

const DIR = '/wal';
const FRAME = FRAME_HEADER_BYTES + 100;
const TAIL = `${DIR}/${segmentFileName(0)}`;

async function killedLog(fs: SimulatedFileSystem, records: number): Promise<void> {
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
  for (let i = 0; i < records; i++) wal.append([payloadFor(i, 100)]);
  await wal.sync(); // then the process dies: no clean close, the marker stays at 0
}

test('a zeroed frame header in the tail of a killed log: salvage cuts there, keeps the rest aside, and the log opens', async () => {
  const fs = new SimulatedFileSystem({ seed: 3 });
  await killedLog(fs, 10);
  const bytes = fs.readFileBytes(TAIL);
  const at = SEGMENT_HEADER_BYTES + 6 * FRAME;
  bytes.fill(0, at, at + FRAME_HEADER_BYTES);
  fs.writeFileBytes(TAIL, bytes);
  await assert.rejects(Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 }), (e) =>
    isCairnError(e, 'WAL_CORRUPT'),
  );
  const plan = planSalvage(fs, DIR);
  assert.equal(plan.cut?.index, 6);
  assert.equal(plan.cut?.offset, at);
  assert.equal(plan.cut?.intactAfter?.index, 7);
  const aside = applySalvage(fs, plan, 'test');
  const copy = fs.readFileBytes(`${aside}/${segmentFileName(0)}.from-${at}`);
  assert.deepEqual(
    copy.subarray(FRAME_HEADER_BYTES, FRAME),
    payloadFor(6, 100),
    'the cut record is kept aside',
  );
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
  assert.equal(wal.nextIndex, 6);
  wal.append([payloadFor(6, 100)]);
  await wal.sync();
  await wal.close();
  assert.equal(planSalvage(fs, DIR).cut, undefined, 'nothing left to salvage');
});

test('salvage plans nothing for a healthy log and refuses damage below the durable marker', async () => {
  const fs = new SimulatedFileSystem({ seed: 4 });
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
  for (let i = 0; i < 10; i++) wal.append([payloadFor(i, 100)]);
  await wal.close();
  assert.equal(planSalvage(fs, DIR).cut, undefined);
  fs.flipBit(TAIL, SEGMENT_HEADER_BYTES + 3 * FRAME + 20, 1);
  const plan = planSalvage(fs, DIR);
  assert.equal(plan.cut?.index, 3);
  assert.equal(plan.durableNext, 10);
  const before = fs.readFileBytes(TAIL);
  assert.throws(() => applySalvage(fs, plan, 'x'), /below the durable marker 10/);
  assert.deepEqual(fs.readFileBytes(TAIL), before, 'a refused salvage changes nothing');
  assert.ok(!fs.exists(`${DIR}/salvaged-x`));
});
