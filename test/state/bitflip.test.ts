// Damage detection: flipped bits in snapshot files (manifest, engine dump) and in the state WAL are
// reported as typed errors and never served as state; the directory lock gives a second opener LOCKED.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { toHex } from '../../src/lib/bytes.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { snapshotName } from '../../src/state/snapshots.ts';
import { StateStore } from '../../src/state/stateStore.ts';
import { crashEnv, DIR, openSim, randomBlock, restartEnv, simEnv } from './support/harness.ts';

const TYPED = new Set(['CORRUPT', 'WAL_CORRUPT', 'GAP', 'DATA_LOSS', 'DECODE']);
const realRoot = mkdtempSync(path.join(tmpdir(), 'cairn-state-bitflip-'));
after(() => rmSync(realRoot, { recursive: true, force: true }));

test('bit flips in snapshot files are detected before the snapshot is cloned (views, rollback, catch-up)', async () => {
  const seed = seedFromEnv();
  console.log(`bitflip seed ${seed} (replay: CAIRN_SEED=${seed})`);
  const rng = new Rng(seed);
  for (let trial = 0; trial < 12; trial++) {
    let env = simEnv(trial);
    let s = await openSim(env);
    for (let h = 1; h <= 4; h++) await s.commitBlock(h, randomBlock(new Rng(h), 20));
    await s.snapshot();
    for (let h = 5; h <= 6; h++) await s.commitBlock(h, randomBlock(new Rng(h), 20));
    await s.close();
    env = restartEnv(env);
    const snap = path.join(DIR, 'snapshots', snapshotName(4));
    const file = path.join(snap, rng.bool() ? 'MANIFEST' : 'kv.dump');
    const size = env.fs.stat(file).size;
    env.fs.flipBit(file, rng.int(0, size), rng.int(0, 8));
    // The engine is intact, so the store opens (a damaged manifest is refused right away).
    let opened: StateStore | undefined;
    try {
      opened = await openSim(env);
    } catch (err) {
      assert.ok(isCairnError(err) && err.code === 'CORRUPT', `open: ${err}`);
      assert.ok(file.endsWith('MANIFEST'));
      continue;
    }
    s = opened;
    await assert.rejects(s.openView(5), (err: unknown) => isCairnError(err) && err.code === 'CORRUPT');
    await assert.rejects(s.rollback(5), (err: unknown) => isCairnError(err) && TYPED.has(err.code));
    await s.close().catch(() => undefined);
    // Engine gone: catch-up would need the snapshot, which is refused, not cloned.
    env = restartEnv(env);
    env.fs.rename(path.join(DIR, 'kv'), path.join(DIR, 'kv-lost'));
    await assert.rejects(openSim(env), (err: unknown) => isCairnError(err) && err.code === 'CORRUPT');
  }
});

test('bit flips in the state WAL: a typed error or the exact root, never a different root', async () => {
  const seed = seedFromEnv();
  const rng = new Rng(seed ^ 0xb17);
  let refused = 0;
  let served = 0;
  for (let trial = 0; trial < 40; trial++) {
    let env = simEnv(trial);
    const s = await openSim(env, { checkpointIntervalBlocks: 100, walSegmentBytes: 1 << 20 });
    for (let h = 1; h <= 6; h++) await s.commitBlock(h, randomBlock(new Rng(h * 31), 15));
    const root = toHex(s.committedRoot());
    const walBytes = (
      s as unknown as { core: { wal: { segments(): { bytes: number }[] } } }
    ).core.wal.segments()[0]!.bytes;
    // A process crash: the engine kept its unsynced batches (so it can tell when the WAL lost the
    // blocks it holds) but has no synced checkpoint above 0, so every block is replayed.
    env = crashEnv(env, rng, { engine: 'all' });
    const walDir = path.join(DIR, 'wal');
    const segment = env.fs
      .readdir(walDir)
      .filter((n) => /^\d/.test(n))
      .sort()[0]!;
    const file = path.join(walDir, segment);
    // Flip inside the written records (not the preallocated zero tail).
    const written = s.describe().wal.next > 0 ? walBytes : 64;
    env.fs.flipBit(file, rng.int(0, written), rng.int(0, 8));
    try {
      const r = await openSim(env, { checkpointIntervalBlocks: 100, walSegmentBytes: 1 << 20 });
      assert.equal(r.version, 6, 'opened lower than acknowledged without an error');
      assert.equal(toHex(r.committedRoot()), root, 'served a different root');
      served++;
      await r.close();
    } catch (err) {
      assert.ok(isCairnError(err) && TYPED.has(err.code), `untyped or unexpected error: ${err}`);
      refused++;
    }
  }
  console.log(
    `WAL bit flips: ${refused} refused with a typed error, ${served} harmless (outside any record)`,
  );
  assert.ok(refused > 0);
});

test('directory lock: a second opener of the same data directory gets LOCKED', async () => {
  const dir = path.join(realRoot, 'locked');
  const first = await StateStore.open({ dataDir: dir });
  await first.commitBlock(1, randomBlock(new Rng(1), 5));
  await assert.rejects(
    StateStore.open({ dataDir: dir }),
    (err: unknown) => isCairnError(err) && err.code === 'LOCKED',
  );
  await first.close();
  const second = await StateStore.open({ dataDir: dir });
  assert.equal(second.version, 1);
  await second.close();
});

test('a bit flip in the last WAL record after a clean close is refused (durable marker), even with the engine lost', async () => {
  for (const loseEngine of [false, true]) {
    let env = simEnv(loseEngine ? 2 : 1);
    const s = await openSim(env, { checkpointIntervalBlocks: 100, snapshotIntervalBlocks: 0 });
    for (let h = 1; h <= 5; h++) await s.commitBlock(h, randomBlock(new Rng(h * 37), 15));
    const wal = (s as unknown as { core: { wal: { segments(): { bytes: number }[] } } }).core.wal;
    const before = wal.segments()[0]!.bytes;
    await s.commitBlock(6, randomBlock(new Rng(6 * 37), 15));
    const end = wal.segments()[0]!.bytes;
    const root = toHex(s.committedRoot());
    await s.close();
    env = restartEnv(env);
    const walDir = path.join(DIR, 'wal');
    const segment = env.fs
      .readdir(walDir)
      .filter((n) => /^\d/.test(n))
      .sort()[0]!;
    env.fs.flipBit(path.join(walDir, segment), before + Math.floor((end - before) / 2), 3);
    if (loseEngine) {
      // Harshest case: nothing but the WAL says how far the store got.
      const kv = path.join(DIR, 'kv');
      for (const name of env.fs.readdir(kv)) env.fs.unlink(path.join(kv, name));
      env.fs.rmdir(kv);
      env.fs.syncDir(DIR);
    }
    try {
      const r = await openSim(env, { checkpointIntervalBlocks: 100, snapshotIntervalBlocks: 0 });
      assert.equal(
        r.version,
        6,
        `opened at ${r.version} below the acknowledged 6 (engine lost: ${loseEngine})`,
      );
      assert.equal(toHex(r.committedRoot()), root);
      await r.close();
    } catch (err) {
      // The marker written at close covers record 6: damage there is corruption, not a torn tail.
      assert.ok(isCairnError(err, 'WAL_CORRUPT'), `expected WAL_CORRUPT, got ${err}`);
      assert.match((err as Error).message, /durable marker/);
    }
  }
});
