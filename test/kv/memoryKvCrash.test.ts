// MemoryKv's power-loss model: synced batches and everything before them survive; of the unsynced
// batches after the last synced one, any subset survives (each batch whole), so an earlier batch can
// be lost while a later one is kept, as LevelDB with paranoid_checks off does when it skips a damaged
// log block. The legacy in-order prefix model stays available.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { u64Key } from '../../src/kv/orderedKv.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';

const k = (n: number): Uint8Array => u64Key(3, n);
const v = (s: string): Uint8Array => new TextEncoder().encode(s);

/** One synced batch (key 0), then `count` unsynced batches, batch i putting keys 100+i and 200+i. */
async function withUnsynced(count: number): Promise<MemoryKv> {
  const kv = new MemoryKv();
  await kv.batch().put(k(0), v('synced')).write({ sync: true });
  for (let i = 0; i < count; i++) {
    await kv
      .batch()
      .put(k(100 + i), v(`a${i}`))
      .put(k(200 + i), v(`b${i}`))
      .write({ sync: false });
  }
  return kv;
}

function keptBatches(image: MemoryKv, count: number): boolean[] {
  return Array.from({ length: count }, (_, i) => {
    const a = image.get(k(100 + i)) !== undefined;
    const b = image.get(k(200 + i)) !== undefined;
    assert.equal(a, b, `batch ${i} is split: one key kept, the other lost`);
    return a;
  });
}

test('subset model: an earlier unsynced batch can be lost while a later one survives; batches stay whole', async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const kv = await withUnsynced(6);
  assert.equal(kv.unsyncedBatchCount, 6);
  const rng = new Rng(seed);
  const patterns = new Set<string>();
  let gapped = 0;
  for (let i = 0; i < 400; i++) {
    const image = kv.crashImage(rng);
    assert.deepEqual(image.get(k(0)), v('synced'), 'the synced batch survives');
    const pattern = keptBatches(image, 6)
      .map((kept) => (kept ? '1' : '0'))
      .join('');
    patterns.add(pattern);
    if (/0.*1/.test(pattern)) gapped++;
  }
  assert.ok(gapped > 100, `later batches survive earlier lost ones (${gapped} of 400)`);
  assert.ok(patterns.has('000000') && patterns.has('111111'), 'nothing and everything are outcomes too');
  assert.ok(patterns.size > 30, `many subsets (${patterns.size})`);
});

test('a synced batch makes every batch before it durable; only later unsynced batches can be lost', async () => {
  const kv = await withUnsynced(3);
  await kv.batch().put(k(50), v('second sync')).write({ sync: true });
  await kv.batch().put(k(51), v('after')).write({ sync: false });
  assert.equal(kv.unsyncedBatchCount, 1);
  for (let seed = 0; seed < 50; seed++) {
    const image = kv.crashImage(new Rng(seed));
    assert.deepEqual(keptBatches(image, 3), [true, true, true]);
    assert.deepEqual(image.get(k(50)), v('second sync'));
  }
});

test('prefix model keeps an in-order prefix only; crashImageKeeping keeps exactly what it is told', async () => {
  const kv = await withUnsynced(5);
  for (let seed = 0; seed < 100; seed++) {
    const kept = keptBatches(kv.crashImage(new Rng(seed), 'prefix'), 5);
    const firstLost = kept.indexOf(false);
    if (firstLost >= 0)
      assert.ok(
        kept.slice(firstLost).every((x) => !x),
        `not a prefix: ${kept}`,
      );
  }
  assert.deepEqual(keptBatches(kv.crashImageKeeping([1, 4]), 5), [false, true, false, false, true]);
  assert.deepEqual(keptBatches(kv.crashImageKeeping([]), 5), [false, false, false, false, false]);
  assert.throws(() => kv.crashImageKeeping([5]), RangeError);
});

test('later batches apply over earlier ones in order: a kept delete after a lost put, a kept put after a lost delete', async () => {
  const kv = new MemoryKv();
  await kv.batch().put(k(1), v('base')).write({ sync: true });
  await kv.batch().del(k(1)).write({ sync: false }); // batch 0
  await kv.batch().put(k(1), v('again')).write({ sync: false }); // batch 1
  assert.deepEqual(kv.crashImageKeeping([1]).get(k(1)), v('again'));
  assert.equal(kv.crashImageKeeping([0]).get(k(1)), undefined);
  assert.deepEqual(kv.crashImageKeeping([]).get(k(1)), v('base'));
});

test('kill (reopen) keeps the unsynced batches unsynced: a later power cut can still drop them', async () => {
  const kv = await withUnsynced(2);
  const next = kv.reopen();
  assert.deepEqual(next.get(k(101)), v('a1'), 'the next process sees what the dead one wrote');
  await next.batch().put(k(300), v('new')).write({ sync: false });
  assert.equal(next.unsyncedBatchCount, 3);
  const image = next.crashImageKeeping([2]);
  assert.deepEqual(keptBatches(image, 2), [false, false]);
  assert.deepEqual(image.get(k(300)), v('new'));
  await next.batch().put(k(301), v('synced now')).write({ sync: true });
  assert.deepEqual(keptBatches(next.crashImage(new Rng(1)), 2), [true, true]);
});
