// Issue #9 items 2 and 10: a finalized block is stored only if the signed CommitQC names it (an
// equivocating lane owner's other block is a typed CONFLICT, never a stored block); `ranges()`
// reports the durable tip; a batch with a bad entry applies nothing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BLOCK_STORE_KINDS, BlockStore } from '../../src/blocks/blockStore.ts';
import { FlushGate } from '../../src/blocks/flushGate.ts';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { hashBlockHeader, hashPayload } from '../../src/domain/crypto.ts';
import type { Block, FullCommitQC } from '../../src/domain/types.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { RecordStore } from '../../src/records/recordStore.ts';
import { makeTestCommittee } from '../../src/testing/consensusFixture.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { makeChain } from './support/chain.ts';
import { MemoryLog } from './support/memoryLog.ts';

// Cohorts of 4 blocks: 2 lanes × 2 blocks per lane; headers [lane0/0, lane0/1, lane1/0, lane1/1].
const chain = makeChain({ seed: 33, cohorts: 4 });

async function memoryStore(): Promise<{ store: BlockStore; log: MemoryLog }> {
  const log = new MemoryLog();
  const records = await RecordStore.open({ log, kv: new MemoryKv(), name: 'safety', ...BLOCK_STORE_KINDS });
  return { store: BlockStore.open(records), log };
}

/** The other block a lane owner signed at the same height: same lane, number and parent. */
function equivocation(original: Block): Block {
  const payload = new Uint8Array(original.payload.byteLength).fill(0xee);
  return { header: { ...original.header, payloadHash: hashPayload(payload) }, payload };
}

/** The FullCommitQC a node holding `other` instead of global block `n` would assemble. */
function assembledWith(full: FullCommitQC, n: number, other: Block): FullCommitQC {
  const headers = full.headers.slice();
  headers[n - full.qc.globalFirst] = other.header;
  return { qc: full.qc, headers };
}

describe('finalized blocks are checked against the signed CommitQC (item 2)', () => {
  for (const n of [1, 2]) {
    test(`an equivocated block ${n} (${n === 1 ? 'last' : 'first'} of its lane range) is a CONFLICT and nothing is stored`, async () => {
      const { store, log } = await memoryStore();
      const other = equivocation(chain.block(n));
      const full = assembledWith(chain.qcs[0]!, n, other);
      assert.throws(
        () => store.writeQC(full),
        (e: unknown) =>
          isCairnError(e, 'CONFLICT') &&
          e.details.reason === 'qc-headers-mismatch' &&
          /FullCommitQC 0/.test(e.message),
      );
      assert.equal(log.nextIndex, 0, 'nothing appended');
      assert.equal(store.ranges().written.qcsNext, store.ranges().floor);
      // The genuine QC is accepted, and the other block is refused against it.
      store.writeQC(chain.qcs[0]!);
      for (let m = 0; m < n; m++) store.writeBlock(m, chain.block(m));
      assert.throws(
        () => store.writeBlock(n, other),
        (e: unknown) => isCairnError(e, 'CONFLICT'),
      );
      await store.flush();
      const read = store.readBlock(n);
      assert.equal(read.status, 'absent');
      await store.close();
    });
  }

  test('with the committee, a QC that fails verification is refused; an unsigned chain passes with verifySignatures off', async () => {
    const fs = new SimulatedFileSystem({ seed: 1 });
    const { committee } = makeTestCommittee(2, 33);
    const store = await openBlockStore({
      dir: '/b',
      fs,
      kv: new MemoryKv(),
      committee,
      verifySignatures: true,
      segmentBytes: 65536,
    });
    assert.throws(
      () => store.writeQC(chain.qcs[0]!),
      (e: unknown) => isCairnError(e, 'INVALID_ARGUMENT') && /signature/.test(e.message),
    );
    await store.close();
    const lax = await openBlockStore({
      dir: '/c',
      fs,
      kv: new MemoryKv(),
      committee,
      verifySignatures: false,
      segmentBytes: 65536,
    });
    assert.equal(lax.writeQC(chain.qcs[0]!), 'written');
    const stranger = makeTestCommittee(2, 99).committee;
    await lax.close();
    const wrong = await openBlockStore({
      dir: '/d',
      fs,
      kv: new MemoryKv(),
      committee: stranger,
      segmentBytes: 65536,
      verifySignatures: false,
    });
    assert.throws(
      () => wrong.writeQC(chain.qcs[0]!),
      (e: unknown) => isCairnError(e, 'INVALID_ARGUMENT'),
    );
    await wrong.close();
  });

  test('the by-hash index never learns the equivocated block', async () => {
    const { store } = await memoryStore();
    const other = equivocation(chain.block(1));
    assert.throws(() => store.writeQC(assembledWith(chain.qcs[0]!, 1, other)));
    store.writeQC(chain.qcs[0]!);
    await store.flush();
    assert.equal(store.readBlockByHash(hashBlockHeader(other.header)).status, 'absent');
  });
});

describe('durable tip and whole-batch validation (item 10)', () => {
  test('ranges() reports the durable tip; the written tip is named as such', async () => {
    const { store } = await memoryStore();
    store.writeQC(chain.qcs[0]!);
    for (let n = 0; n < 4; n++) store.writeBlock(n, chain.block(n));
    store.writeQC(chain.qcs[1]!);
    let r = store.ranges();
    assert.deepEqual(r.blocks, { first: 0, next: 0 }, 'nothing is durable before a flush');
    assert.deepEqual(r.qcs, { first: 0, next: 0 });
    assert.deepEqual(r.written, { blocksNext: 4, qcsNext: 8 });
    await store.flush();
    r = store.ranges();
    assert.deepEqual(r.blocks, { first: 0, next: 4 });
    assert.deepEqual(r.qcs, { first: 0, next: 8 });
    store.writeBlock(4, chain.block(4));
    assert.deepEqual(store.ranges().blocks, { first: 0, next: 4 });
    await store.close();
  });

  test('a batch with a bad block in the middle applies none of it', async () => {
    const { store, log } = await memoryStore();
    const gate = new FlushGate(store);
    await assert.rejects(
      gate.persist({
        qcs: [chain.qcs[0]!, chain.qcs[1]!],
        blocks: [0, 1, 3].map((n) => ({ number: n, block: chain.block(n) })),
      }),
      (e: unknown) => isCairnError(e, 'OUT_OF_ORDER'),
    );
    assert.equal(log.nextIndex, 0, 'no record appended');
    assert.deepEqual(store.ranges().written, { blocksNext: 0, qcsNext: 0 });
    // A wrong block (header not in its QC) after good ones: same.
    await assert.rejects(
      gate.persist({
        qcs: [chain.qcs[0]!],
        blocks: [
          { number: 0, block: chain.block(0) },
          { number: 1, block: equivocation(chain.block(1)) },
        ],
      }),
      (e: unknown) => isCairnError(e, 'CONFLICT'),
    );
    assert.equal(log.nextIndex, 0);
    // The store is still usable and takes the good batch.
    await gate.persist({
      qcs: [chain.qcs[0]!, chain.qcs[1]!],
      blocks: [0, 1, 2, 3, 4].map((n) => ({ number: n, block: chain.block(n) })),
    });
    assert.deepEqual(store.ranges().blocks, { first: 0, next: 5 });
    assert.equal(gate.durableBlockNext, 5);
    await gate.close();
    await store.close();
  });

  test('a batch that repeats stored entries is accepted as duplicates', async () => {
    const { store } = await memoryStore();
    const gate = new FlushGate(store);
    const batch = { qcs: [chain.qcs[0]!], blocks: [0, 1].map((n) => ({ number: n, block: chain.block(n) })) };
    await gate.persist(batch);
    await gate.persist(batch);
    assert.deepEqual(store.ranges().written, { blocksNext: 2, qcsNext: 4 });
    await gate.close();
    await store.close();
  });
});
