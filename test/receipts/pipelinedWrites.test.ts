// The write path pipelines a group's hot-tier batch with the next group's WAL append and fsync
// (receiptStore.ts writeGroup). These tests hold a hot-tier batch write open and check what may
// and may not happen meanwhile: the next group reaches the WAL but nobody is acknowledged, a
// re-submission of a block whose batch is in flight is acknowledged with it (never CONFLICT or
// CORRUPT), a queued task (close) waits for the write, a failed batch rejects both groups, and a
// power cut while the batch is in flight recovers every block the WAL holds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KvBatch } from '../../src/kv/orderedKv.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng } from '../../src/lib/rng.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import { expectedLogs, logKeys, makeBlock } from './support/fixtures.ts';
import { simSetup } from './support/harness.ts';
import { HoldableKv } from './support/holdableKv.ts';
import { MemoryArchive } from './support/memoryArchive.ts';

/** A KV whose unsynced batch writes can be held (all of them, until released) or failed. */
class GatedKv extends HoldableKv {
  failNext = false;
  writes = 0;
  protected override async writeBatch(inner: KvBatch, options: { sync: boolean }): Promise<void> {
    if (this.hold && !options.sync) await this.whileHeld();
    this.writes++;
    if (this.failNext) {
      this.failNext = false;
      throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
    }
    await inner.write(options);
  }
}

const turns = async (n = 20): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

function tracked(p: Promise<void>): { settled: () => string | undefined } {
  let state: string | undefined;
  p.then(
    () => {
      state = 'ok';
    },
    (err: unknown) => {
      state = isCairnError(err) ? err.code : String(err);
    },
  );
  return { settled: () => state };
}

async function openGated(seed: number) {
  const sim = simSetup(seed);
  const kv = new GatedKv(new MemoryKv());
  const options = {
    dir: '/r',
    fs: sim.fs,
    kv,
    archive: new MemoryArchive(sim.fs),
    blocksPerFile: 1000,
    walSegmentBytes: 64 * 1024,
  };
  const store = await ReceiptStore.open(options);
  return { sim, kv, store, options };
}

test('while a group’s hot-tier batch is in flight the next group reaches the WAL, nothing is acknowledged, and acks come in block order', async () => {
  const { kv, store } = await openGated(71);
  const blocks = Array.from({ length: 8 }, (_, n) => makeBlock(71, n, { maxReceipts: 4 }));
  try {
    kv.hold = true;
    const first = blocks.slice(0, 4).map((b) => tracked(store.putBlock(b)));
    await turns();
    assert.equal(kv.heldCount, 1, 'the first group’s batch is being written');
    const second = blocks.slice(4).map((b) => tracked(store.putBlock(b)));
    // An identical re-submission of a block whose batch is still in flight.
    const again = tracked(store.putBlock(blocks[2]!));
    await turns();
    assert.equal(kv.heldCount, 1, 'the second group is not staged before the first batch is written');
    assert.deepEqual(
      [...first, ...second, again].map((t) => t.settled()),
      Array(9).fill(undefined),
      'nothing is acknowledged before its batch is written',
    );
    assert.equal(store.ranges().latest, -1);
    const order: number[] = [];
    const acks = blocks.map((b, i) => store.putBlock(b).then(() => order.push(i)));
    kv.release();
    await Promise.all(acks);
    await turns();
    assert.deepEqual(
      [...first, ...second, again].map((t) => t.settled()),
      Array(9).fill('ok'),
    );
    assert.deepEqual(
      order,
      blocks.map((_, i) => i),
    );
    assert.equal(store.ranges().latest, 7);
    assert.deepEqual(
      logKeys(await store.getLogs({ fromBlock: 0, toBlock: 7 })),
      logKeys(expectedLogs(blocks, {}, 0, 7)),
    );
  } finally {
    kv.release();
    await store.close();
  }
});

test('a queued task (close) waits for the hot-tier batch in flight; its checkpoint covers every acknowledged block', async () => {
  const { sim, kv, store, options } = await openGated(72);
  const blocks = Array.from({ length: 6 }, (_, n) => makeBlock(72, n, { maxReceipts: 4 }));
  kv.hold = true;
  const writes = blocks.map((b) => tracked(store.putBlock(b)));
  await turns();
  const closed = tracked(store.close());
  await turns();
  assert.equal(closed.settled(), undefined, 'close waits for the write in flight');
  kv.release();
  await store.close();
  assert.deepEqual(
    writes.map((w) => w.settled()),
    Array(6).fill('ok'),
  );
  // A power cut after the clean close: the synced checkpoint made every batch durable.
  const fs = sim.fs.crash({ data: 'drop', dirOps: 'drop' });
  const image = kv.inner.crashImage(new Rng(72));
  const again = await ReceiptStore.open({ ...options, fs, kv: image, archive: new MemoryArchive(fs) });
  try {
    assert.equal(again.ranges().latest, 5);
    for (const b of blocks) {
      for (const r of b.receipts) assert.equal((await again.getReceipt(r.txHash))?.blockNumber, b.number);
    }
  } finally {
    await again.close();
  }
});

test('a failed hot-tier batch rejects its group and the group behind it with one fatal error; reopen recovers both from the WAL', async () => {
  const { sim, kv, store, options } = await openGated(73);
  const blocks = Array.from({ length: 8 }, (_, n) => makeBlock(73, n, { maxReceipts: 4 }));
  kv.hold = true;
  const first = blocks.slice(0, 4).map((b) =>
    store.putBlock(b).then(
      () => 'ok',
      (e: unknown) => e,
    ),
  );
  await turns();
  const second = blocks.slice(4).map((b) =>
    store.putBlock(b).then(
      () => 'ok',
      (e: unknown) => e,
    ),
  );
  await turns();
  kv.failNext = true;
  kv.release();
  const results = await Promise.all([...first, ...second]);
  const cause = results[0];
  assert.ok(isCairnError(cause, 'IO_FATAL'), `got ${String(cause)}`);
  for (const r of results)
    assert.equal(r, cause, 'every write of both groups fails with the same latched error');
  await assert.rejects(store.putBlock(makeBlock(73, 8)), (e: unknown) => e === cause);
  await store.close().catch(() => undefined);
  // Nothing was acknowledged; the WAL holds both groups (fsynced before the failure), so a power
  // cut and reopen recover all eight blocks, in order, with their logs.
  const fs = sim.fs.crash({ data: 'drop', dirOps: 'drop' });
  const again = await ReceiptStore.open({
    ...options,
    fs,
    kv: kv.inner.crashImage(new Rng(73)),
    archive: new MemoryArchive(fs),
  });
  try {
    assert.equal(again.ranges().latest, 7);
    assert.deepEqual(
      logKeys(await again.getLogs({ fromBlock: 0, toBlock: 7 })),
      logKeys(expectedLogs(blocks, {}, 0, 7)),
    );
  } finally {
    await again.close();
  }
});

test('a power cut while a hot-tier batch is in flight recovers every block whose WAL entry was fsynced', async () => {
  const { sim, kv, store, options } = await openGated(74);
  const blocks = Array.from({ length: 10 }, (_, n) => makeBlock(74, n, { maxReceipts: 4 }));
  for (const b of blocks.slice(0, 3)) await store.putBlock(b);
  kv.hold = true;
  const pending = blocks.slice(3, 6).map((b) => store.putBlock(b).catch(() => undefined));
  await turns();
  const behind = blocks.slice(6).map((b) => store.putBlock(b).catch(() => undefined));
  await turns();
  assert.equal(kv.heldCount, 1);
  // The held batch never reaches the KV store: the image holds blocks 0..2 at most (unsynced,
  // any subset); the WAL holds 0..9 (the group behind was fsynced meanwhile).
  const fs = sim.fs.crash({ data: 'drop', dirOps: 'drop' });
  const image = kv.inner.crashImage(new Rng(74));
  const again = await ReceiptStore.open({ ...options, fs, kv: image, archive: new MemoryArchive(fs) });
  try {
    assert.equal(again.ranges().latest, 9);
    for (const b of blocks) {
      for (const r of b.receipts) assert.equal((await again.getReceipt(r.txHash))?.blockNumber, b.number);
    }
    assert.deepEqual(
      logKeys(await again.getLogs({ fromBlock: 0, toBlock: 9 })),
      logKeys(expectedLogs(blocks, {}, 0, 9)),
    );
  } finally {
    await again.close();
    kv.release();
    await Promise.all([...pending, ...behind]);
    await store.close().catch(() => undefined);
  }
});
