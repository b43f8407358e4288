// The acceptance scenarios (★) of spec-receipt-store §8, adapted to Cairn's design: a receipt WAL
// (one entry per block, every block including empty ones), a hot LevelDB tier, Parquet archive files
// listed in a checksummed manifest. Real engines (DuckDB, classic-level) unless a fault is injected.
// ★27 (crash at every fault point), ★31 and ★32 (replay around a rotation) are also swept by
// crash.test.ts at every I/O call.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { Wal } from '../../src/wal/wal.ts';
import {
  ADDRESSES,
  blockHash,
  expectedLogs,
  logKeys,
  makeBlock,
  TOPICS,
  txHash,
} from './support/fixtures.ts';
import { ProbeArchive, simSetup, withTempDir } from './support/harness.ts';

const walFirstIndex = async (dir: string): Promise<number> => {
  const wal = await Wal.open({ fs: realFileSystem, dir: join(dir, 'wal'), readOnly: true });
  const first = wal.firstIndex;
  await wal.close();
  return first;
};

const withReceipt = (n: number): ReturnType<typeof makeBlock> => {
  for (let seed = 1; ; seed++) {
    const b = makeBlock(seed, n);
    if (b.receipts.some((r) => r.logs.length > 0)) return b;
  }
};
const empty = (n: number) => ({ number: n, hash: blockHash(n), receipts: [] });

test('★1 read your writes: by hash in the open window, after rotation, from the archive only, after reopen', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 12 }, (_, n) => withReceipt(n));
    let store = await ReceiptStore.open({ dir, blocksPerFile: 4, hotRetentionBlocks: 3 });
    const probe = async (n: number): Promise<void> => {
      const r = await store.getReceipt(blocks[n]!.receipts[0]!.txHash);
      assert.equal(r?.blockNumber, n, `block ${n}`);
      assert.deepEqual(r?.blockHash, blocks[n]!.hash);
      const logs = await store.getLogs({ fromBlock: n, toBlock: n });
      assert.deepEqual(logKeys(logs), logKeys(expectedLogs(blocks, {}, n, n)));
    };
    await store.putBlock(blocks[0]!);
    await probe(0); // open window: hot tier + WAL only
    for (let n = 1; n < 12; n++) await store.putBlock(blocks[n]!);
    await store.pruneBelow(0); // barrier: rotations queued behind the writes are done
    assert.equal(store.ranges().archivedThrough, 11);
    assert.ok(store.ranges().hotFloor > 0, 'hot tier pruned, old blocks only in the archive');
    for (let n = 0; n < 12; n++) await probe(n);
    await store.close();
    store = await ReceiptStore.open({ dir, blocksPerFile: 4, hotRetentionBlocks: 3 });
    for (let n = 0; n < 12; n++) await probe(n);
    await store.close();
  });
});

test('★2 aligned rotation: span 4 from block 1 closes 1..3, then 4..7; the WAL keeps the trailing window', async () => {
  await withTempDir(async (dir) => {
    const store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    for (let n = 1; n <= 4; n++) await store.putBlock(withReceipt(n));
    await store.pruneBelow(0);
    assert.deepEqual(
      store.archiveFiles().map((f) => [f.entry.first, f.entry.last]),
      [[1, 3]],
    );
    for (let n = 5; n <= 8; n++) await store.putBlock(withReceipt(n));
    await store.pruneBelow(0);
    assert.deepEqual(
      store.archiveFiles().map((f) => [f.entry.first, f.entry.last]),
      [
        [1, 3],
        [4, 7],
      ],
    );
    await store.close();
    assert.equal(await walFirstIndex(dir), 4, 'the WAL keeps 4..8 (trailing file + open window)');
    assert.deepEqual(readdirSync(join(dir, 'archive')).sort(), [
      'MANIFEST.a',
      'MANIFEST.b',
      'logs_1_3.parquet',
      'logs_4_7.parquet',
      'receipts_1_3.parquet',
      'receipts_4_7.parquet',
    ]);
  });
});

test('★3 rotation on an empty boundary block: 1 with logs, 2-4 empty, 5 with logs; reopen finds 5', async () => {
  await withTempDir(async (dir) => {
    let store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    const b1 = withReceipt(1);
    const b5 = withReceipt(5);
    await store.putBlock(b1);
    for (const n of [2, 3, 4]) await store.putBlock(empty(n));
    await store.putBlock(b5);
    await store.close();
    store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    assert.deepEqual(
      store.archiveFiles().map((f) => [f.entry.first, f.entry.last]),
      [[1, 3]],
    );
    assert.equal(store.ranges().latest, 5);
    assert.deepEqual(
      logKeys(await store.getLogs({ fromBlock: 5, toBlock: 5 })),
      logKeys(expectedLogs([b5], {}, 5, 5)),
    );
    assert.deepEqual(await store.getLogs({ fromBlock: 4, toBlock: 4 }), []);
    await store.close();
  });
});

test('★5 reopen never truncates or rewrites a closed file', async () => {
  await withTempDir(async (dir) => {
    let store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    for (let n = 0; n <= 5; n++) await store.putBlock(withReceipt(n));
    await store.close();
    const file = join(dir, 'archive', 'logs_0_3.parquet');
    const before = readFileSync(file);
    store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    for (let n = 6; n <= 9; n++) await store.putBlock(withReceipt(n));
    await store.close();
    assert.deepEqual(readFileSync(file), before);
  });
});

test('★11 out-of-order writes: a gap and a conflicting re-write are refused and change nothing; an identical re-write is a no-op', async () => {
  const sim = simSetup(3);
  let store = await sim.open();
  const blocks = Array.from({ length: 6 }, (_, n) => withReceipt(n));
  for (const b of blocks) await store.putBlock(b);
  const mutations = sim.fs.mutationCount;
  await assert.rejects(store.putBlock(withReceipt(7)), (e) => {
    assert.ok(isCairnError(e, 'OUT_OF_ORDER'));
    assert.match(e.message, /block 7 .* next block is 6/);
    return true;
  });
  const other = { ...makeBlock(99, 4), number: 4, hash: blockHash(4) };
  await assert.rejects(store.putBlock(other), (e) => isCairnError(e, 'CONFLICT') && e.kind === 'caller');
  await store.putBlock(blocks[4]!); // identical: acknowledged
  assert.equal(sim.fs.mutationCount, mutations, 'nothing was written');
  await store.close();
  sim.restartKv();
  store = await sim.open();
  assert.equal(store.ranges().latest, 5);
  for (const r of blocks[4]!.receipts) assert.equal((await store.getReceipt(r.txHash))?.blockNumber, 4);
  // 7.4-A: monotonicity survives the restart.
  await assert.rejects(store.putBlock(other), (e) => isCairnError(e, 'CONFLICT'));
  await assert.rejects(store.putBlock(withReceipt(9)), (e) => isCairnError(e, 'OUT_OF_ORDER'));
  await store.close();
});

test('★17 eth_getLogs semantics across two files after reopen: range, address list, positional topics with OR and wildcards, block hash', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 9 }, (_, n) => makeBlock(17, n, { maxReceipts: 8 }));
    let store = await ReceiptStore.open({ dir, blocksPerFile: 4, hotRetentionBlocks: 2 });
    for (const b of blocks) await store.putBlock(b);
    await store.close();
    store = await ReceiptStore.open({ dir, blocksPerFile: 4, hotRetentionBlocks: 2 });
    const filters = [
      {},
      { addresses: [ADDRESSES[2]!] },
      { addresses: [ADDRESSES[0]!, ADDRESSES[3]!] },
      { topics: [[TOPICS[1]!]] },
      { topics: [null, [TOPICS[0]!, TOPICS[4]!]] },
      { addresses: [ADDRESSES[1]!], topics: [[TOPICS[2]!, TOPICS[3]!], null, [TOPICS[1]!]] },
      { topics: [[], [], [], [TOPICS[0]!]] },
    ];
    for (const f of filters) {
      const q = { ...f, fromBlock: 2, toBlock: 6 };
      const got = await store.getLogs(q);
      assert.deepEqual(logKeys(got), logKeys(expectedLogs(blocks, f, 2, 6)), JSON.stringify(f));
    }
    const byHash = await store.getLogs({ blockHash: blocks[5]!.hash });
    assert.deepEqual(logKeys(byHash), logKeys(expectedLogs(blocks, {}, 5, 5)));
    await assert.rejects(store.getLogs({ fromBlock: 6, toBlock: 2 }), (e) =>
      isCairnError(e, 'INVALID_ARGUMENT'),
    );
    await assert.rejects(store.getLogs({ blockHash: blockHash(99) }), (e) => isCairnError(e, 'NOT_FOUND'));
    await store.close();
  });
});

test('★28 damaged trailing file is rebuilt from the WAL; a damaged older file fails open; unlisted files are deleted', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 10 }, (_, n) => withReceipt(n));
    let store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    for (const b of blocks) await store.putBlock(b);
    await store.close();
    const archive = join(dir, 'archive');
    const trailing = join(archive, 'logs_4_7.parquet');
    const good = readFileSync(trailing);
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 2)]! ^= 0xff;
    writeFileSync(trailing, bad);
    writeFileSync(join(archive, 'logs_8_11.parquet'), 'junk from a crashed rotation');
    writeFileSync(join(archive, 'receipts_8_11.parquet.tmp'), 'junk');
    store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    assert.deepEqual((await store.verify()).problems, []);
    const all = { fromBlock: 0, toBlock: 9 };
    assert.deepEqual(
      logKeys(await store.getArchivedLogs({ fromBlock: 0, toBlock: 7 })),
      logKeys(expectedLogs(blocks, {}, 0, 7)),
    );
    assert.deepEqual(logKeys(await store.getLogs(all)), logKeys(expectedLogs(blocks, {}, 0, 9)));
    await store.close();
    assert.deepEqual(
      readdirSync(archive).filter((n) => n.includes('8_11')),
      [],
      'unlisted files deleted',
    );
    const older = join(archive, 'receipts_0_3.parquet');
    writeFileSync(older, readFileSync(older).subarray(0, 100));
    await assert.rejects(ReceiptStore.open({ dir, blocksPerFile: 4 }), (e) => isCairnError(e, 'CORRUPT'));
  });
});

test('★32/★34 a rotation that fails poisons the store; the reopen archives the window; a failing rotation at open fails open atomically', async () => {
  let probe: ProbeArchive | undefined;
  const sim = simSetup(5, (a) => {
    probe = new ProbeArchive(a);
    return probe;
  });
  let store = await sim.open();
  probe!.failWrites = 1;
  const blocks = Array.from({ length: 6 }, (_, n) => withReceipt(n));
  for (let n = 0; n < 4; n++) await store.putBlock(blocks[n]!); // block 3 closes window 0..3
  await assert.rejects(store.pruneBelow(0), (e) => isCairnError(e) && e.kind === 'fatal');
  await assert.rejects(store.putBlock(blocks[4]!), (e) => isCairnError(e) && e.kind === 'fatal');
  await assert.rejects(store.close());
  await assert.rejects(store.close(), 'close repeats the first result');
  sim.restartKv();
  // The reopen's rotation fails too: open rejects, lists nothing, leaves the WAL intact.
  await assert.rejects(
    (async () => {
      const p = new ProbeArchive(sim.archive);
      p.failWrites = 1;
      return ReceiptStore.open({
        dir: '/r',
        fs: sim.fs,
        kv: sim.kv,
        archive: p,
        blocksPerFile: 4,
        walSegmentBytes: 16 * 1024,
      });
    })(),
  );
  sim.restartKv();
  store = await sim.open();
  assert.deepEqual(
    store.archiveFiles().map((f) => [f.entry.first, f.entry.last]),
    [[0, 3]],
  );
  for (let n = 0; n < 4; n++) {
    for (const r of blocks[n]!.receipts) assert.equal((await store.getReceipt(r.txHash))?.blockNumber, n);
  }
  await store.putBlock(blocks[4]!);
  await store.close();
});

test('★35 a failed hot-tier write poisons the store until reopen; the block is recovered from the WAL', async () => {
  const sim = simSetup(7);
  let store = await sim.open();
  const blocks = Array.from({ length: 4 }, (_, n) => withReceipt(n));
  await store.putBlock(blocks[0]!);
  sim.kv.failNextWrites(1);
  const failed = await store.putBlock(blocks[1]!).catch((e) => e);
  assert.ok(isCairnError(failed) && failed.kind === 'fatal');
  const again = await store.putBlock(blocks[2]!).catch((e) => e);
  assert.equal(again, failed, 'every later write rejects with the original cause');
  const c1 = await store.close().catch((e) => e);
  const c2 = await store.close().catch((e) => e);
  assert.equal(c1, failed);
  assert.equal(c2, failed);
  await assert.rejects(store.getLogs({ fromBlock: 0, toBlock: 0 }), (e) => isCairnError(e, 'CLOSED'));
  sim.restartKv();
  store = await sim.open();
  assert.equal(store.ranges().latest, 1, 'block 1 reached the WAL before the hot tier failed');
  for (const n of [0, 1]) {
    for (const r of blocks[n]!.receipts) assert.equal((await store.getReceipt(r.txHash))?.blockNumber, n);
  }
  await store.close();
});

test('★38 pruning: the floor is persisted first and honoured at once; files go after their last reader', async () => {
  let probe: ProbeArchive | undefined;
  const sim = simSetup(11, (a) => {
    probe = new ProbeArchive(a);
    return probe;
  });
  let store = await sim.open({ hotRetentionBlocks: 2 });
  const blocks = Array.from({ length: 14 }, (_, n) => withReceipt(n));
  for (const b of blocks) await store.putBlock(b);
  await store.pruneBelow(0);
  const first = store.archiveFiles()[0]!;
  // A reader holds the first file (it pauses inside the archive engine).
  let open!: () => void;
  probe!.gate = new Promise<void>((r) => {
    open = r;
  });
  const reading = store.getLogs({ fromBlock: 0, toBlock: 3 });
  await new Promise((r) => setImmediate(r));
  assert.equal(await store.pruneBelow(6), 6, 'reads honour the floor at once, even inside a file');
  assert.equal(store.ranges().floor, 6);
  assert.ok(sim.fs.exists(first.logsPath), 'a file in use is not deleted');
  await assert.rejects(store.getLogs({ fromBlock: 3, toBlock: 5 }), (e) => isCairnError(e, 'PRUNED'));
  assert.equal(await store.getReceipt(blocks[1]!.receipts[0]!.txHash), undefined);
  open();
  probe!.gate = undefined;
  await reading;
  assert.ok(!sim.fs.exists(first.logsPath), 'deleted after its last reader');
  await store.close();
  sim.restartKv();
  store = await sim.open({ hotRetentionBlocks: 2 });
  assert.equal(store.ranges().floor, 6, 'the floor survives a reopen');
  for (let n = 0; n < store.ranges().floor; n++) {
    for (const r of blocks[n]!.receipts) {
      // Not found, or PRUNED where the index still places it (blocks 4, 5: file 4..7 straddles the floor).
      const got = await store.getReceipt(r.txHash).catch((e: unknown) => {
        assert.ok(isCairnError(e, 'PRUNED') && e.details?.floor === 6 && n >= 4, String(e));
        return undefined;
      });
      assert.equal(got, undefined, `pruned block ${n}`);
    }
  }
  await store.close();
});

test('★42 tx-hash index: blocks replayed from the WAL are indexed; a miss is definite without touching the archive; a hash in two blocks', async () => {
  let probe: ProbeArchive | undefined;
  const sim = simSetup(13, (a) => {
    probe = new ProbeArchive(a);
    return probe;
  });
  let store = await sim.open();
  const blocks = Array.from({ length: 6 }, (_, n) => withReceipt(n));
  for (const b of blocks) await store.putBlock(b);
  await store.close();
  // Power cut on the KV: its unsynced batches are gone; the WAL replays them at open.
  sim.kv = sim.kv.crashImageKeeping([]);
  store = await sim.open();
  for (let n = 0; n < 6; n++) {
    for (const r of blocks[n]!.receipts) assert.equal((await store.getReceipt(r.txHash))?.blockNumber, n);
  }
  const before = { ...probe!.calls };
  assert.equal(await store.getReceipt(txHash(12345, 0)), undefined);
  assert.deepEqual(probe!.calls, before, 'a miss touches no archive file');
  // The same hash in blocks 6 and 7: the later block wins, before and after a reopen.
  const dup = txHash(6, 0);
  const b6 = {
    number: 6,
    hash: blockHash(6),
    receipts: [{ ...withReceipt(6).receipts[0]!, txHash: dup, txIndex: 0 }],
  };
  const b7 = {
    number: 7,
    hash: blockHash(7),
    receipts: [{ ...withReceipt(7).receipts[0]!, txHash: dup, txIndex: 0 }],
  };
  await store.putBlock(b6);
  await store.putBlock(b7);
  assert.equal((await store.getReceipt(dup))?.blockNumber, 7);
  await store.close();
  sim.restartKv();
  store = await sim.open();
  assert.equal((await store.getReceipt(dup))?.blockNumber, 7);
  await store.close();
});

test('★37 backpressure: a full write queue refuses with BACKPRESSURE (transient) and accepts again once drained', async () => {
  const sim = simSetup(17);
  const store = await sim.open({ maxQueuedWrites: 2 });
  const p0 = store.putBlock(withReceipt(0));
  const p1 = store.putBlock(withReceipt(1));
  await assert.rejects(
    store.putBlock(withReceipt(2)),
    (e) => isCairnError(e, 'BACKPRESSURE') && e.kind === 'transient',
  );
  await Promise.all([p0, p1]);
  await store.putBlock(withReceipt(2));
  await store.close();
});

test('the hot tier is derived data: deleting it rebuilds it from the archive and the WAL', async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 14 }, (_, n) => withReceipt(n));
    let store = await ReceiptStore.open({ dir, blocksPerFile: 4, hotRetentionBlocks: 3 });
    for (const b of blocks) await store.putBlock(b);
    await store.pruneBelow(2);
    await store.close();
    rmSync(join(dir, 'hot'), { recursive: true, force: true });
    store = await ReceiptStore.open({ dir, blocksPerFile: 4, hotRetentionBlocks: 3 });
    const r = store.ranges();
    assert.equal(r.floor, 2);
    for (let n = 0; n < 14; n++) {
      for (const rc of blocks[n]!.receipts) {
        assert.equal((await store.getReceipt(rc.txHash))?.blockNumber, n < 2 ? undefined : n, `block ${n}`);
      }
    }
    assert.deepEqual(
      logKeys(await store.getLogs({ fromBlock: 2, toBlock: 13 })),
      logKeys(expectedLogs(blocks, {}, 2, 13)),
    );
    assert.deepEqual((await store.verify()).problems, []);
    await store.close();
  });
});
