// Rotation in the background (receiptStore.ts rotateDue): while the archive engine writes a window,
// the write path keeps acknowledging blocks; the archive lags by at most one converting window (a
// second due window holds the writes back); pruneBelow, waitForArchive and close finish the window
// first. (Power loss during a background rotation: crash.test.ts, whose crash points include it.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { makeBlock } from './support/fixtures.ts';
import { ProbeArchive, simSetup } from './support/harness.ts';

const SEED = 11;
const gate = () => {
  let open = (): void => undefined;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
};
const settled = async (p: Promise<unknown>): Promise<boolean> => {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  return done;
};

test('writes are acknowledged while a window converts; a second due window holds writes back', async () => {
  let probe: ProbeArchive | undefined;
  const sim = simSetup(SEED, (a) => {
    probe = new ProbeArchive(a);
    return probe;
  });
  const store = await sim.open(); // 4 blocks per file
  const g = gate();
  probe!.writeGate = g.promise;
  for (let n = 0; n < 4; n++) await store.putBlock(makeBlock(SEED, n)); // window 0..3 starts converting
  for (let n = 4; n < 8; n++) await store.putBlock(makeBlock(SEED, n)); // acknowledged meanwhile
  assert.equal(store.ranges().latest, 7);
  assert.equal(store.ranges().archivedThrough, -1, 'nothing listed while the engine works');
  assert.deepEqual(
    sim.fs.readdir('/r/archive').filter((n) => n.endsWith('.parquet')),
    [],
    'no final file name before the rotation ends',
  );
  const r = await store.getReceipt(makeBlock(SEED, 2).receipts[0]!.txHash);
  assert.equal(r?.blockNumber, 2, 'the converting window is read from the hot tier');
  // Window 4..7 is due while 0..3 still converts: the write loop waits, so block 8 is not acknowledged.
  const ninth = store.putBlock(makeBlock(SEED, 8));
  assert.equal(await settled(ninth), false, 'writes wait while two windows are due');
  g.open();
  await ninth;
  await store.waitForArchive();
  assert.deepEqual(
    store.archiveFiles().map((f) => [f.entry.first, f.entry.last]),
    [
      [0, 3],
      [4, 7],
    ],
  );
  assert.equal(probe!.calls.writeWindow, 2);
  await store.close();
});

test('close and pruneBelow finish the converting window; a failure in it is fatal for both', async () => {
  let probe: ProbeArchive | undefined;
  const sim = simSetup(SEED + 1, (a) => {
    probe = new ProbeArchive(a);
    return probe;
  });
  let store = await sim.open();
  let g = gate();
  probe!.writeGate = g.promise;
  for (let n = 0; n < 5; n++) await store.putBlock(makeBlock(SEED, n));
  const pruned = store.pruneBelow(2);
  assert.equal(await settled(pruned), false, 'the prune waits for the converting window');
  g.open();
  assert.equal(await pruned, 2, 'the prune sees window 0..3 archived');
  g = gate();
  probe!.writeGate = g.promise;
  for (let n = 5; n < 8; n++) await store.putBlock(makeBlock(SEED, n)); // window 4..7 converting
  const closing = store.close();
  assert.equal(await settled(closing), false, 'close waits for the converting window');
  g.open();
  await closing;
  sim.restartKv();
  store = await sim.open();
  assert.equal(store.ranges().archivedThrough, 7, 'the window finished before close is listed');
  // A failing conversion: the prune reports it, the store is poisoned.
  probe!.failWrites = 1;
  for (let n = 8; n < 12; n++) await store.putBlock(makeBlock(SEED, n));
  await assert.rejects(store.pruneBelow(0), (e) => isCairnError(e) && e.kind === 'fatal');
  await assert.rejects(store.putBlock(makeBlock(SEED, 12)), (e) => isCairnError(e) && e.kind === 'fatal');
  await assert.rejects(store.close());
  sim.restartKv();
  store = await sim.open();
  assert.equal(store.ranges().latest, 11, 'every acknowledged block is back');
  assert.equal(store.ranges().archivedThrough, 11, 'open archives the window that failed');
  await store.close();
});
