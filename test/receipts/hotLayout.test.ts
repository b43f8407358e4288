// The hot tier's layout (version 4: postings packed per bucket of blocks, the filling bucket in
// memory; a block's receipt bodies in one value, keyed above every other key): a hot tier of another layout or bucket span is
// rebuilt at open, a damaged bucket or block value is CORRUPT rather than a silently short or wrong
// answer, and prunes that cut through a bucket leave no posting of a pruned block behind.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../../src/lib/errors.ts';
import { entryBodies } from '../../src/receipts/codec.ts';
import { decodePostings, type Posting } from '../../src/receipts/postings.ts';
import type { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import type { LogFilter } from '../../src/receipts/types.ts';
import { ADDRESSES, expectedLogs, logKeys, makeBlock, TOPICS } from './support/fixtures.ts';
import { simSetup } from './support/harness.ts';

const BLOCKS = 30;
const blocks = Array.from({ length: BLOCKS }, (_, n) => makeBlock(17, n, { maxReceipts: 4 }));
const filters: LogFilter[] = [
  { addresses: [ADDRESSES[0]!] },
  { addresses: [ADDRESSES[1]!, ADDRESSES[4]!] },
  { topics: [[TOPICS[2]!]] },
];

async function assertAnswers(store: ReceiptStore, from: number, to: number): Promise<void> {
  for (const f of filters) {
    const got = await store.getLogs({ ...f, fromBlock: from, toBlock: to });
    assert.deepEqual(logKeys(got), logKeys(expectedLogs(blocks, f, from, to)), JSON.stringify({ from, to }));
  }
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
/** Every KV key (hex) with the given first byte. */
async function keysWithPrefix(sim: ReturnType<typeof simSetup>, prefix: number): Promise<string[]> {
  const all = await sim.kv.range({
    gte: Uint8Array.of(prefix),
    lt: Uint8Array.of(prefix + 1),
    limit: 100_000,
  });
  return all.map((e) => hex(e.key));
}

test('a hot tier of layout 1, or of another bucket span, is emptied and rebuilt at open', async () => {
  const sim = simSetup(3);
  let store = await sim.open({ blocksPerFile: 8, postingBucketBlocks: 4 });
  for (const b of blocks) await store.putBlock(b);
  await store.close();
  sim.restartKv();
  const bucketKeys = await keysWithPrefix(sim, 0x41);
  assert.ok(bucketKeys.length > 0, 'closed buckets are written to the KV store');

  // Make it look like layout 1: no version key, and a per-log posting key of the old scheme.
  const oldKey = new Uint8Array(33);
  oldKey[0] = 0x61;
  oldKey.set(ADDRESSES[0]!, 1);
  await sim.kv
    .batch()
    .del(Uint8Array.of(0x6d, 0x56))
    .put(oldKey, Uint8Array.of(0, 0, 0, 0))
    .write({ sync: true });
  sim.restartKv();
  store = await sim.open({ blocksPerFile: 8, postingBucketBlocks: 4 });
  await assertAnswers(store, 0, BLOCKS - 1);
  await store.close();
  sim.restartKv();
  assert.equal(sim.kv.get(oldKey), undefined, 'layout-1 keys are gone');
  assert.deepEqual(await keysWithPrefix(sim, 0x41), bucketKeys, 'the rebuild wrote the same buckets');

  // Another span: rebuilt again, with that span's buckets.
  store = await sim.open({ blocksPerFile: 8, postingBucketBlocks: 7 });
  await assertAnswers(store, 0, BLOCKS - 1);
  await assertAnswers(store, 5, 19);
  await store.close();
  sim.restartKv();
  assert.notDeepEqual(await keysWithPrefix(sim, 0x41), bucketKeys);
});

/** Prefix of the block values: layout 4 (current) keys them '~', layouts 2 and 3 keyed them 'r'. */
const BODY = 0x7e;
const OLD_BODY = 0x72;

/**
 * Writes a store's block values back in an older layout (`version` in 'm' 'V', each value's keys
 * from `oldKeys`), reopens it, and checks it answers every query and holds only layout-4 keys.
 */
async function rebuildsFromOlderLayout(
  seed: number,
  version: number,
  oldKeys: (key: Uint8Array, value: Uint8Array) => [Uint8Array, Uint8Array][],
): Promise<void> {
  const sim = simSetup(seed);
  const options = { blocksPerFile: 8, postingBucketBlocks: 4 };
  let store = await sim.open(options);
  for (const b of blocks) await store.putBlock(b);
  await store.close();
  sim.restartKv();
  const blockValues = await sim.kv.range({
    gte: Uint8Array.of(BODY),
    lt: Uint8Array.of(BODY + 1),
    limit: 100_000,
  });
  assert.ok(blockValues.length > 0);
  assert.ok(
    blockValues.every((e) => e.key.length === 9),
    'layout 4 keys a block value by block number alone',
  );

  const versionValue = new Uint8Array(8);
  new DataView(versionValue.buffer).setUint32(0, version);
  new DataView(versionValue.buffer).setUint32(4, 4);
  const batch = sim.kv.batch().put(Uint8Array.of(0x6d, 0x56), versionValue);
  for (const e of blockValues) {
    batch.del(e.key);
    for (const [key, value] of oldKeys(e.key, e.value)) batch.put(key, value);
  }
  await batch.write({ sync: true });
  sim.restartKv();
  assert.equal((await keysWithPrefix(sim, BODY)).length, 0, 'the older layout has no layout-4 block value');

  store = await sim.open(options);
  try {
    await assertAnswers(store, 0, BLOCKS - 1);
    for (const b of blocks) {
      for (const r of b.receipts) {
        const got = await store.getReceipt(r.txHash);
        assert.equal(got?.blockNumber, b.number);
        assert.equal(got?.logs.length, r.logs.length);
      }
    }
  } finally {
    await store.close();
  }
  sim.restartKv();
  const after = await sim.kv.range({ gte: Uint8Array.of(BODY), lt: Uint8Array.of(BODY + 1), limit: 100_000 });
  assert.deepEqual(
    after.map((e) => hex(e.key)),
    blockValues.map((e) => hex(e.key)),
    'every block value is back under its layout-4 key',
  );
  assert.deepEqual(await keysWithPrefix(sim, OLD_BODY), [], 'no older-layout body key survives the rebuild');
}

test('a hot tier of layout 2 (one body key per receipt) is rebuilt with one value per block', async () => {
  // Layout 2: 'r' block txIndex → receipt body, for every receipt.
  await rebuildsFromOlderLayout(6, 2, (key, value) =>
    entryBodies(value).map((body) => {
      const old = new Uint8Array(13);
      old.set(key);
      old[0] = OLD_BODY;
      old.set(body.subarray(65, 69).slice().reverse(), 9); // tx index: little-endian in the body, big-endian in the key
      return [old, body.slice()];
    }),
  );
});

test("a hot tier of layout 3 (block values under 'r') is rebuilt with them under '~'", async () => {
  await rebuildsFromOlderLayout(8, 3, (key, value) => {
    const old = key.slice();
    old[0] = OLD_BODY;
    return [[old, value]];
  });
});

test('no key of the hot tier sorts above the block values (compaction moves body tables without rewriting them)', async () => {
  const sim = simSetup(9);
  const store = await sim.open({ blocksPerFile: 8, postingBucketBlocks: 4, hotRetentionBlocks: 12 });
  try {
    for (const b of blocks) await store.putBlock(b);
  } finally {
    await store.close();
  }
  sim.restartKv();
  const all = await sim.kv.range({ gte: new Uint8Array(0), limit: 100_000 });
  const bodies = all.filter((e) => e.key[0] === BODY);
  assert.ok(bodies.length > 0, 'block values are stored');
  const firstBody = all.findIndex((e) => e.key[0] === BODY);
  assert.ok(
    all.slice(firstBody).every((e) => e.key[0] === BODY),
    `keys above the first block value: ${all
      .slice(firstBody)
      .filter((e) => e.key[0] !== BODY)
      .map((e) => hex(e.key))
      .join(', ')}`,
  );
  assert.ok(firstBody > 0, 'the other families (postings, indexes, checkpoints) sort below them');
});

test('a damaged posting bucket is CORRUPT, not a short answer', async () => {
  const sim = simSetup(4);
  const store = await sim.open({ blocksPerFile: 8, postingBucketBlocks: 4 });
  try {
    for (const b of blocks) await store.putBlock(b);
    const [first] = await sim.kv.range({ gte: Uint8Array.of(0x41), lt: Uint8Array.of(0x42), limit: 1 });
    assert.ok(first, 'a bucket exists');
    const damaged = first.value.slice();
    damaged[0]! ^= 0x01;
    await sim.kv.batch().put(first.key, damaged).write({ sync: true });
    const address = first.key.subarray(1, 21);
    await assert.rejects(store.getLogs({ addresses: [address], fromBlock: 0, toBlock: BLOCKS - 1 }), (e) =>
      isCairnError(e, 'CORRUPT'),
    );
  } finally {
    await store.close();
  }
});

test('a damaged block value (a body byte, or the receipt count) is CORRUPT on every read path', async () => {
  const sim = simSetup(7);
  const store = await sim.open({ blocksPerFile: 1000, postingBucketBlocks: 4 });
  try {
    for (const b of blocks) await store.putBlock(b);
    const target = blocks.find((b) => b.receipts.length >= 2 && b.receipts[1]!.logs.length > 0)!;
    const key = new Uint8Array(9);
    key[0] = BODY;
    new DataView(key.buffer).setBigUint64(1, BigInt(target.number));
    const good = sim.kv.get(key)!;
    const corruptOn = async (damaged: Uint8Array, what: string): Promise<void> => {
      await sim.kv.batch().put(key, damaged).write({ sync: true });
      const r = target.receipts[1]!;
      const isCorrupt = (e: unknown) => isCairnError(e, 'CORRUPT');
      await assert.rejects(store.getReceipt(r.txHash), isCorrupt, `${what}: by hash`);
      const at = { fromBlock: target.number, toBlock: target.number };
      await assert.rejects(store.getLogs(at), isCorrupt, `${what}: scan`);
      await assert.rejects(
        store.getLogs({ ...at, addresses: [r.logs[0]!.address] }),
        isCorrupt,
        `${what}: postings`,
      );
    };
    // The last byte of the second body's data region (before its CRC): inside the second receipt.
    const bodies = entryBodies(good);
    const secondEnd = bodies[1]!.byteOffset - good.byteOffset + bodies[1]!.length;
    const flipped = good.slice();
    flipped[secondEnd - 5]! ^= 0x10;
    await corruptOn(flipped, 'body byte');
    // A count of one more receipt than the value holds: the framing runs past the entry.
    const counted = good.slice();
    new DataView(counted.buffer).setUint32(41, bodies.length + 1, true);
    await sim.kv.batch().put(key, counted).write({ sync: true });
    await assert.rejects(store.getLogs({ fromBlock: target.number, toBlock: target.number }), (e) =>
      isCairnError(e, 'CORRUPT'),
    );
    // One fewer: a scan must not silently drop the last receipt.
    const fewer = good.slice();
    new DataView(fewer.buffer).setUint32(41, bodies.length - 1, true);
    await sim.kv.batch().put(key, fewer).write({ sync: true });
    await assert.rejects(store.getLogs({ fromBlock: target.number, toBlock: target.number }), (e) =>
      isCairnError(e, 'CORRUPT'),
    );
    await sim.kv.batch().put(key, good).write({ sync: true });
    assert.equal((await store.getReceipt(target.receipts[1]!.txHash))?.blockNumber, target.number);
  } finally {
    await store.close();
  }
});

test('prunes that cut through buckets leave no posting of a pruned block, in the KV store or memory', async () => {
  const sim = simSetup(5);
  const options = { blocksPerFile: 4, postingBucketBlocks: 6 };
  /** Every posting the KV store holds is of a block at or above the floor. */
  const assertNoneBelow = async (floor: number): Promise<void> => {
    const entries = await sim.kv.range({ gte: Uint8Array.of(0x41), lt: Uint8Array.of(0x44), limit: 100_000 });
    for (const e of entries) {
      const bucket = Number(Buffer.from(e.key).readBigUInt64BE(e.key.length - 8));
      const postings: Posting[] = [];
      decodePostings(e.value, bucket, 6, 0, Number.MAX_SAFE_INTEGER, postings);
      assert.ok(postings.length > 0, `bucket ${bucket} is empty but kept`);
      for (const p of postings)
        assert.ok(p.block >= floor, `bucket ${bucket} holds block ${p.block} < ${floor}`);
    }
  };
  let store = await sim.open(options);
  try {
    for (const b of blocks.slice(0, 22)) await store.putBlock(b);
    // Floor 7 cuts bucket 6..11 (in the KV store); floor 21, capped at the archived end + 1 = 20,
    // cuts bucket 18..23, which is still filling (memory only).
    for (const [target, expected] of [
      [7, 7],
      [21, 20],
    ] as const) {
      const floor = await store.pruneBelow(target);
      assert.equal(floor, expected);
      await assertAnswers(store, floor, 21);
      await assertNoneBelow(floor);
    }
    for (const b of blocks.slice(22)) await store.putBlock(b); // seals bucket 18..23
    await assertNoneBelow(20);
    await store.close();
    sim.restartKv();
    store = await sim.open(options);
    assert.equal(store.ranges().floor, 20);
    await assertAnswers(store, 20, BLOCKS - 1);
    await assertNoneBelow(20);
  } finally {
    await store.close();
  }
});
