import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ClassicLevelKv } from '../../src/kv/classicLevelKv.ts';
import { type OrderedKv, readU64BE, u64Key } from '../../src/kv/orderedKv.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng } from '../../src/lib/rng.ts';
import { MemoryKv } from '../../src/testing/memoryKv.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const engines: { name: string; open(): Promise<OrderedKv> }[] = [
  { name: 'MemoryKv', open: async () => new MemoryKv() },
  {
    name: 'ClassicLevelKv',
    open: async () => {
      const d = mkdtempSync(join(tmpdir(), 'cairn-kv-'));
      dirs.push(d);
      return ClassicLevelKv.open(d);
    },
  },
];

const k = (n: number): Uint8Array => u64Key(7, n);
const v = (s: string): Uint8Array => new TextEncoder().encode(s);

for (const engine of engines) {
  describe(`OrderedKv contract: ${engine.name}`, () => {
    test('batches apply atomically and reads are synchronous', async () => {
      const kv = await engine.open();
      assert.equal(kv.get(k(1)), undefined);
      const b = kv.batch().put(k(1), v('one')).put(k(2), v('two')).put(k(3), v('three')).del(k(2));
      assert.equal(b.length, 4);
      await b.write({ sync: true });
      assert.deepEqual(kv.get(k(1)), v('one'));
      assert.equal(kv.get(k(2)), undefined);
      assert.deepEqual(await kv.getMany([k(3), k(9)]), [v('three'), undefined]);
      await kv.close();
      await kv.close(); // idempotent
    });

    test('range honours bounds, limit and reverse in numeric (big-endian) order', async () => {
      const kv = await engine.open();
      const b = kv.batch();
      for (const n of [5, 300, 1, 70_000, 2 ** 40, 42]) b.put(k(n), v(String(n)));
      b.put(u64Key(8, 0), v('other prefix'));
      await b.write({ sync: false });
      const all = await kv.range({ gte: k(0), lt: u64Key(8, 0), limit: 100 });
      assert.deepEqual(
        all.map((e) => readU64BE(e.key, 1)),
        [1, 5, 42, 300, 70_000, 2 ** 40],
      );
      const some = await kv.range({ gt: k(5), lte: k(70_000), limit: 2 });
      assert.deepEqual(
        some.map((e) => readU64BE(e.key, 1)),
        [42, 300],
      );
      const rev = await kv.range({ gte: k(0), lt: u64Key(8, 0), limit: 2, reverse: true });
      assert.deepEqual(
        rev.map((e) => readU64BE(e.key, 1)),
        [2 ** 40, 70_000],
      );
      await kv.close();
    });
  });
}

test("MemoryKv crash model 'prefix': synced batches survive, unsynced ones survive as an in-order prefix", async () => {
  const kv = new MemoryKv();
  await kv.batch().put(k(0), v('synced')).write({ sync: true });
  for (let i = 1; i <= 5; i++)
    await kv
      .batch()
      .put(k(i), v('u'))
      .del(k(i - 1))
      .write({ sync: false });
  for (let seed = 0; seed < 30; seed++) {
    const image = kv.crashImage(new Rng(seed), 'prefix');
    // A prefix of length p has keys p (present) and nothing below it except when p = 0.
    let present = 0;
    for (let i = 0; i <= 5; i++) if (image.get(k(i)) !== undefined) present++;
    assert.equal(present, 1, 'exactly one key survives: the last batch of the kept prefix');
  }
  kv.failNextWrites(1);
  await assert.rejects(kv.batch().put(k(9), v('x')).write({ sync: true }), /injected EIO/);
  assert.equal(kv.get(k(9)), undefined);
});

test('ClassicLevelKv: a second open of the same directory is LOCKED', async () => {
  const d = mkdtempSync(join(tmpdir(), 'cairn-kv-lock-'));
  dirs.push(d);
  const first = await ClassicLevelKv.open(d);
  await assert.rejects(ClassicLevelKv.open(d), (e: unknown) => isCairnError(e, 'LOCKED'));
  await first.close();
  const again = await ClassicLevelKv.open(d);
  await again.close();
});
