// Query guards on the read path: the archive tier answers under the same limits as the hot tier,
// with the same typed errors carrying the whole query's numbers; an AbortSignal answers promptly;
// what lies below the floor is PRUNED where the store can know it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CairnError, isCairnError } from '../../src/lib/errors.ts';
import type { ArchiveEngine } from '../../src/receipts/archiveEngine.ts';
import type { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import type { Log } from '../../src/receipts/types.ts';
import { expectedLogs, logKeys, makeBlock } from './support/fixtures.ts';
import { ProbeArchive, simSetup } from './support/harness.ts';

const BLOCKS = Array.from({ length: 16 }, (_, n) => makeBlock(61, n, { maxReceipts: 6 }));
/** blocksPerFile 4, hot window 4: after block 15, blocks 0..11 are archive-only and 12..15 hot. */
const LAYOUT = { blocksPerFile: 4, hotRetentionBlocks: 4 };

/** The documented per-log size of maxResultBytes (ReceiptStoreOptions): 20 + 32 per topic + data + 128. */
const sizeOf = (logs: readonly Log[]): number =>
  logs.reduce((s, l) => s + 20 + 32 * l.topics.length + l.data.length + 128, 0);

async function withStore(
  seed: number,
  options: Parameters<ReturnType<typeof simSetup>['open']>[0],
  fn: (store: ReceiptStore) => Promise<void>,
): Promise<void> {
  const sim = simSetup(seed);
  const store = await sim.open({ ...LAYOUT, ...options });
  try {
    for (const b of BLOCKS) await store.putBlock(b);
    await store.pruneBelow(0); // the rotation that follows the last write is done
    assert.equal(store.ranges().hotFloor, 12);
    await fn(store);
  } finally {
    await store.close();
  }
}

const limit = (field: 'maxResults' | 'maxBytes', value: number, range: string) => (e: unknown) => {
  assert.ok(isCairnError(e, 'LIMIT_EXCEEDED'), String(e));
  assert.equal((e as CairnError).details?.[field], value, `details.${field}`);
  assert.ok(e.message.includes(range), `"${e.message}" names the range ${range}`);
  assert.ok(e.message.includes(String(value)), `"${e.message}" names ${value}`);
  assert.equal(e.kind, 'caller');
  return true;
};

test('maxResults: archive-only, hot-only and mixed queries stop at the same cap, exactly, with the whole query in the error', {
  timeout: 60_000,
}, async () => {
  const archived = expectedLogs(BLOCKS, {}, 0, 11).length;
  const hot = expectedLogs(BLOCKS, {}, 12, 15).length;
  assert.ok(archived > 4 && hot > 4, 'the fixture must have logs in both tiers');
  // Exactly the cap answers; one more is an error.
  await withStore(62, { maxResults: archived + hot }, async (store) => {
    assert.equal((await store.getLogs({ fromBlock: 0, toBlock: 15 })).length, archived + hot);
  });
  await withStore(63, { maxResults: archived + hot - 1 }, async (store) => {
    // The archive part fits; the hot part overflows what it leaves. The error names the store's cap.
    await assert.rejects(
      store.getLogs({ fromBlock: 0, toBlock: 15 }),
      limit('maxResults', archived + hot - 1, '0..15'),
    );
  });
  await withStore(64, { maxResults: archived - 1 }, async (store) => {
    await assert.rejects(
      store.getLogs({ fromBlock: 0, toBlock: 11 }),
      limit('maxResults', archived - 1, '0..11'),
    );
    await assert.rejects(
      store.getArchivedLogs({ fromBlock: 0, toBlock: 11 }),
      limit('maxResults', archived - 1, '0..11'),
    );
    // A per-query override never raises the store's cap.
    await assert.rejects(
      store.getLogs({ fromBlock: 0, toBlock: 11 }, { maxResults: archived + 5 }),
      limit('maxResults', archived - 1, '0..11'),
    );
  });
  await withStore(65, {}, async (store) => {
    await assert.rejects(
      store.getLogs({ fromBlock: 0, toBlock: 11 }, { maxResults: 3 }),
      limit('maxResults', 3, '0..11'),
    );
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      await assert.rejects(
        store.getLogs({ fromBlock: 0, toBlock: 11 }, { maxResults: bad }),
        (e) => isCairnError(e, 'INVALID_ARGUMENT') && e.message.includes(String(bad)),
        `maxResults ${bad}`,
      );
    }
  });
});

test('maxResultBytes: archive-only and mixed queries are capped exactly like hot ones, with the whole query in the error', {
  timeout: 60_000,
}, async () => {
  const archivedBytes = sizeOf(expectedLogs(BLOCKS, {}, 0, 11));
  const hotBytes = sizeOf(expectedLogs(BLOCKS, {}, 12, 15));
  const total = archivedBytes + hotBytes;
  await withStore(66, { maxResultBytes: total }, async (store) => {
    assert.equal(sizeOf(await store.getLogs({ fromBlock: 0, toBlock: 15 })), total);
  });
  await withStore(67, { maxResultBytes: total - 1 }, async (store) => {
    await assert.rejects(store.getLogs({ fromBlock: 0, toBlock: 15 }), limit('maxBytes', total - 1, '0..15'));
  });
  await withStore(68, { maxResultBytes: archivedBytes - 1 }, async (store) => {
    await assert.rejects(
      store.getLogs({ fromBlock: 0, toBlock: 11 }),
      limit('maxBytes', archivedBytes - 1, '0..11'),
    );
    await assert.rejects(
      store.getArchivedLogs({ fromBlock: 0, toBlock: 11 }),
      limit('maxBytes', archivedBytes - 1, '0..11'),
    );
  });
  await withStore(69, { maxResultBytes: hotBytes - 1 }, async (store) => {
    await assert.rejects(
      store.getLogs({ fromBlock: 12, toBlock: 15 }),
      limit('maxBytes', hotBytes - 1, '12..15'),
    );
  });
});

test('an AbortSignal answers an archive query promptly even if the engine finishes late; its files outlive the engine read', {
  timeout: 60_000,
}, async () => {
  let probe: ProbeArchive | undefined;
  const sim = simSetup(70, (inner) => {
    probe = new ProbeArchive(inner);
    return probe;
  });
  const store = await sim.open(LAYOUT);
  try {
    for (const b of BLOCKS) await store.putBlock(b);
    let release!: () => void;
    probe!.gate = new Promise<void>((r) => {
      release = r;
    });
    const controller = new AbortController();
    const engineCalls = probe!.calls.queryLogs ?? 0;
    const pending = store.getLogs({ fromBlock: 0, toBlock: 15 }, { signal: controller.signal });
    // The engine starts once the files are checked (a few turns for these small files).
    while ((probe!.calls.queryLogs ?? 0) === engineCalls) await new Promise((r) => setImmediate(r));
    controller.abort();
    // The engine is still held at its gate: the answer must not wait for it.
    await assert.rejects(pending, (e) => isCairnError(e, 'ABORTED'));
    assert.equal(probe!.calls.queryLogs, engineCalls + 1, 'the engine query was started');
    // A prune retires the files the engine is still reading: they stay until it is done.
    await store.pruneBelow(8);
    const files = ['logs_0_3.parquet', 'logs_4_7.parquet'].map((f) => `/r/archive/${f}`);
    for (const f of files) assert.ok(sim.fs.exists(f), `${f} deleted under a running engine read`);
    probe!.gate = undefined;
    release();
    await store.pruneBelow(0); // the engine call settles on a later turn
    await new Promise((r) => setImmediate(r));
    for (const f of files) assert.equal(sim.fs.exists(f), false, `${f} kept after its last reader`);
    assert.deepEqual(
      logKeys(await store.getLogs({ fromBlock: 8, toBlock: 15 })),
      logKeys(expectedLogs(BLOCKS, {}, 8, 15)),
    );
  } finally {
    await store.close();
  }
});

test('below the floor: a receipt the index still places there and a block hash are PRUNED with the floor; a miss is not-found', {
  timeout: 60_000,
}, async () => {
  // The index entries of a retired file are removed after the floor is raised: hold the store there.
  let indexGate: Promise<void> | undefined;
  let atIndexGate: (() => void) | undefined;
  const sim = simSetup(71, (inner) => {
    const wrapped = Object.create(inner) as ArchiveEngine;
    wrapped.readTxHashes = async (p) => {
      atIndexGate?.();
      if (indexGate) await indexGate;
      return inner.readTxHashes(p);
    };
    return wrapped;
  });
  const store = await sim.open(LAYOUT);
  try {
    for (const b of BLOCKS) await store.putBlock(b);
    const old = BLOCKS.slice(0, 4).find((b) => b.receipts.length > 0)!;
    const oldTx = old.receipts[0]!.txHash;
    const floorIs = (e: unknown) => {
      assert.ok(isCairnError(e, 'PRUNED'), String(e));
      assert.equal(e.details?.floor, 8);
      assert.equal(e.details?.block, old.number);
      assert.equal(e.kind, 'caller');
      return true;
    };
    let open!: () => void;
    indexGate = new Promise<void>((r) => {
      open = r;
    });
    const reached = new Promise<void>((r) => {
      atIndexGate = r;
    });
    const pruning = store.pruneBelow(8);
    await reached;
    assert.equal(store.ranges().floor, 8);
    await assert.rejects(store.getReceipt(oldTx), floorIs);
    await assert.rejects(store.getLogs({ blockHash: old.hash }), floorIs);
    indexGate = undefined;
    atIndexGate = undefined;
    open();
    assert.equal(await pruning, 8);
    // The retired files' index entries are gone: the store no longer knows the hash (no index of
    // pruned transactions: it would grow with history), so it is a miss, as for any unknown hash.
    assert.equal(await store.getReceipt(oldTx), undefined);
    const kept = BLOCKS.slice(8).find((b) => b.receipts.length > 0)!;
    assert.ok(await store.getReceipt(kept.receipts[0]!.txHash));
  } finally {
    await store.close();
  }
});
