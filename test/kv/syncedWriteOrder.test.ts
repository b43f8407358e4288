// A synced write is durable together with every batch before it, on the real engine. LevelDB 1.20
// alone breaks that: a full memtable makes it start a new log and close the old one without fsync,
// and a synced write then fsyncs only the new log. These tests look at the files LevelDB leaves.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ClassicLevelKv } from '../../src/kv/classicLevelKv.ts';
import { u64Key } from '../../src/kv/orderedKv.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const seed = seedFromEnv();
console.log(`syncedWriteOrder seed ${seed} (replay with CAIRN_SEED=${seed})`);
const rng = new Rng(seed);

const WRITE_BUFFER_BYTES = 1024 * 1024;
const key = (n: number): Uint8Array => u64Key(3, n);

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cairn-kv-sync-'));
  dirs.push(d);
  return d;
}

/** Incompressible bytes, so table files hold what was written. */
function randomValue(bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = rng.int(0, 256);
  return out;
}

/** One batch of one put at `key(id)`, written with `sync`. */
function putOne(kv: ClassicLevelKv, id: number, value: Uint8Array, sync: boolean): Promise<void> {
  return kv.batch().put(key(id), value).write({ sync });
}

const files = (dir: string, suffix: string): string[] => readdirSync(dir).filter((f) => f.endsWith(suffix));

/**
 * What a power cut right now can leave: the synced files plus the newest log (fsynced by the last
 * synced write); an older log was closed without fsync, so in the worst case none of it survives.
 * Returns the keys the engine recovers from that image.
 */
async function keysAfterPowerCut(dir: string, keys: readonly number[]): Promise<number[]> {
  const logs = files(dir, '.log').sort();
  const image = tempDir();
  cpSync(dir, image, {
    recursive: true,
    filter: (src) => !logs.slice(0, -1).some((l) => src.endsWith(`/${l}`)),
  });
  rmSync(join(image, 'LOCK'), { force: true });
  const kv = await ClassicLevelKv.open(image, { createIfMissing: false });
  try {
    return keys.filter((n) => kv.get(key(n)) !== undefined);
  } finally {
    await kv.close();
  }
}

test('a synced write right after LevelDB switched logs leaves no older log holding unsynced batches', async () => {
  const dir = tempDir();
  const kv = await ClassicLevelKv.open(dir, { writeBufferBytes: WRITE_BUFFER_BYTES });
  const written: number[] = [];
  // Unsynced batches until LevelDB starts a second log: the old memtable is then still being written
  // to a table in the background and its log was closed without fsync.
  let n = 0;
  while (files(dir, '.log').length < 2) {
    assert.ok(n < 200, 'LevelDB never switched logs');
    await putOne(kv, n, randomValue(32 * 1024), false);
    written.push(n++);
  }
  await putOne(kv, n, new Uint8Array([1]), true);
  written.push(n);
  // Checked before anything else can run: the synced write alone must have made the rest durable.
  assert.deepEqual(files(dir, '.log').length, 1, `logs after the synced write: ${files(dir, '.log')}`);
  assert.ok(files(dir, '.ldb').length >= 1, 'the earlier batches are in tables');
  assert.equal(kv.syncForcedFlushes, 1);
  assert.deepEqual(await keysAfterPowerCut(dir, written), written);
  await kv.close();
});

test('a little data before a synced write forces no flush', async () => {
  const dir = tempDir();
  const kv = await ClassicLevelKv.open(dir, { writeBufferBytes: WRITE_BUFFER_BYTES });
  // 0.4 of the buffer in small batches, counted with the per-op overhead: below the flush threshold
  // (0.6 of the buffer).
  for (let i = 0; i < 100; i++) {
    await putOne(kv, i, randomValue(4000), i % 10 === 9);
  }
  assert.equal(kv.syncForcedFlushes, 0);
  assert.deepEqual(files(dir, '.ldb'), [], 'no table was written');
  await kv.close();
});

test('synced writes flush about once per 0.6 of the write buffer, not every time', async () => {
  const dir = tempDir();
  const kv = await ClassicLevelKv.open(dir, { writeBufferBytes: WRITE_BUFFER_BYTES });
  // 4 MiB in batches of 16 KiB (+ overhead), every fourth synced: 64 synced writes, ~6.7 thresholds.
  for (let i = 0; i < 256; i++) {
    await putOne(kv, i, randomValue(16 * 1024), i % 4 === 3);
  }
  assert.ok(kv.syncForcedFlushes >= 5 && kv.syncForcedFlushes <= 7, `forced flushes ${kv.syncForcedFlushes}`);
  await kv.close();
});

test('two synced writes at once share one flush, with unsynced batches in flight around it', async () => {
  const dir = tempDir();
  const kv = await ClassicLevelKv.open(dir, { writeBufferBytes: WRITE_BUFFER_BYTES });
  const written: number[] = [];
  let n = 0;
  // Past the threshold, unsynced, all completed.
  for (; n < 20; n++) {
    await putOne(kv, n, randomValue(32 * 1024), false);
    written.push(n);
  }
  const pending: Promise<void>[] = [];
  const issue = (sync: boolean, bytes: number): void => {
    const id = n++;
    written.push(id);
    pending.push(putOne(kv, id, randomValue(bytes), sync));
  };
  issue(true, 10);
  issue(false, 20 * 1024); // in flight while the flush starts: stays counted
  issue(true, 10);
  issue(false, 20 * 1024);
  await Promise.all(pending);
  assert.equal(kv.syncForcedFlushes, 1, 'the two synced writes shared one flush');
  assert.equal(files(dir, '.log').length, 1);
  assert.deepEqual(await keysAfterPowerCut(dir, written), written);
  await kv.close();
});

test('batches issued after a synced write count against it: on the thread pool they can land ahead of it', async () => {
  const dir = tempDir();
  const kv = await ClassicLevelKv.open(dir, { writeBufferBytes: WRITE_BUFFER_BYTES });
  // 0.3 of the buffer completed before the synced write: alone, no flush is needed.
  for (let i = 0; i < 10; i++) {
    await putOne(kv, i, randomValue(32 * 1024), false);
  }
  const synced = putOne(kv, 100, new Uint8Array([1]), true);
  // Issued after it but before it completes: 0.5 of the buffer that may fill the memtable ahead of it.
  const later = Array.from({ length: 16 }, (_, i) => putOne(kv, 200 + i, randomValue(32 * 1024), false));
  await synced;
  assert.equal(kv.syncForcedFlushes, 1, 'the synced write flushed before it resolved');
  await Promise.all(later);
  await kv.close();
});

test('random interleavings: every batch that completed before a synced write survives a power cut after it', async () => {
  const dir = tempDir();
  const kv = await ClassicLevelKv.open(dir, { writeBufferBytes: WRITE_BUFFER_BYTES });
  const completed: number[] = [];
  let n = 0;
  for (let round = 0; round < 12; round++) {
    // A burst of concurrent unsynced batches of random sizes, some awaited, then a synced one.
    const burst: Promise<void>[] = [];
    const inBurst: number[] = [];
    const count = rng.int(1, 41);
    for (let i = 0; i < count; i++) {
      const id = n++;
      inBurst.push(id);
      burst.push(putOne(kv, id, randomValue(rng.int(1, 48 * 1024 + 1)), false));
    }
    await Promise.all(burst);
    completed.push(...inBurst);
    const id = n++;
    await putOne(kv, id, randomValue(16), true);
    completed.push(id);
    // Nothing else runs between the synced write and this look at the directory.
    assert.equal(files(dir, '.log').length, 1, `round ${round}: ${files(dir, '.log')}`);
  }
  assert.deepEqual(await keysAfterPowerCut(dir, completed), completed);
  await kv.close();
});

test('close during a flush settles both, and later calls reject with typed errors', async () => {
  const dir = tempDir();
  const kv = await ClassicLevelKv.open(dir, { writeBufferBytes: WRITE_BUFFER_BYTES });
  for (let i = 0; i < 20; i++) {
    await putOne(kv, i, randomValue(32 * 1024), false);
  }
  const synced = putOne(kv, 99, new Uint8Array([1]), true); // flushes first
  const flush = kv.flushMemtable();
  const closed = kv.close();
  const outcomes = await Promise.allSettled([synced, flush, closed]);
  assert.equal(outcomes[2].status, 'fulfilled', 'close resolves');
  for (const o of outcomes.slice(0, 2)) {
    if (o.status === 'rejected') assert.ok(isCairnError(o.reason), `untyped ${String(o.reason)}`);
  }
  assert.throws(
    () => kv.batch(),
    (e: unknown) => isCairnError(e),
  );
  await assert.rejects(kv.flushMemtable(), (e: unknown) => isCairnError(e));
});
