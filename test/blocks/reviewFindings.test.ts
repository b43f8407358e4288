// Durability review of the record layer and the flush gate: each test names a behaviour that failed
// before its fix (see the review report). Deterministic: gates on the log's sync decide what is in
// flight; no timing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BLOCK_STORE_KINDS, BlockStore } from '../../src/blocks/blockStore.ts';
import { FlushGate } from '../../src/blocks/flushGate.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { RecordStore } from '../../src/records/recordStore.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';
import { GatedFileSystem } from '../consensus/helpers.ts';
import { makeChain } from './support/chain.ts';
import { MemoryLog } from './support/memoryLog.ts';

// Cohorts of 4 blocks: 2 lanes × 2 blocks per lane.
const chain = makeChain({ seed: 21, cohorts: 6 });

/** Holds every `sync()` of `log` until `open()`; `reached` resolves at the first held sync. */
function gateSyncs(log: MemoryLog): { reached: Promise<void>; open: () => void } {
  let open!: () => void;
  let hit!: () => void;
  const gate = new Promise<void>((r) => {
    open = r;
  });
  const reached = new Promise<void>((r) => {
    hit = r;
  });
  const real = log.sync.bind(log);
  log.sync = async () => {
    hit();
    await gate;
    return real();
  };
  return { reached, open };
}

/** 'pending' | 'resolved' | 'rejected' after every queued callback and a few event-loop turns ran. */
async function stateOf(p: Promise<unknown>): Promise<string> {
  let state = 'pending';
  p.then(
    () => {
      state = 'resolved';
    },
    () => {
      state = 'rejected';
    },
  );
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
  return state;
}

async function openBlocks(log: MemoryLog, kv: MemoryKv): Promise<BlockStore> {
  return BlockStore.open(await RecordStore.open({ log, kv, name: 'review', ...BLOCK_STORE_KINDS }));
}

describe('flush gate', () => {
  test('a block written by another writer while a batch is being flushed is not reported durable', async () => {
    // The real value log, with its fsync on the pool held at a gate: what the fsync covers is fixed
    // when it starts, so a block appended while it runs is not durable when it returns.
    const disk = new GatedFileSystem(new SimulatedFileSystem({ seed: 4 }), '/values/');
    const log = await Wal.open({
      fs: disk,
      dir: '/store/values',
      segmentBytes: 64 * 1024,
      syncOffThread: true,
    });
    const store = BlockStore.open(
      await RecordStore.open({ log, kv: new MemoryKv(), name: 'review', ...BLOCK_STORE_KINDS }),
    );
    const layer = new FlushGate(store);
    disk.hold();
    const syncsBefore = disk.gatedSyncs;
    const persisted = layer.persist({
      qcs: [chain.qcs[0]!, chain.qcs[1]!],
      blocks: [0, 1, 2, 3].map((n) => ({ number: n, block: chain.block(n) })),
    });
    while (disk.gatedSyncs === syncsBefore) await new Promise<void>((r) => setImmediate(r));
    // The fsync covering blocks 0..3 is in flight; block 4 arrives after it started.
    store.writeBlock(4, chain.block(4));
    disk.release();
    await persisted;
    assert.ok(log.durableIndex < log.nextIndex, 'precondition: block 4 is not durable');
    assert.equal(layer.durableBlockNext, 4, 'block 4 was reported durable before any fsync covered it');
    assert.equal(await stateOf(layer.waitFlushed(4)), 'pending', 'the vote on block 4 was released early');
    await store.close();
  });

  test('waiting votes reject when a prune fails and latches the store', async () => {
    const log = new MemoryLog();
    const kv = new MemoryKv();
    const store = await openBlocks(log, kv);
    const layer = new FlushGate(store);
    await layer.persist({
      qcs: [chain.qcs[0]!, chain.qcs[1]!],
      blocks: [0, 1, 2, 3, 4, 5].map((n) => ({ number: n, block: chain.block(n) })),
    });
    const vote = layer.waitFlushed(6);
    kv.failNextWrites(1); // the synced floor batch
    await assert.rejects(layer.pruneToRetainHeight(4), (e: unknown) => isCairnError(e, 'IO_FATAL'));
    assert.equal(await stateOf(vote), 'rejected', 'a vote waits forever on a store that can never flush');
    await assert.rejects(layer.waitFlushed(7), (e: unknown) => isCairnError(e, 'IO_FATAL'));
    await store.close().catch(() => undefined);
  });

  test('waiting votes reject with CLOSED when the layer closes', async () => {
    const store = await openBlocks(new MemoryLog(), new MemoryKv());
    const layer = new FlushGate(store);
    const vote = layer.waitFlushed(3);
    await layer.close();
    assert.equal(await stateOf(vote), 'rejected');
    await assert.rejects(vote, (e: unknown) => isCairnError(e, 'CLOSED'));
    await assert.rejects(layer.waitFlushed(9), (e: unknown) => isCairnError(e, 'CLOSED'));
    await assert.rejects(layer.persist({ qcs: [chain.qcs[0]!], blocks: [] }), (e: unknown) =>
      isCairnError(e, 'CLOSED'),
    );
    await store.close();
  });
});

describe('record layer', () => {
  const POINT = 1;
  const value = (n: number) => new Uint8Array([n, n, n]);

  test('pruning keeps a record appended (above the floor) while the prune was syncing', async () => {
    const log = new MemoryLog();
    const kv = new MemoryKv();
    const records = await RecordStore.open({ log, kv, name: 'points', rangedKinds: [], pointKinds: [POINT] });
    records.append(POINT, 0, 1, value(0));
    records.append(POINT, 1, 2, value(1));
    await records.flush();
    records.append(POINT, 2, 3, value(2)); // unflushed: the prune syncs it first
    const gate = gateSyncs(log);
    const pruned = records.pruneBefore(3);
    await gate.reached;
    records.append(POINT, 3, 4, value(3)); // above the floor, appended during the prune's fsync
    gate.open();
    await pruned;
    const got = records.get(POINT, 3);
    assert.equal(got.status, 'found', 'record 3 lies above the floor and must stay readable');
    if (got.status === 'found') assert.ok(bytesEqual(got.record.value, value(3)));
    await records.flush();
    await records.close();
    const reopened = await RecordStore.open({
      log: log.crashImage(0),
      kv: kv.reopenImage(),
      name: 'points',
      rangedKinds: [],
      pointKinds: [POINT],
    });
    assert.equal(reopened.get(POINT, 3).status, 'found', 'record 3 lost across a restart');
    assert.equal(reopened.get(POINT, 2).status, 'pruned');
    await reopened.close();
  });

  test('reads during a prune report pruned or found, never absent, for the numbers being pruned', async () => {
    const store = await openBlocks(new MemoryLog(), new MemoryKv());
    for (const qc of chain.qcs.slice(0, 3)) store.writeQC(qc);
    for (let n = 0; n < 12; n++) store.writeBlock(n, chain.block(n));
    await store.flush();
    const seen = new Set<string>();
    let done = false;
    const pruned = store.pruneBefore(8).finally(() => {
      done = true;
    });
    while (!done) {
      seen.add(store.readBlock(2).status);
      await Promise.resolve();
    }
    assert.equal(await pruned, 8);
    assert.equal(store.readBlock(2).status, 'pruned');
    assert.ok(!seen.has('absent'), `block 2 read as ${[...seen].join(', ')} during the prune`);
    await store.close();
  });
});

describe('bad input', () => {
  const invalid = (e: unknown) => isCairnError(e, 'INVALID_ARGUMENT');

  test('reads by a number that is not a non-negative safe integer are rejected with INVALID_ARGUMENT', async () => {
    const store = await openBlocks(new MemoryLog(), new MemoryKv());
    store.writeQC(chain.qcs[0]!);
    for (let n = 0; n < 4; n++) store.writeBlock(n, chain.block(n));
    await store.flush();
    for (const bad of [1.5, -1, Number.NaN, 2 ** 53]) {
      assert.throws(() => store.readBlock(bad), invalid, `readBlock(${bad})`);
      assert.throws(() => store.readQCForBlock(bad), invalid, `readQCForBlock(${bad})`);
      assert.throws(() => store.readRange(bad, 10), invalid, `readRange(${bad})`);
    }
    assert.equal(store.readBlock(3).status, 'found');
    await store.close();
  });

  test('a record-layer prune to an unsafe floor is rejected and leaves a store that reopens', async () => {
    const log = new MemoryLog();
    const kv = new MemoryKv();
    const records = await RecordStore.open({ log, kv, name: 'points', rangedKinds: [], pointKinds: [1] });
    records.append(1, 0, 1, new Uint8Array([1]));
    await records.flush();
    for (const bad of [2 ** 53 + 2, 1.5, -3, Number.NaN]) {
      await assert.rejects(records.pruneBefore(bad), invalid, `pruneBefore(${bad})`);
    }
    await records.close();
    const reopened = await RecordStore.open({
      log: log.crashImage(0),
      kv: kv.reopenImage(),
      name: 'points',
      rangedKinds: [],
      pointKinds: [1],
    });
    assert.equal(reopened.floor, 0);
    assert.equal(reopened.get(1, 0).status, 'found');
    await reopened.close();
  });
});
