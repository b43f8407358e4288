// One test per finding of the reviewer's audit (spec-receipt-store §7.1) that applies to this
// design, and per latent issue of §7.4. Each states the reference behaviour it would catch.
// Findings covered elsewhere: §7.4-A (★11), D/E (★42), F (★35 and the WAL fsync case below),
// M (★28), N (crash.test.ts, drop-all policy).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng } from '../../src/lib/rng.ts';
import { DuckDbArchive } from '../../src/receipts/duckdbArchive.ts';
import { decodeState, emptyState, encodeState } from '../../src/receipts/manifest.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { DROP_ALL } from '../../src/testing/simulatedFileSystem.ts';
import { ADDRESSES, blockHash, expectedLogs, logKeys, makeBlock, TOPICS } from './support/fixtures.ts';
import { ProbeArchive, simSetup, withTempDir } from './support/harness.ts';

const withLogs = (n: number) => {
  for (let seed = 1; ; seed++) {
    const b = makeBlock(seed, n);
    if (b.receipts.some((r) => r.logs.length > 0)) return b;
  }
};
const emptyBlock = (n: number) => ({ number: n, hash: blockHash(n), receipts: [] });

test('#1 a failed open releases every resource (reference: writers and handles leaked); the next open succeeds', async () => {
  await withTempDir(async (dir) => {
    let store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    const probe = new ProbeArchive(await DuckDbArchive.open());
    for (let n = 0; n < 3; n++) await store.putBlock(withLogs(n));
    await store.close();
    // Block 3 closes a window; make the reopen's rotation fail by writing it through a failing engine.
    store = await ReceiptStore.open({ dir, blocksPerFile: 4, archive: probe });
    probe.failWrites = 1;
    await store.putBlock(withLogs(3));
    await assert.rejects(store.close());
    const failing = new ProbeArchive(await DuckDbArchive.open());
    failing.failWrites = 1;
    await assert.rejects(ReceiptStore.open({ dir, blocksPerFile: 4, archive: failing }));
    // LevelDB's lock and the WAL were released: a plain open works and archives the window.
    store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    assert.equal(store.ranges().archivedThrough, 3);
    await store.close();
  });
});

test('#3/#4 a chain starting at block 0 and one starting mid-window (reference: block 0 meant "none")', async () => {
  const sim = simSetup(31);
  let store = await sim.open({ blocksPerFile: 500 });
  const b0 = withLogs(0);
  await store.putBlock(b0);
  const logs = await store.getLogs({ fromBlock: 0, toBlock: 0 });
  assert.equal(logs[0]?.logIndex, 0);
  await store.close();
  const sim2 = simSetup(32);
  store = await sim2.open({ blocksPerFile: 500 });
  for (let n = 5234; n < 5500; n++) await store.putBlock(emptyBlock(n));
  await store.pruneBelow(0);
  assert.deepEqual(
    store.archiveFiles().map((f) => [f.entry.first, f.entry.last]),
    [[5234, 5499]],
  );
  await store.close();
});

test('#5/§7.4-I invalid configuration is refused before anything is created (reference: span 0 dropped data)', async () => {
  const sim = simSetup(33);
  for (const bad of [
    { blocksPerFile: 0 },
    { blocksPerFile: 1.5 },
    { hotRetentionBlocks: -1 },
    { maxResults: 0 },
  ]) {
    await assert.rejects(sim.open(bad), (e) => isCairnError(e, 'INVALID_ARGUMENT'), JSON.stringify(bad));
  }
  assert.equal(sim.fs.exists('/r'), false);
});

test('#9 the manifest refuses a file list that is not contiguous and ascending', () => {
  const ref = (name: string) => ({ name, bytes: 1, crc32c: 1 });
  const f = (first: number, last: number) => ({
    first,
    last,
    receiptRows: 0,
    logRows: 0,
    receipts: ref(`r${first}`),
    logs: ref(`l${first}`),
  });
  const good = { ...emptyState(), firstBlock: 0, nextToArchive: 8, files: [f(0, 3), f(4, 7)] };
  assert.deepEqual(decodeState(encodeState(good)), good);
  for (const files of [
    [f(4, 7), f(0, 3)],
    [f(0, 3), f(5, 7)],
  ]) {
    assert.throws(
      () => decodeState(encodeState({ ...good, files })),
      (e) => isCairnError(e, 'CORRUPT'),
    );
  }
});

test('#10/§7.4-H spans come from the manifest, not the config: reopen with another span, empty windows, exact pruning', async () => {
  const sim = simSetup(35);
  let store = await sim.open({ blocksPerFile: 4 });
  const blocks = [withLogs(0), emptyBlock(1), emptyBlock(2), emptyBlock(3), emptyBlock(4), emptyBlock(5)];
  for (const b of blocks) await store.putBlock(b);
  await store.close();
  sim.restartKv();
  store = await sim.open({ blocksPerFile: 10 });
  for (let n = 6; n < 22; n++) {
    blocks.push(withLogs(n));
    await store.putBlock(blocks[n]!);
  }
  await store.pruneBelow(0);
  assert.deepEqual(
    store.archiveFiles().map((f) => [f.entry.first, f.entry.last, f.entry.logRows > 0]),
    [
      [0, 3, true],
      [4, 9, true],
      [10, 19, true],
    ],
  );
  assert.deepEqual(
    logKeys(await store.getLogs({ fromBlock: 0, toBlock: 21 })),
    logKeys(expectedLogs(blocks, {}, 0, 21)),
  );
  assert.equal(await store.pruneBelow(10), 10);
  assert.deepEqual(
    store.archiveFiles().map((f) => f.entry.first),
    [10],
  );
  assert.deepEqual(
    logKeys(await store.getLogs({ fromBlock: 10, toBlock: 21 })),
    logKeys(expectedLogs(blocks, {}, 10, 21)),
  );
  await store.close();
});

test('#11/#12/#14 close: waits for queued writes, is idempotent, later calls fail CLOSED', async () => {
  const sim = simSetup(36);
  let store = await sim.open();
  const writes = [0, 1, 2].map((n) => store.putBlock(withLogs(n)));
  const closing = store.close();
  await Promise.all(writes);
  await closing;
  await store.close();
  await assert.rejects(store.putBlock(withLogs(3)), (e) => isCairnError(e, 'CLOSED'));
  await assert.rejects(store.getReceipt(new Uint8Array(32)), (e) => isCairnError(e, 'CLOSED'));
  sim.restartKv();
  store = await sim.open();
  assert.equal(store.ranges().latest, 2);
  await store.close();
});

test('#21 a failing delete of an unlisted file fails open with a typed error (reference: ignored)', async () => {
  const sim = simSetup(37);
  let store = await sim.open();
  await store.putBlock(withLogs(0));
  await store.close();
  const h = sim.fs.open('/r/archive/logs_9_9.parquet', { create: true });
  h.close();
  sim.fs.syncDir('/r/archive');
  sim.fs.injectFault({ op: 'unlink', nth: 1, error: 'EIO' });
  await assert.rejects(sim.open(), (e) => isCairnError(e, 'IO_FATAL'));
  sim.fs.clearFaults();
  sim.restartKv();
  store = await sim.open();
  assert.equal(sim.fs.exists('/r/archive/logs_9_9.parquet'), false);
  await store.close();
});

test('§7.4-B historical writes are refused per block without failing the chain (reference: the whole batch failed)', async () => {
  const sim = simSetup(38);
  const store = await sim.open();
  for (let n = 10; n < 20; n++) await store.putBlock(withLogs(n));
  await assert.rejects(store.putBlock(withLogs(3)), (e) => isCairnError(e, 'OUT_OF_RANGE'));
  await store.pruneBelow(14);
  await assert.rejects(store.putBlock(withLogs(12)), (e) => isCairnError(e, 'PRUNED'));
  await store.putBlock(withLogs(20));
  assert.equal(store.ranges().latest, 20);
  await store.close();
});

test('§7.4-C a restart in the middle of a window hides nothing (reference: cache coverage hole)', async () => {
  const sim = simSetup(39);
  let store = await sim.open({ blocksPerFile: 4 });
  const blocks = Array.from({ length: 8 }, (_, n) => withLogs(n));
  for (let n = 0; n < 7; n++) await store.putBlock(blocks[n]!);
  await store.close();
  sim.restartKv();
  store = await sim.open({ blocksPerFile: 4 });
  await store.putBlock(blocks[7]!);
  assert.deepEqual(
    logKeys(await store.getLogs({ fromBlock: 4, toBlock: 7 })),
    logKeys(expectedLogs(blocks, {}, 4, 7)),
  );
  await store.close();
});

test('§7.4-F a failed WAL fsync poisons the store; the reopen has exactly the acknowledged blocks', async () => {
  const sim = simSetup(40);
  let store = await sim.open();
  await store.putBlock(withLogs(0));
  sim.fs.injectFault({ op: 'syncAsync', nth: 1, error: 'EIO', pathIncludes: 'wal' });
  sim.fs.injectFault({ op: 'sync', nth: 1, error: 'EIO', pathIncludes: 'wal' });
  const err = await store.putBlock(withLogs(1)).catch((e) => e);
  assert.ok(isCairnError(err) && err.kind === 'fatal', String(err));
  assert.equal(await store.putBlock(withLogs(2)).catch((e) => e), err);
  await store.close().catch(() => undefined);
  sim.fs.clearFaults();
  const image = sim.fs.crash(DROP_ALL);
  const kv = sim.kv.crashImage(new Rng(1));
  store = await ReceiptStore.open({
    dir: '/r',
    fs: image,
    kv,
    archive: new ProbeArchive(sim.archive),
    blocksPerFile: 4,
  });
  assert.ok(store.ranges().latest >= 0);
  assert.equal((await store.getReceipt(withLogs(0).receipts[0]!.txHash))?.blockNumber, 0);
  await store.close();
});

test('§7.4-G latest survives a restart, empty tip blocks included (reference: forgotten)', async () => {
  const sim = simSetup(41);
  let store = await sim.open();
  await store.putBlock(withLogs(0));
  await store.putBlock(emptyBlock(1));
  await store.putBlock(emptyBlock(2));
  await store.close();
  sim.restartKv();
  store = await sim.open();
  assert.equal(store.ranges().latest, 2);
  await assert.rejects(store.putBlock(emptyBlock(1 + 1 + 1 + 1)), (e) => isCairnError(e, 'OUT_OF_ORDER'));
  await store.close();
});

test('§7.4-J log indices are deterministic: input order and WAL replay give the same numbering', async () => {
  const b = makeBlock(42, 7, { maxReceipts: 6 });
  const shuffled = { ...b, receipts: [...b.receipts].sort(() => 0).reverse() };
  const run = async (input: typeof b, crash: boolean) => {
    const sim = simSetup(42);
    let store = await sim.open();
    for (let n = 0; n < 7; n++) await store.putBlock(emptyBlock(n));
    await store.putBlock(input);
    if (crash) {
      await store.close();
      sim.kv = sim.kv.crashImage(new Rng(0)); // the hot tier loses its unsynced batches: WAL replay
      sim.kv.failNextWrites(0);
      store = await sim.open();
    }
    const logs = logKeys(await store.getLogs({ fromBlock: 7, toBlock: 7 }));
    await store.close();
    return logs;
  };
  const expected = logKeys(expectedLogs([b], {}, 7, 7));
  assert.deepEqual(await run(b, false), expected);
  assert.deepEqual(await run(shuffled, false), expected);
  assert.deepEqual(await run(shuffled, true), expected);
});

test('§7.4-K a fifth topic position is refused in filters and in logs (reference: ignored in one path, rejected in the other)', async () => {
  const sim = simSetup(43);
  const store = await sim.open();
  await store.putBlock(withLogs(0));
  const t = TOPICS[0]!;
  await assert.rejects(
    store.getLogs({ fromBlock: 0, toBlock: 0, topics: [null, null, null, null, [t]] }),
    (e) => isCairnError(e, 'INVALID_ARGUMENT'),
  );
  const five = withLogs(1);
  const bad = {
    ...five,
    receipts: [
      {
        ...five.receipts[0]!,
        logs: [{ address: ADDRESSES[0]!, topics: [t, t, t, t, t], data: new Uint8Array() }],
      },
    ],
  };
  await assert.rejects(store.putBlock(bad), (e) => isCairnError(e, 'INVALID_ARGUMENT'));
  assert.equal(store.ranges().latest, 0);
  await store.close();
});

test('§7.4-L reads never wait for the write loop: they complete while a rotation is stuck', async () => {
  let probe: ProbeArchive | undefined;
  const sim = simSetup(44, (a) => {
    probe = new ProbeArchive(a);
    return probe;
  });
  const store = await sim.open({ blocksPerFile: 4 });
  let release!: () => void;
  probe!.writeGate = new Promise<void>((r) => {
    release = r;
  });
  const blocks = Array.from({ length: 5 }, (_, n) => withLogs(n));
  for (const b of blocks.slice(0, 4)) await store.putBlock(b); // the rotation of 0..3 now hangs
  const queued = store.putBlock(blocks[4]!);
  assert.equal((await store.getReceipt(blocks[2]!.receipts[0]!.txHash))?.blockNumber, 2);
  assert.deepEqual(
    logKeys(await store.getLogs({ fromBlock: 0, toBlock: 3 })),
    logKeys(expectedLogs(blocks, {}, 0, 3)),
  );
  release();
  await queued;
  await store.close();
});

test('query guards: range, result count, bytes, AbortSignal, pruned floor — each a typed caller error', async () => {
  const sim = simSetup(45);
  const store = await sim.open({ maxBlockRange: 5, maxResults: 3, maxResultBytes: 100_000 });
  const blocks = Array.from({ length: 10 }, (_, n) => makeBlock(45, n, { maxReceipts: 6 }));
  for (const b of blocks) await store.putBlock(b);
  await assert.rejects(store.getLogs({ fromBlock: 0, toBlock: 9 }), (e) => {
    assert.ok(isCairnError(e, 'LIMIT_EXCEEDED'));
    assert.match(e.message, /10 blocks \(max 5\)/);
    return true;
  });
  await assert.rejects(store.getLogs({ fromBlock: 0, toBlock: 4 }), (e) => isCairnError(e, 'LIMIT_EXCEEDED'));
  const ctl = new AbortController();
  ctl.abort();
  await assert.rejects(store.getLogs({ fromBlock: 0, toBlock: 0 }, { signal: ctl.signal }), (e) =>
    isCairnError(e, 'ABORTED'),
  );
  await store.pruneBelow(4);
  await assert.rejects(
    store.getLogs({ fromBlock: 3, toBlock: 4 }),
    (e) => isCairnError(e, 'PRUNED') && e.kind === 'caller',
  );
  await store.close();
  const small = simSetup(46);
  const s2 = await small.open({ maxResultBytes: 300 });
  for (const b of blocks) await s2.putBlock(b);
  await assert.rejects(s2.getLogs({ fromBlock: 0, toBlock: 9 }), (e) => isCairnError(e, 'LIMIT_EXCEEDED'));
  await s2.close();
});
