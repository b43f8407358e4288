// Review (rrev2): `archiveFiles()` hands out paths without holding anything, so a caller reading a
// file can have it deleted under it by a prune. It is documented as a snapshot of names (tested
// below), and `leaseArchiveFiles()` pins the files until released. The lease tests fail on 8322612
// (no lease API: the only way to get the paths was the unpinned snapshot).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { makeBlock } from './support/fixtures.ts';
import { simSetup } from './support/harness.ts';

async function storeWithThreeFiles(seed: number) {
  const sim = simSetup(seed);
  const store = await sim.open({ blocksPerFile: 4 });
  for (let n = 0; n < 13; n++) await store.putBlock(makeBlock(seed * 100 + n, n));
  await store.pruneBelow(0); // every due window archived
  assert.deepEqual(
    store.archiveFiles().map((f) => [f.entry.first, f.entry.last]),
    [
      [0, 3],
      [4, 7],
      [8, 11],
    ],
  );
  return { sim, store };
}

test('archiveFiles() is a snapshot of names: a prune deletes the files it listed', async () => {
  const { sim, store } = await storeWithThreeFiles(1);
  const names = store.archiveFiles();
  assert.equal(await store.pruneBelow(8), 8);
  for (const f of names.slice(0, 2)) {
    assert.equal(sim.fs.exists(f.receiptsPath), false, `${f.receiptsPath} was deleted by the prune`);
    assert.equal(sim.fs.exists(f.logsPath), false);
  }
  assert.ok(sim.fs.exists(names[2]!.receiptsPath));
  await store.close();
});

test('leaseArchiveFiles(): a prune unlists leased files but deletes them only at release', async () => {
  const { sim, store } = await storeWithThreeFiles(2);
  const lease = store.leaseArchiveFiles();
  const before = lease.files.map((f) => [
    sim.fs.readFileBytes(f.receiptsPath),
    sim.fs.readFileBytes(f.logsPath),
  ]);
  assert.equal(await store.pruneBelow(8), 8);
  assert.deepEqual(
    store.archiveFiles().map((f) => f.entry.first),
    [8],
    'the prune took effect for everyone else',
  );
  // A reader of the lease still finds every file, byte for byte.
  lease.files.forEach((f, i) => {
    assert.deepEqual(sim.fs.readFileBytes(f.receiptsPath), before[i]![0]);
    assert.deepEqual(sim.fs.readFileBytes(f.logsPath), before[i]![1]);
  });
  // A second lease taken now does not see (or pin) the unlisted files.
  const second = store.leaseArchiveFiles();
  assert.deepEqual(
    second.files.map((f) => f.entry.first),
    [8],
  );
  lease.release();
  lease.release(); // idempotent: the counts are not decremented twice
  for (const f of lease.files.slice(0, 2)) {
    assert.equal(sim.fs.exists(f.receiptsPath), false, 'deleted once the lease is released');
    assert.equal(sim.fs.exists(f.logsPath), false);
  }
  assert.ok(sim.fs.exists(lease.files[2]!.receiptsPath), 'a listed file stays');
  // The file the second lease still pins survives a prune past it until that lease goes too.
  assert.equal(await store.pruneBelow(12), 12);
  assert.ok(sim.fs.exists(second.files[0]!.receiptsPath));
  second.release();
  assert.equal(sim.fs.exists(second.files[0]!.receiptsPath), false);
  await store.close();
});

test('leaseArchiveFiles(): refused with CLOSED on a closed store; close does not wait for a lease', async () => {
  const { sim, store } = await storeWithThreeFiles(3);
  const lease = store.leaseArchiveFiles();
  await store.pruneBelow(4);
  await store.close(); // returns although the lease is held
  assert.throws(
    () => store.leaseArchiveFiles(),
    (err: unknown) => isCairnError(err, 'CLOSED'),
  );
  lease.release(); // after close: nothing deleted by a closed store, no throw
  assert.ok(sim.fs.exists(lease.files[0]!.receiptsPath), 'left for the next open to remove');
  sim.restartKv();
  const reopened = await sim.open({ blocksPerFile: 4 });
  assert.equal(sim.fs.exists(lease.files[0]!.receiptsPath), false, 'the next open removed the unlisted file');
  assert.deepEqual(
    reopened.archiveFiles().map((f) => f.entry.first),
    [4, 8],
  );
  await reopened.close();
});
