import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WalLogOpener } from '../../src/consensus/logOpener.ts';
import { TypedLog } from '../../src/consensus/typedLog.ts';
import { commitQCCodec } from '../../src/domain/codecs.ts';
import type { CommitQC } from '../../src/domain/types.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { expectCairn, simFs, smallFixture } from './helpers.ts';

const DIR = '/data/log';

async function openLog(fs: SimulatedFileSystem, initial = 0): Promise<TypedLog<CommitQC>> {
  const wal = await new WalLogOpener({ fs, segmentBytes: 4096, preallocate: false }).open(DIR, initial);
  return new TypedLog(DIR, wal, commitQCCodec, (qc) => qc.roadIndex);
}

function qcs(n: number): CommitQC[] {
  const f = smallFixture(3, 21);
  for (let i = 0; i < n; i++) {
    f.produceRound(1);
    f.nextCommitQC();
  }
  return f.commitQCs;
}

test('a fresh log is empty and reads back nothing', async () => {
  const log = await openLog(simFs());
  assert.equal(log.count, 0);
  assert.equal(log.firstIndex, log.nextIndex);
  assert.deepEqual(log.readAll(), []);
  await log.close();
});

test('append, sync, reopen: same records, same bounds; index checked on append', async () => {
  const fs = simFs();
  const all = qcs(5);
  let log = await openLog(fs);
  log.append(all.slice(0, 3));
  await log.sync();
  await expectCairn(() => log.append([all[4]!]), 'OUT_OF_ORDER', /index 4 appended where 3 is next/);
  await log.close();
  log = await openLog(fs);
  assert.deepEqual([log.firstIndex, log.nextIndex, log.count], [0, 3, 3]);
  assert.deepEqual(
    log.readAll().map((q) => q.roadIndex),
    [0, 1, 2],
  );
  await log.close();
});

test('AC-01 truncateAll keeps the position across writes and reopen', async () => {
  const fs = simFs();
  const all = qcs(6);
  let log = await openLog(fs);
  log.append(all.slice(0, 4));
  await log.sync();
  await log.truncateAll();
  assert.deepEqual([log.firstIndex, log.nextIndex, log.count], [4, 4, 0]);
  await log.close();
  log = await openLog(fs);
  assert.deepEqual([log.firstIndex, log.nextIndex, log.count], [4, 4, 0], 'position survives reopen');
  await expectCairn(() => log.append([all[0]!]), 'OUT_OF_ORDER');
  log.append([all[4]!]);
  await log.sync();
  await log.close();
  log = await openLog(fs);
  assert.deepEqual(
    log.readAll().map((q) => q.roadIndex),
    [4],
  );
  // truncateAll can also move the position forward (re-anchoring), never back.
  await log.truncateAll(9);
  await expectCairn(() => log.truncateAll(5), 'OUT_OF_RANGE', /would move the log back from 9/);
  await log.truncateAll(); // no-op on an empty log at its position
  await log.close();
  log = await openLog(fs);
  assert.deepEqual([log.firstIndex, log.nextIndex], [9, 9]);
  await log.close();
});

test('truncateBefore verifies the entry at the cut, checks bounds, and survives reopen', async () => {
  const fs = simFs();
  const all = qcs(5);
  let log = await openLog(fs);
  log.append(all);
  await log.sync();
  let seen: number | undefined;
  await assert.rejects(
    log.truncateBefore(3, (qc) => {
      seen = qc.roadIndex;
      throw new Error('refused');
    }),
    /refused/,
  );
  assert.equal(seen, 3);
  assert.equal(log.firstIndex, 0, 'a rejected verify changes nothing');
  await expectCairn(() => log.truncateBefore(6), 'OUT_OF_RANGE', /outside \[0, 5\]/);
  await log.truncateBefore(3, (qc) => assert.equal(qc.roadIndex, 3));
  await log.truncateBefore(3); // already there: no-op
  await log.close();
  log = await openLog(fs);
  assert.deepEqual(
    log.readAll().map((q) => q.roadIndex),
    [3, 4],
  );
  await expectCairn(() => log.truncateBefore(2), 'OUT_OF_RANGE');
  await log.truncateBefore(5); // truncate at next: everything, position kept
  assert.deepEqual([log.firstIndex, log.nextIndex], [5, 5]);
  await log.close();
});

test('readAll detects records that carry the wrong index and records that vanished', async () => {
  const fs = simFs();
  const all = qcs(3);
  const wal = await new WalLogOpener({ fs, segmentBytes: 4096, preallocate: false }).open(DIR, 0);
  // Write road 1's QC at index 0 through the raw WAL: a misfiled record.
  wal.append([commitQCCodec.encode(all[1]!)], 0);
  await wal.sync();
  const log = new TypedLog(DIR, wal, commitQCCodec, (qc) => qc.roadIndex);
  await expectCairn(() => log.readAll(), 'CORRUPT', /record at index 0 carries index 1/);
  // A log whose iteration yields fewer records than it counts: silent loss is reported.
  const lossy = new TypedLog(
    DIR,
    { ...wal, firstIndex: 0, nextIndex: 2, count: 2, iterate: () => wal.iterate(0, 1) } as never,
    commitQCCodec,
    () => 0,
  );
  await expectCairn(() => lossy.readAll(), 'DATA_LOSS', /read 1 records of \[0, 2\), expected 2/);
  await wal.close();
});
