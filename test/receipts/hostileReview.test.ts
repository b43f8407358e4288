// Findings of the hostile review of the receipt store: each test failed before its fix.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { OrderedKv } from '../../src/kv/orderedKv.ts';
import { CairnError, isCairnError } from '../../src/lib/errors.ts';
import type { ArchiveEngine } from '../../src/receipts/archiveEngine.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { ADDRESSES, blockHash, makeBlock, TOPICS, txHash } from './support/fixtures.ts';
import { simSetup, withTempDir } from './support/harness.ts';

const empty = (n: number) => ({ number: n, hash: blockHash(n), receipts: [] });

test('hot-tier rebuild from the archive restores empty blocks: getLogs by their hash still answers (DuckDB)', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 12 }, (_, n) => (n % 3 === 1 ? empty(n) : makeBlock(7, n)));
    let store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    for (const b of blocks) await store.putBlock(b);
    await store.waitForArchive(); // windows close in the background
    assert.ok(store.ranges().archivedThrough >= 7, 'blocks 0..7 are archive-only after the WAL truncation');
    await store.close();
    rmSync(join(dir, 'hot'), { recursive: true, force: true });
    store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    try {
      for (const n of [1, 4, 7, 10]) {
        assert.deepEqual(await store.getLogs({ blockHash: blockHash(n) }), [], `empty block ${n}`);
      }
      assert.deepEqual((await store.verify()).problems, []);
    } finally {
      await store.close();
    }
  });
});

test('hot-tier rebuild from the archive restores empty blocks (model archive, lost KV)', async () => {
  const sim = simSetup(3);
  let store = await sim.open();
  for (let n = 0; n < 10; n++) await store.putBlock(n % 2 === 0 ? empty(n) : makeBlock(5, n));
  await store.close();
  sim.kv = new (sim.kv.constructor as new () => typeof sim.kv)();
  store = await sim.open();
  try {
    for (const n of [0, 2, 4, 6, 8]) {
      assert.deepEqual(await store.getLogs({ blockHash: blockHash(n) }), [], `empty block ${n}`);
    }
  } finally {
    await store.close();
  }
});

test('hot tier whose CURRENT was lost (LevelDB starts over, replays only the checkpoint log) is rebuilt, not trusted', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 60 }, (_, n) => makeBlock(9, n, { maxReceipts: 8 }));
    let store = await ReceiptStore.open({ dir, blocksPerFile: 20 });
    for (const b of blocks) await store.putBlock(b);
    await store.close();
    // Reopen and close once so the bodies sit in a table file and the last log holds the checkpoint.
    store = await ReceiptStore.open({ dir, blocksPerFile: 20 });
    await store.close();
    rmSync(join(dir, 'hot', 'CURRENT'));
    store = await ReceiptStore.open({ dir, blocksPerFile: 20 });
    try {
      let missing = 0;
      for (const b of blocks) for (const r of b.receipts) if (!(await store.getReceipt(r.txHash))) missing++;
      assert.equal(missing, 0, 'stored receipts answered "not found"');
      assert.deepEqual((await store.verify()).problems, []);
    } finally {
      await store.close();
    }
  });
});

test('a hot tier checkpoint above what the KV holds (model KV lost its contents) triggers a rebuild', async () => {
  const sim = simSetup(4);
  let store = await sim.open();
  const blocks = Array.from({ length: 10 }, (_, n) => makeBlock(6, n));
  for (const b of blocks) await store.putBlock(b);
  await store.close();
  // Keep only the metadata keys ('m'...), as a LevelDB that replayed only its last log would.
  sim.restartKv();
  const fresh = new (sim.kv.constructor as new () => typeof sim.kv)();
  const meta = await sim.kv.range({ gte: Uint8Array.of(0x6d), lt: Uint8Array.of(0x6e), limit: 100 });
  const batch = fresh.batch();
  for (const e of meta) batch.put(e.key, e.value);
  await batch.write({ sync: true });
  sim.kv = fresh;
  store = await sim.open();
  try {
    for (const b of blocks) {
      for (const r of b.receipts) assert.ok(await store.getReceipt(r.txHash), `block ${b.number}`);
    }
  } finally {
    await store.close();
  }
});

test('a selective query matching far more logs than maxResults stops reading bodies near the limit', async () => {
  const sim = simSetup(5);
  const address = ADDRESSES[0]!;
  let bodiesRead = 0;
  const counting = (kv: OrderedKv): OrderedKv => ({
    get: (k) => {
      if (k[0] === 0x7e) bodiesRead++;
      return kv.get(k);
    },
    getMany: (keys) => {
      bodiesRead += keys.filter((k) => k[0] === 0x7e).length;
      return kv.getMany(keys);
    },
    batch: () => kv.batch(),
    range: (r) => kv.range(r),
    close: () => kv.close(),
  });
  const store = await sim.open({ kv: counting(sim.kv), maxResults: 10, blocksPerFile: 10_000 });
  try {
    for (let n = 0; n < 400; n++) {
      const receipts = [
        {
          txHash: txHash(n, 0),
          txIndex: 0,
          type: 2,
          status: 1 as const,
          from: ADDRESSES[1]!,
          to: ADDRESSES[2]!,
          contractAddress: undefined,
          gasUsed: 21_000,
          cumulativeGasUsed: 21_000,
          effectiveGasPrice: 1n,
          logs: [{ address, topics: [], data: new Uint8Array(8) }],
        },
      ];
      await store.putBlock({ number: n, hash: blockHash(n), receipts });
    }
    bodiesRead = 0;
    await assert.rejects(
      store.getLogs({ fromBlock: 0, toBlock: 399, addresses: [address] }),
      (err) => isCairnError(err) && err.code === 'LIMIT_EXCEEDED',
    );
    assert.ok(bodiesRead <= 64, `read ${bodiesRead} receipt bodies for a query capped at 10 logs`);
  } finally {
    await store.close();
  }
});

test('eth_getLogs: a null inside a topic OR list makes the position a wildcard (geth), other edge cases are typed', async () => {
  const sim = simSetup(6);
  const store = await sim.open({ blocksPerFile: 4 });
  try {
    const blocks = Array.from({ length: 12 }, (_, n) => makeBlock(21, n));
    for (const b of blocks) await store.putBlock(b);
    const all = await store.getLogs({ fromBlock: 0, toBlock: 11 });
    assert.ok(all.length > 0);
    assert.deepEqual(await store.getLogs({ fromBlock: 0, toBlock: 11, topics: [[TOPICS[0]!, null]] }), all);
    assert.deepEqual(await store.getLogs({ fromBlock: 0, toBlock: 11, addresses: [] }), all);
    const code = async (p: Promise<unknown>): Promise<string | undefined> =>
      p.then(
        () => undefined,
        (err) => (isCairnError(err) ? err.code : String(err)),
      );
    assert.equal(await code(store.getLogs({ fromBlock: 5, toBlock: 4 })), 'INVALID_ARGUMENT');
    assert.equal(await code(store.getLogs({ blockHash: blockHash(999) })), 'NOT_FOUND');
    assert.equal(
      await code(store.getLogs({ fromBlock: 0, toBlock: 1, topics: [null, null, null, null, null] })),
      'INVALID_ARGUMENT',
    );
    await store.pruneBelow(4);
    assert.equal(await code(store.getLogs({ fromBlock: 3, toBlock: 11 })), 'PRUNED');
    assert.deepEqual(
      await store.getLogs({ fromBlock: 4, toBlock: 11 }),
      all.filter((l) => l.blockNumber >= 4),
    );
  } finally {
    await store.close();
  }
});

test('a bit flip inside a closed (non-trailing) archive file is CORRUPT on first read, never wrong rows', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 16 }, (_, n) => makeBlock(31, n, { maxReceipts: 8 }));
    const opts = { dir, blocksPerFile: 4, hotRetentionBlocks: 4 };
    let store = await ReceiptStore.open(opts);
    for (const b of blocks) await store.putBlock(b);
    await store.close();
    for (const name of ['logs_0_3.parquet', 'receipts_0_3.parquet']) {
      const file = join(dir, 'archive', name);
      const bytes = readFileSync(file);
      for (let i = 8; i < bytes.length - 8; i += 61) bytes[i]! ^= 0x20;
      writeFileSync(file, bytes);
    }
    store = await ReceiptStore.open(opts);
    try {
      const expectCorrupt = (err: unknown): boolean => isCairnError(err) && err.code === 'CORRUPT';
      await assert.rejects(store.getLogs({ fromBlock: 0, toBlock: 3 }), expectCorrupt);
      await assert.rejects(store.getArchivedLogs({ fromBlock: 0, toBlock: 3 }), expectCorrupt);
      const tx = blocks.slice(0, 4).find((b) => b.receipts.length > 0)!;
      await assert.rejects(store.getReceipt(tx.receipts[0]!.txHash), expectCorrupt);
      // Files that are intact still answer.
      assert.ok((await store.getLogs({ fromBlock: 4, toBlock: 15 })).length > 0);
    } finally {
      await store.close();
    }
  });
});

test('an AbortSignal reaches the archive engine, so a long archive query stops mid-query', async () => {
  let seen: AbortSignal | undefined;
  const sim = simSetup(7, (inner) => {
    const wrapped = Object.create(inner) as ArchiveEngine;
    wrapped.queryLogs = (paths, f, limit, signal) => {
      seen = signal;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => resolve(inner.queryLogs(paths, f, limit)), 2_000);
        signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(new CairnError('ABORTED', 'aborted'));
        });
      });
    };
    return wrapped;
  });
  const store = await sim.open({ blocksPerFile: 4, hotRetentionBlocks: 4 });
  try {
    for (let n = 0; n < 16; n++) await store.putBlock(makeBlock(41, n));
    const controller = new AbortController();
    const pending = store.getLogs({ fromBlock: 0, toBlock: 15 }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 10);
    await assert.rejects(pending, (err) => isCairnError(err) && err.code === 'ABORTED');
    assert.ok(seen, 'the archive engine never saw the AbortSignal');
  } finally {
    await store.close();
  }
});

test('DuckDB: an archive query aborted while it runs is ABORTED and the next query still answers', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 40 }, (_, n) => makeBlock(43, n, { maxReceipts: 6 }));
    const store = await ReceiptStore.open({ dir, blocksPerFile: 8, hotRetentionBlocks: 8 });
    try {
      for (const b of blocks) await store.putBlock(b);
      for (let i = 0; i < 5; i++) {
        const controller = new AbortController();
        const pending = store.getLogs({ fromBlock: 0, toBlock: 39 }, { signal: controller.signal });
        setImmediate(() => controller.abort());
        await assert.rejects(pending, (err) => isCairnError(err) && err.code === 'ABORTED');
      }
      const again = await store.getLogs({ fromBlock: 0, toBlock: 39 });
      assert.equal(
        again.length,
        blocks.reduce((s, b) => s + b.receipts.reduce((t, r) => t + r.logs.length, 0), 0),
      );
    } finally {
      await store.close();
    }
  });
});
