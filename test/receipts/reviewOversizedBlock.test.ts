// A block whose encoded entry is larger than the receipt WAL's record limit (16 MiB) is bad input:
// the WAL refuses it before writing anything (RECORD_TOO_LARGE, a caller error). On 9d19c22 the
// store latched that refusal as a fatal receipt WAL append failure, so one oversized block stopped
// every later write until a reopen (and, re-sent, did it again). Now the write is rejected with the
// WAL's error, naming the sizes, and the store goes on: the next block of the same number is taken.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import type { BlockReceiptsInput } from '../../src/receipts/types.ts';
import { blockHash, makeBlock, txHash } from './support/fixtures.ts';
import { simSetup } from './support/harness.ts';

/** Block `n` with one receipt carrying a log of `dataBytes` bytes of data. */
function bigBlock(n: number, dataBytes: number): BlockReceiptsInput {
  return {
    number: n,
    hash: blockHash(n),
    receipts: [
      {
        txHash: txHash(n, 0),
        txIndex: 0,
        type: 2,
        status: 1,
        from: new Uint8Array(20).fill(2),
        to: new Uint8Array(20).fill(3),
        contractAddress: undefined,
        gasUsed: 21_000,
        cumulativeGasUsed: 21_000,
        effectiveGasPrice: 1_000_000_000n,
        logs: [{ address: new Uint8Array(20).fill(1), topics: [], data: new Uint8Array(dataBytes) }],
      },
    ],
  };
}

test('a block over the receipt WAL record limit is refused as a caller error; the store stays usable', async () => {
  const sim = simSetup(41);
  const store = await sim.open({ walSegmentBytes: 64 * 1024 * 1024 });
  try {
    for (let n = 0; n < 3; n++) await store.putBlock(makeBlock(41, n));
    const err = await store.putBlock(bigBlock(3, 17 * 1024 * 1024)).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(isCairnError(err, 'RECORD_TOO_LARGE'), `got ${String(err)}`);
    assert.equal(err.kind, 'caller');
    assert.match(err.message, /over the maximum/);
    assert.equal(store.ranges().latest, 2, 'nothing of it was stored');
    // Usable: block 3 (an ordinary one) and on.
    for (let n = 3; n < 6; n++) await store.putBlock(makeBlock(41, n));
    assert.equal(store.ranges().latest, 5);
    for (const r of makeBlock(41, 4).receipts)
      assert.equal((await store.getReceipt(r.txHash))?.blockNumber, 4);
  } finally {
    await store.close();
  }
  // And a reopen replays a WAL holding no trace of it.
  sim.restartKv();
  const again = await sim.open({ walSegmentBytes: 64 * 1024 * 1024 });
  try {
    assert.equal(again.ranges().latest, 5);
  } finally {
    await again.close();
  }
});

test('maxBlockEntryBytes sets the limit: a lower one refuses a 100 KiB block, a higher one stores a 17 MiB block across a reopen', async () => {
  const sim = simSetup(43);
  const low = await sim.open({ maxBlockEntryBytes: 64 * 1024 });
  try {
    await low.putBlock(bigBlock(0, 40 * 1024));
    await assert.rejects(low.putBlock(bigBlock(1, 100 * 1024)), (e: unknown) =>
      isCairnError(e, 'RECORD_TOO_LARGE'),
    );
    assert.equal(low.ranges().latest, 0);
  } finally {
    await low.close();
  }
  sim.restartKv();
  const high = await sim.open({ maxBlockEntryBytes: 32 * 1024 * 1024 });
  try {
    await high.putBlock(bigBlock(1, 17 * 1024 * 1024));
    assert.equal(high.ranges().latest, 1);
  } finally {
    await high.close();
  }
  // A reopen at the default limit still reads the stored 17 MiB block: only appends check it.
  sim.restartKv();
  const again = await sim.open();
  try {
    assert.equal(again.ranges().latest, 1);
    const r = await again.getReceipt(txHash(1, 0));
    assert.equal(r?.blockNumber, 1);
    assert.equal(r?.logs[0]?.data.length, 17 * 1024 * 1024);
  } finally {
    await again.close();
  }
});
