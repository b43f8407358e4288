// The LtHash worker pool: shared-cursor work split and the synchronous fallback when a worker is
// gone. Both must give exactly the serial sum (the roots are consensus).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { loadBlake3Module } from '../../src/state/blake3Wasm.ts';
import { type HashItem, HashPool } from '../../src/state/hashPool.ts';
import { LtHash, LtHasher } from '../../src/state/ltHash.ts';
import { loadLtKernel } from '../../src/state/ltKernel.ts';

function randomItems(rng: Rng, n: number): HashItem[] {
  return Array.from({ length: n }, (_, i) => {
    const item: HashItem = { family: i % 4, key: rng.bytes(1 + (i % 60)) };
    if (rng.bool(0.6)) item.old = rng.bytes(i % 7 === 0 ? 0 : 1 + (i % 90));
    if (rng.bool(0.8)) item.neu = rng.bytes(1 + (i % 45));
    // Now and then an input larger than the BLAKE3 module's 16 KiB buffer.
    if (i % 251 === 0) item.neu = rng.bytes(20_000);
    // And inputs around the SIMD kernel's 1 KiB limit (one BLAKE3 chunk).
    if (i % 97 === 0) item.old = rng.bytes(950 + (i % 130));
    return item;
  });
}

function serial(hasher: LtHasher, items: readonly HashItem[]): LtHash[] {
  const roots = [new LtHash(), new LtHash(), new LtHash(), new LtHash()];
  for (const it of items) {
    if (it.old) hasher.mixOut(roots[it.family]!, it.key, it.old);
    if (it.neu) hasher.mixIn(roots[it.family]!, it.key, it.neu);
  }
  return roots;
}

async function untilReady(pool: HashPool, count: number): Promise<void> {
  for (let waited = 0; pool.readyWorkers < count; waited += 20) {
    if (waited > 20_000) throw new Error(`only ${pool.readyWorkers} of ${count} workers started`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('hash pool: worker split, hashing before workers are ready, and a failed start all equal the serial sum', async () => {
  const seed = seedFromEnv();
  const rng = new Rng(seed);
  const direct = await LtHasher.create();
  const publicApi = await LtHasher.create({ direct: false, kernel: false });
  const noKernel = await LtHasher.create({ kernel: false });
  assert.equal(direct.usesDirectWasm, true, 'hash-wasm BLAKE3 module is used in place');
  assert.equal(direct.usesKernel, true, 'the SIMD kernel is used for short inputs');
  const module = await loadBlake3Module();
  const kernel = await loadLtKernel();
  const check = async (pool: HashPool, n: number, what: string) => {
    const items = randomItems(rng, n);
    const expected = serial(publicApi, items);
    assert.deepEqual(serial(direct, items), expected, `kernel vs public API (CAIRN_SEED=${seed})`);
    assert.deepEqual(serial(noKernel, items), expected, `direct vs public API (CAIRN_SEED=${seed})`);
    const batched = [new LtHash(), new LtHash(), new LtHash(), new LtHash()];
    direct.mixItems(batched, items);
    assert.deepEqual(batched, expected, `mixItems vs public API (CAIRN_SEED=${seed})`);
    const roots = [new LtHash(), new LtHash(), new LtHash(), new LtHash()];
    await pool.apply(items, roots);
    for (let f = 0; f < 4; f++)
      assert.ok(roots[f]!.equals(expected[f]!), `${what}, family ${f} (CAIRN_SEED=${seed})`);
  };
  for (const [withModule, withKernel] of [
    [true, true],
    [true, false],
    [false, false],
  ]) {
    const warnings: string[] = [];
    const pool = HashPool.create(
      2,
      withKernel ? direct : noKernel,
      withModule ? module : undefined,
      (r) => warnings.push(r),
      withKernel ? kernel : undefined,
    );
    try {
      await check(pool, 1500, 'possibly before the workers are ready');
      await untilReady(pool, 2);
      for (let round = 0; round < 3; round++) await check(pool, 1500, 'split');
      assert.deepEqual(warnings, []);
    } finally {
      await pool.close();
    }
    assert.deepEqual(warnings, [], 'closing is not a failure');
  }
  // A worker that cannot start (here: not a WebAssembly module): one warning, then the writer thread.
  const warnings: string[] = [];
  const broken = HashPool.create(1, direct, {} as WebAssembly.Module, (r) => warnings.push(r));
  try {
    for (let waited = 0; broken.size > 0 && waited < 20_000; waited += 20) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(broken.size, 0);
    assert.equal(warnings.length, 1, warnings.join('; '));
    await check(broken, 800, 'fallback');
  } finally {
    await broken.close();
  }
});
