/** `planSalvage` / `applySalvage` on the simulated file system: where the cut goes, what is kept aside. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { FRAME_HEADER_BYTES, FRAME_HEADER_BYTES_V1 } from '../../src/wal/frame.ts';
import { applySalvage, planSalvage } from '../../src/wal/salvage.ts';
import { SEGMENT_HEADER_BYTES, segmentFileName } from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor, writeV1Segment } from './helpers.ts';

const DIR = '/wal';
const FRAME = FRAME_HEADER_BYTES + 100;
const TAIL = `${DIR}/${segmentFileName(0)}`;

async function killedLog(fs: SimulatedFileSystem, records: number): Promise<void> {
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
  for (let i = 0; i < records; i++) wal.append([payloadFor(i, 100)]);
  await wal.sync(); // then the process dies: no clean close, the marker stays at 0
}

test('a zeroed frame header in a version-1 tail: salvage cuts there, keeps the rest aside, and the log opens', async () => {
  const fs = new SimulatedFileSystem({ seed: 3 });
  // A log of an earlier build (version-1 frames: no synced index, so the old rule refuses to open).
  const V1_FRAME = FRAME_HEADER_BYTES_V1 + 100;
  const payloads = Array.from({ length: 10 }, (_, i) => payloadFor(i, 100));
  writeV1Segment(fs, DIR, 0, payloads, 64 * 1024);
  const bytes = fs.readFileBytes(TAIL);
  const at = SEGMENT_HEADER_BYTES + 6 * V1_FRAME;
  bytes.fill(0, at, at + FRAME_HEADER_BYTES_V1);
  fs.writeFileBytes(TAIL, bytes);
  await assert.rejects(Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 }), (e) =>
    isCairnError(e, 'WAL_CORRUPT'),
  );
  const plan = planSalvage(fs, DIR);
  assert.equal(plan.cut?.index, 6);
  assert.equal(plan.cut?.offset, at);
  assert.equal(plan.cut?.intactAfter?.index, 7);
  assert.equal(plan.cut?.syncedProof, undefined);
  const aside = applySalvage(fs, plan, 'test');
  const copy = fs.readFileBytes(`${aside}/${segmentFileName(0)}.from-${at}`);
  assert.deepEqual(
    copy.subarray(FRAME_HEADER_BYTES_V1, V1_FRAME),
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

test('version 2: a zeroed frame header in a killed log opens by itself when no later frame proves it synced', async () => {
  const fs = new SimulatedFileSystem({ seed: 5 });
  await killedLog(fs, 10);
  const bytes = fs.readFileBytes(TAIL);
  const at = SEGMENT_HEADER_BYTES + 6 * FRAME;
  bytes.fill(0, at, at + FRAME_HEADER_BYTES);
  fs.writeFileBytes(TAIL, bytes);
  const plan = planSalvage(fs, DIR);
  assert.equal(plan.cut?.index, 6);
  assert.equal(plan.cut?.syncedProof, undefined);
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
  assert.equal(wal.nextIndex, 6, 'recovery cut the torn tail itself');
  await wal.close();
});

test('version 2: salvage refuses a cut when a later frame proves the damaged record was fsynced', async () => {
  const fs = new SimulatedFileSystem({ seed: 6 });
  const wal = await Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 });
  for (let i = 0; i < 10; i++) wal.append([payloadFor(i, 100)]);
  await wal.sync();
  wal.append([payloadFor(10, 100)]);
  await wal.sync(); // then the process dies: the marker stays at 0, record 10's frame says 10
  const bytes = fs.readFileBytes(TAIL);
  const at = SEGMENT_HEADER_BYTES + 6 * FRAME;
  bytes.fill(0, at, at + FRAME_HEADER_BYTES);
  fs.writeFileBytes(TAIL, bytes);
  await assert.rejects(Wal.open({ fs, dir: DIR, segmentBytes: 64 * 1024 }), (e) =>
    isCairnError(e, 'WAL_CORRUPT'),
  );
  const plan = planSalvage(fs, DIR);
  assert.match(plan.cut?.syncedProof ?? '', /record 10 at offset \d+ after it is intact/);
  const before = fs.readFileBytes(TAIL);
  assert.throws(
    () => applySalvage(fs, plan, 'x'),
    (e) => isCairnError(e, 'WAL_CORRUPT') && /was fsynced/.test((e as Error).message),
  );
  assert.deepEqual(fs.readFileBytes(TAIL), before, 'a refused salvage changes nothing');
  assert.ok(!fs.exists(`${DIR}/salvaged-x`));
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
