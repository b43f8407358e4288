import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommitQCPersister } from '../../src/consensus/commitQCPersister.ts';
import { NullLogOpener, WalLogOpener } from '../../src/consensus/logOpener.ts';
import { PersistenceMetrics } from '../../src/consensus/metrics.ts';
import type { CommitQC } from '../../src/domain/types.ts';
import type { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { expectCairn, simFs, smallFixture } from './helpers.ts';

const DIR = '/data/commitqcs';

function open(fs: SimulatedFileSystem, initialRoad = 0) {
  return CommitQCPersister.open({
    opener: new WalLogOpener({ fs, segmentBytes: 4096, preallocate: false }),
    dir: DIR,
    initialRoad,
    metrics: new PersistenceMetrics(),
  });
}

function chain(n: number, seed = 31): CommitQC[] {
  const f = smallFixture(3, seed);
  for (let i = 0; i < n; i++) {
    f.produceRound(1);
    f.nextCommitQC();
  }
  return f.commitQCs;
}

const roads = (qcs: readonly CommitQC[]) => qcs.map((q) => q.roadIndex);

test('persist and reload; one fsync per call; gaps rejected', async () => {
  const fs = simFs();
  const qcs = chain(5);
  let { persister, loaded } = await open(fs);
  assert.deepEqual([loaded, persister.next], [[], 0]);
  const published: number[] = [];
  const r = await persister.persist(qcs.slice(0, 3), { onDurable: (qc) => published.push(qc.roadIndex) });
  assert.deepEqual([r.appended, r.next], [3, 3]);
  assert.deepEqual(published, [2], 'the newest durable QC is published once per batch');
  await expectCairn(
    () => persister.persist([qcs[4]!]),
    'GAP',
    /CommitQC 4 would leave a gap \(next expected 3\)/,
  );
  await persister.close();
  ({ persister, loaded } = await open(fs));
  assert.deepEqual([roads(loaded), persister.next], [[0, 1, 2], 3]);
  await persister.close();
});

test('AC-07 a CommitQC duplicate is a silent no-op and the cursor does not change; a conflicting one is an error', async () => {
  const fs = simFs();
  const qcs = chain(3);
  const { persister } = await open(fs);
  await persister.persist(qcs);
  const published: number[] = [];
  const r = await persister.persist([qcs[1]!], { onDurable: (qc) => published.push(qc.roadIndex) });
  assert.deepEqual([r.appended, r.duplicates, persister.next], [0, 1, 3]);
  assert.deepEqual(published, [], 'a duplicate is never (re-)published');
  const forged = { ...qcs[1]!, createdAtMs: qcs[1]!.createdAtMs + 1 };
  await expectCairn(
    () => persister.persist([forged]),
    'CONFLICT',
    /different CommitQC 1 is already persisted/,
  );
  assert.equal(persister.next, 3);
  await persister.close();
});

test('truncation below the anchor keeps the anchor road; stale anchors change nothing', async () => {
  const fs = simFs();
  const qcs = chain(8);
  let { persister } = await open(fs);
  await persister.persist(qcs.slice(0, 5));
  await persister.pruneAndPersist(qcs[3], []);
  assert.deepEqual([persister.first, persister.next], [3, 5]);
  await persister.pruneAndPersist(qcs[2], []); // older anchor: nothing
  assert.equal(persister.first, 3);
  await persister.pruneAndPersist(qcs[3], qcs.slice(5, 8));
  await persister.close();
  const reopened = await open(fs);
  persister = reopened.persister;
  assert.deepEqual(roads(reopened.loaded), [3, 4, 5, 6, 7]);
  await persister.close();
});

test('anchor past every QC: the log is emptied, re-positioned and the anchor QC written back', async () => {
  const fs = simFs();
  const qcs = chain(13);
  let { persister } = await open(fs);
  await persister.persist(qcs.slice(0, 3));
  const published: number[] = [];
  const r = await persister.pruneAndPersist(qcs[10], [qcs[11]!], {
    onDurable: (qc) => published.push(qc.roadIndex),
  });
  assert.deepEqual([r.repositioned, r.appended, persister.first, persister.next], [true, 2, 10, 12]);
  assert.deepEqual(published, [11]);
  await persister.close();
  const reopened = await open(fs);
  persister = reopened.persister;
  assert.deepEqual(roads(reopened.loaded), [10, 11]);
  await persister.close();
});

test('AC-08 crash after the CommitQC log was emptied: the anchor re-establishes the position, appends and reload work', async () => {
  const fs = simFs(8);
  const qcs = chain(13);
  let { persister } = await open(fs);
  await persister.persist(qcs.slice(0, 3));
  // The crash state: the log emptied and re-positioned (durably) at road 10, the anchor QC not yet written back.
  await persister.close();
  const wal = await new WalLogOpener({ fs, segmentBytes: 4096, preallocate: false }).open(DIR, 0);
  await wal.reset(10);
  await wal.close();
  let loaded: CommitQC[];
  ({ persister, loaded } = await open(fs));
  assert.deepEqual([loaded.length, persister.next], [0, 10], 'the position survived the crash');
  // Without the anchor QC, road 11 would be a gap; the anchor call writes it back first.
  await expectCairn(() => persister.persist([qcs[11]!]), 'GAP');
  await persister.pruneAndPersist(qcs[10], [qcs[11]!]);
  await persister.close();
  ({ persister, loaded } = await open(fs));
  assert.deepEqual(roads(loaded), [10, 11]);
  await persister.close();
});

test('AC-09 no-op CommitQC persister follows anchors and appends, including a future anchor', async () => {
  const qcs = chain(13);
  const { persister, loaded } = await CommitQCPersister.open({
    opener: new NullLogOpener(),
    dir: DIR,
    metrics: new PersistenceMetrics(),
  });
  assert.deepEqual(loaded, []);
  const published: number[] = [];
  const onDurable = (qc: CommitQC) => published.push(qc.roadIndex);
  await persister.persist(qcs.slice(0, 3), { onDurable });
  await persister.pruneAndPersist(qcs[1], [], { onDurable }); // past anchor: cursor stays
  assert.equal(persister.next, 3);
  await persister.pruneAndPersist(qcs[10], [qcs[11]!], { onDurable }); // future anchor
  assert.equal(persister.next, 12);
  await persister.persist([qcs[12]!], { onDurable });
  await expectCairn(
    () => persister.persist([qcs[12]!, qcs[12]!].slice(1).map((q) => ({ ...q, roadIndex: 14 }))),
    'GAP',
  );
  assert.deepEqual(published, [2, 11, 12]);
  await persister.close();
  await persister.close(); // idempotent
});
