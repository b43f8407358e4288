// The 15 acceptance scenarios of the block store (spec §5.0, AT-01…AT-15), run on every backend in
// `backends()`. AT-11/AT-12 have their heavy versions in crash.test.ts and killNine.test.ts; the ones
// here are the small deterministic cases.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { BLOCK_STORE_KINDS, BlockRecordKind, type BlockStore } from '../../src/blocks/blockStore.ts';
import { FlushGate } from '../../src/blocks/flushGate.ts';
import { hashBlockHeader } from '../../src/domain/crypto.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng } from '../../src/lib/rng.ts';
import { RecordStore } from '../../src/records/recordStore.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import { allBackends, type Backend } from './support/backends.ts';
import { makeChain, writeChain } from './support/chain.ts';
import { MemoryLog } from './support/memoryLog.ts';

/**
 * The tips the writer sees: [first, written next). `ranges()` reports the durable tip in
 * `blocks`/`qcs` (tested in safety.test.ts); these tests check ordering, so they read the written one.
 */
function tips(store: BlockStore): {
  floor: number;
  blocks: { first: number; next: number };
  qcs: { first: number; next: number };
} {
  const r = store.ranges();
  return {
    floor: r.floor,
    blocks: { first: r.blocks.first, next: r.written.blocksNext },
    qcs: { first: r.qcs.first, next: r.written.qcsNext },
  };
}

const rejects = (fn: () => unknown, code: string, reason?: string): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isCairnError(err), `expected CairnError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (reason !== undefined) assert.equal(err.details.reason, reason, err.message);
    return true;
  });
};

// Cohorts of 4 blocks: 2 lanes × 2 blocks per lane.
const chain = makeChain({ seed: 11, cohorts: 8 });
const chainAt100 = makeChain({ seed: 12, cohorts: 4, globalFirst: 100 });

for (const makeBackend of allBackends()) {
  describe(`block store on ${makeBackend().name}`, () => {
    const backends: Backend[] = [];
    const fresh = async (): Promise<{ backend: Backend; store: BlockStore }> => {
      const backend = makeBackend();
      backends.push(backend);
      return { backend, store: await backend.open() };
    };
    after(async () => {
      for (const b of backends) await b.dispose();
    });

    test('AT-01 a block without a covering QC is rejected; covered blocks are accepted', async () => {
      const { store } = await fresh();
      rejects(() => store.writeBlock(0, chain.block(0)), 'OUT_OF_ORDER', 'missing-qc');
      store.writeQC(chain.qcs[0]!);
      for (let n = 0; n < 4; n++) assert.equal(store.writeBlock(n, chain.block(n)), 'written');
      rejects(() => store.writeBlock(4, chain.block(4)), 'OUT_OF_ORDER', 'missing-qc');
      assert.deepEqual(tips(store).blocks, { first: 0, next: 4 });
      await store.close();
    });

    test('AT-02 dense blocks: a gap is rejected, nothing is stored, the continuation is accepted', async () => {
      const { store } = await fresh();
      writeChain(store, chain, 2, 2);
      rejects(() => store.writeBlock(3, chain.block(3)), 'OUT_OF_ORDER', 'gap');
      assert.equal(store.readBlock(3).status, 'absent');
      assert.deepEqual(tips(store).blocks, { first: 0, next: 2 });
      store.writeBlock(2, chain.block(2));
      store.writeBlock(3, chain.block(3));
      assert.deepEqual(tips(store).blocks, { first: 0, next: 4 });
      // A block that does not match its QC's header is refused too.
      rejects(() => store.writeBlock(4, chain.block(5)), 'CONFLICT');
      await store.close();
    });

    test('AT-03 identical rewrites are no-ops, different ones are conflicts, originals stay intact', async () => {
      const { store } = await fresh();
      writeChain(store, chain, 2, 6);
      await store.flush();
      assert.equal(store.writeQC(chain.qcs[0]!), 'duplicate');
      assert.equal(store.writeQC(chain.qcs[1]!), 'duplicate');
      assert.equal(store.writeBlock(1, chain.block(1)), 'duplicate');
      assert.equal(store.writeBlock(5, chain.block(5)), 'duplicate');
      rejects(() => store.writeBlock(1, chain.block(2)), 'CONFLICT');
      const other = makeChain({ seed: 99, cohorts: 2 });
      rejects(() => store.writeQC(other.qcs[0]!), 'CONFLICT');
      rejects(() => store.writeQC(other.qcs[1]!), 'CONFLICT');
      rejects(() => store.writeQC(chain.qcs[3]!), 'OUT_OF_ORDER', 'qc-not-contiguous');
      for (let n = 0; n < 6; n++) {
        const r = store.readBlock(n);
        assert.equal(r.status, 'found');
        if (r.status === 'found') assert.deepEqual(r.value, chain.block(n));
      }
      assert.deepEqual(tips(store), {
        floor: 0,
        blocks: { first: 0, next: 6 },
        qcs: { first: 0, next: 8 },
      });
      await store.close();
    });

    test('AT-04 round trip by number, by hash (with its number) and the QC covering every n', async () => {
      const { store } = await fresh();
      writeChain(store, chain, 4, 16);
      const check = (s: BlockStore): void => {
        for (let n = 0; n < 16; n++) {
          const byNumber = s.readBlock(n);
          assert.equal(byNumber.status, 'found');
          if (byNumber.status === 'found') assert.deepEqual(byNumber.value, chain.block(n));
          const byHash = s.readBlockByHash(hashBlockHeader(chain.block(n).header));
          assert.equal(byHash.status, 'found');
          if (byHash.status === 'found') {
            assert.equal(byHash.value.number, n);
            assert.deepEqual(byHash.value.block, chain.block(n));
          }
          const qc = s.readQCForBlock(n);
          assert.equal(qc.status, 'found');
          if (qc.status === 'found') assert.deepEqual(qc.value, chain.qcs[Math.floor(n / 4)]);
        }
        assert.equal(s.readBlock(1_000_000).status, 'absent');
        assert.equal(s.readQCForBlock(16).status, 'absent');
        assert.equal(s.readBlockByHash(new Rng(5).bytes(32)).status, 'absent');
      };
      check(store); // before flush: read-your-writes
      await store.flush();
      check(store);
      await store.close();
    });

    test('AT-05 ranges(): a QC-only store moves only the QC range; tips follow writes, prune and restarts', async () => {
      const { backend, store } = await fresh();
      assert.deepEqual(tips(store), {
        floor: 0,
        blocks: { first: 0, next: 0 },
        qcs: { first: 0, next: 0 },
      });
      store.writeQC(chain.qcs[0]!);
      store.writeQC(chain.qcs[1]!);
      assert.deepEqual(tips(store), {
        floor: 0,
        blocks: { first: 0, next: 0 },
        qcs: { first: 0, next: 8 },
      });
      writeChain({ writeQC: () => undefined, writeBlock: (n, b) => store.writeBlock(n, b) }, chain, 0, 6);
      assert.deepEqual(tips(store).blocks, { first: 0, next: 6 });
      assert.equal(await store.pruneBefore(5), 4);
      assert.deepEqual(tips(store), {
        floor: 4,
        blocks: { first: 4, next: 6 },
        qcs: { first: 4, next: 8 },
      });
      const reopened = await backend.restart(store);
      assert.deepEqual(tips(reopened), {
        floor: 4,
        blocks: { first: 4, next: 6 },
        qcs: { first: 4, next: 8 },
      });
      await reopened.close();
    });

    test('AT-06 after a restart the order is still enforced and the contiguous continuation is accepted', async () => {
      const { backend, store } = await fresh();
      writeChain(store, chain, 3, 7);
      const s2 = await backend.restart(store);
      assert.deepEqual(tips(s2).blocks, { first: 0, next: 7 });
      assert.deepEqual(tips(s2).qcs, { first: 0, next: 12 });
      rejects(() => s2.writeBlock(6, chain.block(7)), 'CONFLICT');
      rejects(() => s2.writeBlock(8, chain.block(8)), 'OUT_OF_ORDER', 'gap');
      rejects(() => s2.writeQC(chain.qcs[4]!), 'OUT_OF_ORDER', 'qc-not-contiguous');
      assert.equal(s2.writeBlock(6, chain.block(6)), 'duplicate');
      const q = s2.readQCForBlock(11);
      assert.equal(q.status, 'found');
      s2.writeBlock(7, chain.block(7));
      s2.writeQC(chain.qcs[3]!);
      for (let n = 8; n < 16; n++) s2.writeBlock(n, chain.block(n));
      const s3 = await backend.restart(s2);
      for (let n = 0; n < 16; n++) assert.equal(s3.readBlock(n).status, 'found');
      await s3.close();
    });

    test('AT-07 bounded range read starts at the QC covering the start, ascending, with every covering QC', async () => {
      const { store } = await fresh();
      writeChain(store, chain, 6, 18);
      const r = store.readRange(6, 7);
      assert.equal(r.status, 'found');
      if (r.status !== 'found') return;
      assert.deepEqual(
        r.value.blocks.map((b) => b.number),
        [6, 7, 8, 9, 10, 11, 12],
      );
      assert.deepEqual(r.value.qcs, [chain.qcs[1], chain.qcs[2], chain.qcs[3]]);
      const tail = store.readRange(16, 100);
      assert.equal(tail.status, 'found');
      if (tail.status === 'found')
        assert.deepEqual(
          tail.value.blocks.map((b) => b.number),
          [16, 17],
        );
      assert.equal(store.readRange(24, 10).status, 'absent');
      assert.throws(() => store.readRange(0, 0), /maxBlocks/);
      await store.pruneBefore(9);
      assert.deepEqual(store.readRange(3, 10), { status: 'pruned', floor: 8 });
      await store.close();
    });

    test('AT-08 prune inside a cohort rounds down; below is pruned by number, hash and QC; above is absent', async () => {
      const { store } = await fresh();
      writeChain(store, chain, 5, 20);
      assert.equal(await store.pruneBefore(10), 8);
      for (let n = 8; n < 12; n++) {
        assert.equal(store.readBlock(n).status, 'found');
        assert.equal(store.readQCForBlock(n).status, 'found');
      }
      for (let n = 0; n < 8; n++) {
        assert.deepEqual(store.readBlock(n), { status: 'pruned', floor: 8 });
        assert.deepEqual(store.readQCForBlock(n), { status: 'pruned', floor: 8 });
        assert.deepEqual(store.readBlockByHash(hashBlockHeader(chain.block(n).header)), {
          status: 'pruned',
          floor: 8,
        });
      }
      assert.equal(store.readBlock(20).status, 'absent');
      assert.equal(store.readBlock(500).status, 'absent');
      rejects(() => store.writeBlock(3, chain.block(3)), 'PRUNED');
      rejects(() => store.writeQC(chain.qcs[0]!), 'PRUNED');
      // Lower or equal prune points are harmless no-ops.
      assert.equal(await store.pruneBefore(2), 8);
      assert.equal(await store.pruneBefore(8), 8);
      await store.close();
    });

    test('AT-09 prune never empties: over-reaching requests clamp to the newest block cohort', async () => {
      const { store } = await fresh();
      writeChain(store, chain, 4, 14);
      assert.equal(await store.pruneBefore(Number.MAX_SAFE_INTEGER), 12);
      assert.deepEqual(tips(store).blocks, { first: 12, next: 14 });
      assert.equal(store.readBlock(13).status, 'found');
      assert.equal(store.readQCForBlock(13).status, 'found');
      assert.equal(store.readBlock(11).status, 'pruned');
      // A QC written far ahead of the blocks does not let pruning pass the newest block.
      store.writeQC(chain.qcs[4]!);
      store.writeQC(chain.qcs[5]!);
      assert.equal(await store.pruneBefore(10_000), 12);
      assert.equal(store.readBlock(13).status, 'found');
      await store.close();
    });

    test('AT-10 prune on an empty or QC-only store is a no-op and hides nothing written later', async () => {
      const { backend, store } = await fresh();
      assert.equal(await store.pruneBefore(50), 0);
      store.writeQC(chainAt100.qcs[0]!);
      assert.equal(await store.pruneBefore(1000), 0);
      assert.equal(store.readQCForBlock(100).status, 'found');
      for (let n = 100; n < 104; n++) store.writeBlock(n, chainAt100.block(n));
      const s2 = await backend.restart(store);
      assert.deepEqual(tips(s2), {
        floor: 0,
        blocks: { first: 100, next: 104 },
        qcs: { first: 100, next: 104 },
      });
      assert.equal(s2.readBlock(100).status, 'found');
      assert.equal(s2.readBlock(99).status, 'absent');
      await s2.close();
    });

    test('AT-13 the floor survives restarts; a store with blocks but no QC refuses to open', async () => {
      const { backend, store } = await fresh();
      writeChain(store, chain, 4, 16);
      await store.pruneBefore(9);
      let s = await backend.restart(store);
      assert.equal(s.floor, 8);
      assert.equal(s.readBlock(7).status, 'pruned');
      assert.equal(s.readBlockByHash(hashBlockHeader(chain.block(2).header)).status, 'pruned');
      assert.equal(await s.pruneBefore(4), 8, 'the floor never moves back');
      s = await backend.restart(s);
      assert.equal(s.floor, 8);
      await s.close();
    });

    test('AT-14 QCs durable ahead of blocks: present blocks served, missing absent, refill accepted', async () => {
      const { backend, store } = await fresh();
      writeChain(store, chain, 4, 6);
      await store.flush();
      const s2 = await backend.restart(store);
      const layer = new FlushGate(s2);
      const report = layer.reconcile();
      assert.deepEqual(report, {
        blocks: { first: 0, next: 6 },
        qcs: { first: 0, next: 16 },
        missing: { first: 6, next: 16 },
      });
      assert.equal(s2.readBlock(5).status, 'found');
      assert.equal(s2.readBlock(6).status, 'absent');
      const refill = [];
      for (let n = 6; n < 16; n++) refill.push({ number: n, block: chain.block(n) });
      await layer.persist({ qcs: [], blocks: refill });
      assert.equal(layer.reconcile().missing, undefined);
      assert.equal(s2.readBlock(15).status, 'found');
      await s2.close();
    });
  });
}

describe('block store (memory stack only)', () => {
  const open = async (log: MemoryLog, kv: MemoryKv) =>
    RecordStore.open({ log, kv, name: 'mem', ...BLOCK_STORE_KINDS });

  test('AT-11 torn tail: survivors are a write-order prefix and no block survives without its QC', async () => {
    for (let extra = 0; extra < 40; extra++) {
      const log = new MemoryLog();
      const kv = new MemoryKv();
      const { BlockStore } = await import('../../src/blocks/blockStore.ts');
      const store = BlockStore.open(await open(log, kv));
      // Interleave as a node does: QC, then its blocks; flush after the second cohort.
      writeChain(store, chain, 2, 8);
      await store.flush();
      for (let i = 2; i < 6; i++) {
        store.writeQC(chain.qcs[i]!);
        const r = chain.range(i);
        for (let n = r.first; n < r.next; n++) store.writeBlock(n, chain.block(n));
      }
      const s2 = BlockStore.open(await open(log.crashImage(extra), kv.crashImage(new Rng(extra))));
      const r = s2.ranges();
      assert.ok(r.blocks.next >= 8, 'flushed blocks survive');
      assert.ok(
        r.blocks.next <= r.qcs.next,
        `blocks ${r.blocks.next} beyond QCs ${r.qcs.next} (extra ${extra})`,
      );
      for (let n = 0; n < r.blocks.next; n++) {
        assert.equal(s2.readQCForBlock(n).status, 'found');
        assert.equal(s2.readBlock(n).status, 'found');
      }
    }
  });

  test('AT-13 records without any QC refuse to open', async () => {
    const log = new MemoryLog();
    const kv = new MemoryKv();
    const records = await open(log, kv);
    records.append(BlockRecordKind.block, 0, 1, new Uint8Array([1, 2, 3]), new Uint8Array(32).fill(7));
    await records.flush();
    const { BlockStore } = await import('../../src/blocks/blockStore.ts');
    await assert.rejects(
      async () => BlockStore.open(await open(log.crashImage(0), kv.crashImage(new Rng(1)))),
      (err: unknown) => isCairnError(err, 'CORRUPT') && /no QC/.test(err.message),
    );
  });

  test('AT-15 the vote gate: waitFlushed resolves only after the flush; earlier writes are persisted too', async () => {
    const log = new MemoryLog();
    const kv = new MemoryKv();
    const { BlockStore } = await import('../../src/blocks/blockStore.ts');
    const store = BlockStore.open(await open(log, kv));
    // Written before the flush gate runs: still covered by its first flush.
    store.writeQC(chain.qcs[0]!);
    store.writeBlock(0, chain.block(0));
    const layer = new FlushGate(store);
    let voted = false;
    const vote = layer.waitFlushed(5).then(() => {
      voted = true;
    });
    let gateOpen: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      gateOpen = r;
    });
    const realSync = log.sync.bind(log);
    log.sync = async () => {
      await gate;
      return realSync();
    };
    const blocks = [];
    for (let n = 1; n < 8; n++) blocks.push({ number: n, block: chain.block(n) });
    const persisted = layer.persist({ qcs: [chain.qcs[0]!, chain.qcs[1]!], blocks });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(voted, false, 'no vote before the fsync returned');
    assert.equal(log.durableIndex, 0);
    gateOpen();
    await persisted;
    await vote;
    assert.equal(voted, true);
    assert.equal(layer.durableBlockNext, 8);
    await layer.waitFlushed(3);
    const s2 = BlockStore.open(await open(log.crashImage(0), kv.crashImage(new Rng(2))));
    assert.deepEqual(tips(s2).blocks, { first: 0, next: 8 });
  });

  test('AT-15 a failed fsync rejects waiting votes and latches the store', async () => {
    const log = new MemoryLog();
    const { BlockStore } = await import('../../src/blocks/blockStore.ts');
    const store = BlockStore.open(await open(log, new MemoryKv()));
    const layer = new FlushGate(store);
    const vote = layer.waitFlushed(2);
    log.failSyncs = 1;
    const blocks = [0, 1, 2, 3].map((n) => ({ number: n, block: chain.block(n) }));
    await assert.rejects(layer.persist({ qcs: [chain.qcs[0]!], blocks }), (e: unknown) =>
      isCairnError(e, 'IO_FATAL'),
    );
    await assert.rejects(vote, (e: unknown) => isCairnError(e, 'IO_FATAL'));
    await assert.rejects(store.flush(), (e: unknown) => isCairnError(e, 'IO_FATAL'));
    assert.throws(
      () => store.writeQC(chain.qcs[1]!),
      (e: unknown) => isCairnError(e, 'IO_FATAL'),
    );
  });
});
