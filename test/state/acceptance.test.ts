// Acceptance scenarios A1-A20 of spec-state-store §7.0 (A14 lives in property.test.ts), plus the lock
// and corrupt-meta cases. Stores run on the simulated file system with the in-memory engine host, so
// every check reads what is actually on the (simulated) disk after a restart.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { toHex } from '../../src/lib/bytes.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng } from '../../src/lib/rng.ts';
import { CHECKPOINT_KEY } from '../../src/state/records.ts';
import { readCurrent, snapshotName } from '../../src/state/snapshots.ts';
import type { NamedChangeSet, StateStore } from '../../src/state/stateStore.ts';
import { Wal } from '../../src/wal/wal.ts';
import {
  addr,
  bytes,
  crashEnv,
  DIR,
  evm,
  nonceKey,
  openSim,
  randomBlock,
  restartEnv,
  type SimEnv,
  simEnv,
  storageKey,
  u64,
  word,
} from './support/harness.ts';

const blockAt = (h: number): NamedChangeSet[] => randomBlock(new Rng(7919 * h + 17), 12);

async function commitRange(s: StateStore, from: number, to: number, roots: string[]): Promise<void> {
  for (let h = from; h <= to; h++) {
    await s.commitBlock(h, blockAt(h));
    roots[h] = toHex(s.committedRoot());
  }
}

/** The store stands at `version` with the root recorded for it when that block was committed. */
function assertAt(s: StateStore, version: number, roots: readonly string[]): void {
  assert.equal(s.version, version);
  assert.equal(toHex(s.committedRoot()), roots[version]);
}

async function assertVerified(s: StateStore): Promise<void> {
  const r = await s.verify();
  assert.ok(r.ok, `full scan disagrees: ${JSON.stringify(r.families.filter((f) => !f.ok))}`);
}

function expectCode(code: string) {
  return (err: unknown) => {
    assert.ok(isCairnError(err), `expected CairnError ${code}, got ${err}`);
    assert.equal(err.code, code, (err as Error).message);
    return true;
  };
}

async function walRange(env: SimEnv): Promise<{ first: number; next: number }> {
  const wal = await Wal.open({ fs: env.fs, dir: path.join(DIR, 'wal'), readOnly: true });
  try {
    return { first: wal.firstIndex, next: wal.nextIndex };
  } finally {
    await wal.close();
  }
}

test('A1: snapshot at 2, commits to 5, reopen (and catch-up from the snapshot with the engine gone)', async () => {
  let env = simEnv();
  const roots: string[] = [];
  let s = await openSim(env);
  await commitRange(s, 1, 2, roots);
  await s.snapshot();
  await commitRange(s, 3, 5, roots);
  await s.close();
  env = restartEnv(env);
  s = await openSim(env);
  assertAt(s, 5, roots);
  await assertVerified(s);
  await s.close();
  // Engine directory lost: newest snapshot + WAL replay rebuilds it.
  env = restartEnv(env);
  env.fs.rename(path.join(DIR, 'kv'), path.join(DIR, 'lost-kv'));
  s = await openSim(env);
  assertAt(s, 5, roots);
  await assertVerified(s);
  await s.close();
});

test('A2/A3: engine batches lost after the WAL record was durable are replayed (value and root of N)', async () => {
  let env = simEnv();
  const roots: string[] = [];
  let s = await openSim(env, { checkpointIntervalBlocks: 100 });
  await commitRange(s, 1, 6, roots);
  await s.engineWritten();
  // A2: the engine write of block 7 fails after its WAL record is durable.
  await s.applyChangeSets(7, [evm([{ key: storageKey(1, 1), value: word(77) }])]);
  const workingRoot = toHex(s.workingRoot());
  const engine = [...env.host.engines.values()].at(-1)!;
  engine.failNextWrites(1);
  // Block 7 is committed once its WAL record is durable (its engine batch is written behind it);
  // the failed batch latches the store, so the next call rejects with the engine's error.
  assert.equal(await s.commit(7), 7);
  await assert.rejects(s.engineWritten(), expectCode('IO_FATAL'), 'the batch behind block 7 failed');
  await assert.rejects(s.commitBlock(8, blockAt(8)), expectCode('IO_FATAL'), 'latched after a failed write');
  await assert.rejects(s.commit(8), expectCode('IO_FATAL'), 'still latched');
  // A3: and every unsynced engine batch is lost in the crash (only the synced baseline survives).
  env = crashEnv(env, new Rng(3), { engine: 'none' });
  s = await openSim(env, { checkpointIntervalBlocks: 100 });
  assert.equal(s.version, 7);
  assert.equal(toHex(s.committedRoot()), workingRoot);
  assert.deepEqual(s.get('evm', storageKey(1, 1)), word(77));
  await assertVerified(s);
  await s.commitBlock(8, blockAt(8));
  await s.close();
});

test('A4: engine ahead of the WAL is refused (DATA_LOSS) unless told to discard; discarding lands on the WAL tail', async () => {
  let env = simEnv();
  const roots: string[] = [];
  let s = await openSim(env, { checkpointIntervalBlocks: 100 });
  await commitRange(s, 1, 2, roots);
  await s.snapshot();
  await s.commitBlock(3, [evm([{ key: storageKey(9, 9), value: word(99) }])]);
  env = crashEnv(env, new Rng(4), { engine: 'all' });
  // The WAL loses block 3 (damage); the engine kept its batch.
  const wal = await Wal.open({ fs: env.fs, dir: path.join(DIR, 'wal') });
  await wal.truncateBack(3);
  await wal.close();
  await assert.rejects(openSim(env, { checkpointIntervalBlocks: 100 }), expectCode('DATA_LOSS'));
  s = await openSim(env, { checkpointIntervalBlocks: 100, discardBlocksAboveWal: true });
  assertAt(s, 2, roots);
  assert.equal(s.get('evm', storageKey(9, 9)), undefined, 'the orphan row is gone');
  await assertVerified(s);
  await s.commitBlock(3, blockAt(3));
  await s.close();
});

test('A5: a WAL starting above checkpoint+1 is a GAP error; starting exactly at checkpoint+1 opens', async () => {
  for (const [cut, ok] of [
    [6, false],
    [5, true],
  ] as const) {
    let env = simEnv();
    const roots: string[] = [];
    const s = await openSim(env, { checkpointIntervalBlocks: 4, walSegmentBytes: 4096 });
    await commitRange(s, 1, 6, roots);
    env = crashEnv(env, new Rng(5), { engine: 'none' }); // engine back at its checkpoint, 4
    const wal = await Wal.open({ fs: env.fs, dir: path.join(DIR, 'wal'), segmentBytes: 4096 });
    await wal.truncateFront(cut);
    await wal.close();
    if (!ok) {
      await assert.rejects(openSim(env), expectCode('GAP'));
      continue;
    }
    const s2 = await openSim(env);
    assertAt(s2, 6, roots);
    await s2.close();
  }
});

test('A6: WAL deleted after a snapshot at S opens at S with the same root and accepts S+1', async () => {
  let env = simEnv();
  const roots: string[] = [];
  let s = await openSim(env);
  await commitRange(s, 1, 3, roots);
  await s.snapshot();
  await s.close();
  env = restartEnv(env);
  env.fs.rename(path.join(DIR, 'wal'), path.join(DIR, 'gone'));
  s = await openSim(env);
  assertAt(s, 3, roots);
  await s.commitBlock(4, blockAt(4));
  await s.close();
  env = restartEnv(env);
  s = await openSim(env);
  assert.equal(s.version, 4);
  await s.close();
});

test('A7: a corrupted WAL that loses needed blocks fails the open instead of serving a lower state', async () => {
  let env = simEnv();
  const roots: string[] = [];
  const s = await openSim(env, { checkpointIntervalBlocks: 4 });
  await commitRange(s, 1, 7, roots);
  env = crashEnv(env, new Rng(7), { engine: 'none' });
  const walDir = path.join(DIR, 'wal');
  const segment = env.fs
    .readdir(walDir)
    .filter((n) => /^\d/.test(n))
    .sort()[0]!;
  const file = path.join(walDir, segment);
  // Garble the middle of the log (records 5..7 are needed above the checkpoint at 4).
  const size = env.fs.stat(file).size;
  for (let off = Math.floor(size / 3); off < Math.floor(size / 2); off += 7) env.fs.flipBit(file, off, 3);
  await assert.rejects(openSim(env, { checkpointIntervalBlocks: 4 }), (err: unknown) => {
    assert.ok(
      isCairnError(err) && ['WAL_CORRUPT', 'GAP', 'DATA_LOSS', 'CORRUPT'].includes(err.code),
      String(err),
    );
    return true;
  });
});

test('A8/A9: rollback between the snapshot and the tip, and exactly onto a snapshot', async () => {
  let env = simEnv();
  const roots: string[] = [];
  let s = await openSim(env);
  await commitRange(s, 1, 2, roots);
  await s.snapshot();
  await commitRange(s, 3, 6, roots);
  await s.close();
  env = restartEnv(env); // working engine already past the target, from the same snapshot
  s = await openSim(env);
  await s.commitBlock(7, [evm([{ key: storageKey(99, 5), value: word(5) }])]);
  await s.rollback(4);
  assertAt(s, 4, roots);
  assert.equal(s.get('evm', storageKey(99, 5)), undefined, 'later keys absent');
  await assertVerified(s);
  assert.deepEqual(await walRangeOf(s), { first: 1, next: 5 });
  // A9: onto the snapshot boundary; the next commit is target+1; a restart lands on the new tip.
  await s.rollback(2);
  assertAt(s, 2, roots);
  assert.deepEqual(await walRangeOf(s), { first: 1, next: 3 });
  await s.commitBlock(3, blockAt(3));
  await s.close();
  env = restartEnv(env);
  s = await openSim(env);
  assertAt(s, 3, roots);
  await s.close();
});

async function walRangeOf(s: StateStore): Promise<{ first: number; next: number }> {
  const d = s.describe();
  return { first: d.wal.first, next: d.wal.next };
}

test('A10: unreachable rollback targets are refused and change nothing', async () => {
  const env = simEnv();
  const roots: string[] = [];
  const s = await openSim(env, { walSegmentBytes: 2048, snapshotIntervalBlocks: 4, retainBlocks: 2 });
  await commitRange(s, 1, 9, roots);
  await s.snapshot(); // retention drops the WAL below the oldest kept snapshot
  const before = s.describe();
  assert.ok(before.wal.first > 1, `retention trimmed the WAL front (first ${before.wal.first})`);
  await assert.rejects(s.rollback(0), expectCode('INVALID_ARGUMENT'));
  await assert.rejects(s.rollback(10), expectCode('OUT_OF_RANGE'));
  await assert.rejects(s.rollback(1), expectCode('OUT_OF_RANGE'));
  assert.deepEqual(s.describe(), before);
  assert.equal(readCurrent(env.fs, DIR), before.current);
  await s.commitBlock(10, blockAt(10));
  assert.equal(s.version, 10);
  await s.close();
});

test('A10 (mid-chain): a store imported at 10 cannot roll back below 10', async () => {
  const src = simEnv();
  const roots: string[] = [];
  const a = await openSim(src);
  await commitRange(a, 1, 10, roots);
  const chunks: Uint8Array[] = [];
  await a.exportState(0, (c) => {
    chunks.push(c.slice());
  });
  await a.close();
  const env = simEnv(2);
  const s = await openSim(env);
  await s.importState(chunks);
  await commitRange(s, 11, 12, roots);
  await assert.rejects(s.rollback(5), expectCode('OUT_OF_RANGE'));
  await s.rollback(11);
  assertAt(s, 11, roots);
  await s.close();
});

test('A11: a snapshot above the target that cannot be removed: error, WAL keeps its tail, store keeps committing', async () => {
  const env = simEnv();
  const roots: string[] = [];
  const s = await openSim(env);
  await commitRange(s, 1, 2, roots);
  await s.snapshot();
  await commitRange(s, 3, 5, roots);
  await s.snapshot();
  await commitRange(s, 6, 6, roots);
  const doomed = path.join(DIR, 'snapshots', snapshotName(5));
  env.fs.injectFault({ op: 'rename', pathIncludes: doomed, error: 'EACCES', nth: 1 });
  await assert.rejects(s.rollback(3), /did not take effect/);
  env.fs.clearFaults();
  assert.equal(s.version, 6);
  assert.deepEqual(await walRangeOf(s), { first: 1, next: 7 });
  assert.equal(readCurrent(env.fs, DIR), 5);
  assert.equal(env.fs.exists(path.join(DIR, 'ROLLBACK_INTENT')), false);
  await s.commitBlock(7, blockAt(7));
  await s.close();
});

test('A12: rollback, a divergent timeline, restart: the new timeline with a contiguous WAL', async () => {
  let env = simEnv();
  const roots: string[] = [];
  let s = await openSim(env);
  await commitRange(s, 1, 5, roots);
  await s.rollback(2);
  await s.commitBlock(3, [evm([{ key: nonceKey(3), value: u64(33) }])]);
  const newRoot = toHex(s.committedRoot());
  assert.notEqual(newRoot, roots[3]);
  await s.close();
  env = restartEnv(env);
  s = await openSim(env);
  assert.equal(s.version, 3);
  assert.equal(toHex(s.committedRoot()), newRoot);
  assert.deepEqual(s.get('evm', nonceKey(3)), u64(33));
  await assertVerified(s);
  await s.commitBlock(4, blockAt(4));
  await s.close();
  assert.deepEqual(await walRange(env), { first: 1, next: 5 });
});

test('A13: WAL truncation after snapshots, reopen, rollback to the older retained snapshot', async () => {
  let env = simEnv();
  const roots: string[] = [];
  let s = await openSim(env, { snapshotIntervalBlocks: 5, retainBlocks: 5, walSegmentBytes: 2048 });
  await commitRange(s, 1, 12, roots);
  await s.close();
  env = restartEnv(env);
  s = await openSim(env, { snapshotIntervalBlocks: 5, retainBlocks: 5, walSegmentBytes: 2048 });
  assertAt(s, 12, roots);
  const d = s.describe();
  assert.ok(d.wal.first > 1 && d.snapshots.includes(5), JSON.stringify(d));
  await s.rollback(5);
  assertAt(s, 5, roots);
  await assertVerified(s);
  await s.close();
});

test('A15: same-block hazards (repeated applies, new account, delete-then-recreate) equal the direct write', async () => {
  const a = await openSim(simEnv());
  const b = await openSim(simEnv(9));
  await a.commitBlock(1, [evm([{ key: nonceKey(1), value: u64(1) }])]);
  await b.commitBlock(1, [evm([{ key: nonceKey(1), value: u64(1) }])]);
  // a: several applies on the same keys, a delete then recreate, a brand-new account.
  await a.applyChangeSets(2, [
    evm([
      { key: storageKey(1, 1), value: word(1) },
      { key: nonceKey(2), value: u64(4) },
    ]),
  ]);
  await a.applyChangeSets(2, [
    evm([
      { key: storageKey(1, 1), value: word(2) },
      { key: nonceKey(1), delete: true },
    ]),
  ]);
  await a.applyChangeSets(2, [
    evm([
      { key: nonceKey(1), value: u64(3) },
      { key: storageKey(1, 2), value: word(5) },
    ]),
  ]);
  await a.applyChangeSets(2, [evm([{ key: storageKey(1, 2), delete: true }])]);
  await a.commit(2);
  await b.commitBlock(2, [
    evm([
      { key: storageKey(1, 1), value: word(2) },
      { key: nonceKey(1), value: u64(3) },
      { key: nonceKey(2), value: u64(4) },
    ]),
  ]);
  assert.equal(toHex(a.committedRoot()), toHex(b.committedRoot()));
  await assertVerified(a);
  await a.close();
  await b.close();
});

test('A16: an empty misc value survives WAL replay and views (null is not a delete)', async () => {
  let env = simEnv();
  let s = await openSim(env, { checkpointIntervalBlocks: 100 });
  await s.commitBlock(1, [{ name: 'bank', pairs: [{ key: bytes('k'), value: null }] }]);
  await s.commitBlock(2, [{ name: 'bank', pairs: [{ key: bytes('j'), value: new Uint8Array(0) }] }]);
  const root = toHex(s.committedRoot());
  assert.notEqual(root, 'be2a8de3dcf46c94ce85cdc8e07ac308f4d8a95490d956c38d780fd610db0813');
  env = crashEnv(env, new Rng(16), { engine: 'none' });
  s = await openSim(env, { checkpointIntervalBlocks: 100 });
  assert.equal(toHex(s.committedRoot()), root);
  assert.deepEqual(s.get('bank', bytes('k')), new Uint8Array(0));
  const view = await s.openView(1);
  assert.deepEqual(view.get('bank', bytes('k')), new Uint8Array(0));
  assert.equal(view.get('bank', bytes('j')), undefined);
  await view.close();
  await s.close();
});

test('A17: a view at an old height keeps its data and root while the primary commits; CURRENT never moves', async () => {
  const env = simEnv();
  const roots: string[] = [];
  const s = await openSim(env);
  await commitRange(s, 1, 2, roots);
  await s.snapshot();
  await commitRange(s, 3, 4, roots);
  const current = readCurrent(env.fs, DIR);
  const view = await s.openView(3);
  const value = view.get('evm', storageKey(1, 1));
  assert.equal(toHex(view.committedRoot()), roots[3]);
  await commitRange(s, 5, 8, roots);
  await s.commitBlock(9, [evm([{ key: storageKey(1, 1), value: word(4242) }])]);
  assert.equal(toHex(view.committedRoot()), roots[3]);
  assert.deepEqual(view.get('evm', storageKey(1, 1)), value);
  assert.equal(readCurrent(env.fs, DIR), current);
  await view.close();
  await assert.rejects(s.openView(99), expectCode('OUT_OF_RANGE'));
  await s.close();
});

test('A18: export, import into a store with stale data, reopen, and a second import wipes the first', async () => {
  const src = simEnv();
  const roots: string[] = [];
  const a = await openSim(src);
  await commitRange(a, 1, 8, roots);
  const chunks: Uint8Array[] = [];
  const progress: number[] = [];
  const exported = await a.exportState(6, (c) => {
    chunks.push(c.slice());
  });
  assert.equal(toHex(exported.root), roots[6]);
  await a.close();
  let env = simEnv(3);
  let s = await openSim(env);
  await s.commitBlock(1, [evm([{ key: storageKey(77, 7), value: word(7) }])]);
  await s.importState(chunks, { expectedRoot: exported.root, onProgress: (p) => progress.push(p.rows) });
  assertAt(s, 6, roots);
  assert.equal(s.get('evm', storageKey(77, 7)), undefined, 'stale rows are gone');
  assert.equal(progress.at(-1), exported.rows);
  await assertVerified(s);
  await s.commitBlock(7, blockAt(7));
  assertAt(s, 7, roots);
  await s.close();
  env = restartEnv(env);
  s = await openSim(env);
  assertAt(s, 7, roots);
  await s.importState(chunks);
  assertAt(s, 6, roots);
  await s.close();
});

test('A18: import refuses unexpected rows and a wrong expectedRoot; the purged store stays usable', async () => {
  const src = simEnv();
  const roots: string[] = [];
  const a = await openSim(src);
  await commitRange(a, 1, 4, roots);
  const chunks: Uint8Array[] = [];
  await a.exportState(0, (c) => {
    chunks.push(c.slice());
  });
  await a.close();
  const whole = Buffer.concat(chunks);
  let env = simEnv(4);
  let s = await openSim(env);
  await assert.rejects(s.importState([whole], { expectedRoot: new Uint8Array(32) }), expectCode('CONFLICT'));
  await assert.rejects(s.commitBlock(5, []), expectCode('OUT_OF_ORDER'));
  env = crashEnv(env, new Rng(18));
  s = await openSim(env);
  assert.equal(s.version, 0, 'the half import was wiped');
  // A row with a flipped byte in its value fails the stream checksum (or a value check).
  const damaged = new Uint8Array(whole);
  damaged[200] = (damaged[200] ?? 0) ^ 0x40;
  await assert.rejects(s.importState([damaged]), expectCode('CORRUPT'));
  // A refused input is the caller's problem: the store is not latched and still commits.
  await s.commitBlock(1, blockAt(1));
  await assertVerified(s);
  await s.close();
});

test('a refused import (CONFLICT) does not latch: later calls work and the purged store reopens at its new tip', async () => {
  const src = simEnv();
  const a = await openSim(src);
  await commitRange(a, 1, 3, []);
  const chunks: Uint8Array[] = [];
  await a.exportState(0, (c) => {
    chunks.push(c.slice());
  });
  await a.close();
  let env = simEnv(4);
  let s = await openSim(env);
  await commitRange(s, 1, 2, []);
  await assert.rejects(
    s.importState([Buffer.concat(chunks)], { expectedRoot: new Uint8Array(32) }),
    expectCode('CONFLICT'),
  );
  assert.equal(s.version, 0, 'the import purged the old state before the root was known');
  assert.equal(s.describe().importInProgress, undefined, 'the marker was removed');
  const roots: string[] = [];
  await commitRange(s, 1, 2, roots);
  await s.close();
  env = restartEnv(env);
  s = await openSim(env);
  assertAt(s, 2, roots);
  await s.close();
});

test('A19: interrupted import discarded; failed snapshot leaves CURRENT and cleans -tmp; leftovers swept; orphan adopted', async () => {
  let env = simEnv();
  const roots: string[] = [];
  let s = await openSim(env);
  await commitRange(s, 1, 3, roots);
  await s.snapshot();
  await commitRange(s, 4, 5, roots);
  // Failed snapshot: the engine checkpoint write fails → CURRENT unchanged, -tmp cleaned at reopen.
  env.fs.injectFault({
    op: 'writev',
    pathIncludes: path.join(DIR, 'snapshots', `${snapshotName(5)}-tmp`, 'kv.dump'),
    error: 'EIO',
    nth: 1,
  });
  await assert.rejects(s.snapshot(), /keeps committing without it/);
  env.fs.clearFaults();
  assert.equal(readCurrent(env.fs, DIR), 3);
  assert.equal(env.fs.exists(path.join(DIR, 'snapshots', `${snapshotName(5)}-tmp`)), false, '-tmp cleaned');
  await s.commitBlock(6, blockAt(6));
  env = crashEnv(env, new Rng(19));
  env.fs.mkdir(path.join(DIR, 'junk-removing'));
  env.fs.mkdir(path.join(DIR, 'snapshots', 'snapshot-00000000000000000009-tmp'));
  s = await openSim(env);
  assert.equal(s.version, 6);
  assert.equal(env.fs.exists(path.join(DIR, 'junk-removing')), false);
  assert.equal(env.fs.exists(path.join(DIR, 'snapshots', 'snapshot-00000000000000000009-tmp')), false);
  await s.snapshot();
  await s.close();
  // Orphan: a complete snapshot that CURRENT does not name yet is adopted.
  env = restartEnv(env);
  const { writeCurrent } = await import('../../src/state/snapshots.ts');
  writeCurrent(env.fs, DIR, 3);
  s = await openSim(env);
  assert.equal(readCurrent(env.fs, DIR), 6);
  await s.close();
  // Interrupted import: marker present → everything wiped, version 0.
  env = restartEnv(env);
  const { writeRecordFile } = await import('../../src/state/files.ts');
  writeRecordFile(
    env.fs,
    path.join(DIR, 'IMPORT_IN_PROGRESS'),
    new TextEncoder().encode('CAIRNIMP1'),
    new Uint8Array(8),
  );
  s = await openSim(env);
  assert.equal(s.version, 0);
  assert.equal(readCurrent(env.fs, DIR), undefined);
  await s.commitBlock(1, blockAt(1));
  await s.close();
});

test('A20: wrong heights and bad input change nothing; empty blocks advance durably', async () => {
  let env = simEnv();
  let s = await openSim(env);
  await s.commitBlock(1, [evm([{ key: nonceKey(1), value: u64(1) }])]);
  const root1 = toHex(s.committedRoot());
  await assert.rejects(s.applyChangeSets(3, []), expectCode('OUT_OF_ORDER'));
  await assert.rejects(s.commit(3), expectCode('OUT_OF_ORDER'));
  await s.applyChangeSets(2, [evm([{ key: nonceKey(2), value: u64(2) }])]);
  const working = toHex(s.workingRoot());
  await assert.rejects(s.commit(5), expectCode('OUT_OF_ORDER'));
  // A parse error in a later pair leaves no trace of the earlier ones.
  await assert.rejects(
    s.applyChangeSets(2, [
      evm([
        { key: nonceKey(3), value: u64(3) },
        { key: nonceKey(4), value: new Uint8Array(3) },
      ]),
    ]),
    expectCode('INVALID_ARGUMENT'),
  );
  await assert.rejects(
    s.applyChangeSets(2, [evm([{ key: new Uint8Array(0), value: u64(1) }])]),
    expectCode('INVALID_ARGUMENT'),
  );
  await assert.rejects(
    s.applyChangeSets(2, [{ name: '', pairs: [{ key: bytes('x'), value: bytes('y') }] }]),
    expectCode('INVALID_ARGUMENT'),
  );
  await assert.rejects(
    s.applyChangeSets(2, [evm([{ key: storageKey(1, 1), value: new Uint8Array(31) }])]),
    expectCode('INVALID_ARGUMENT'),
  );
  assert.equal(toHex(s.workingRoot()), working);
  assert.equal(s.get('evm', nonceKey(3)), undefined);
  assert.equal(s.pendingVersion, 2);
  assert.equal(s.version, 1);
  assert.deepEqual(s.get('evm', nonceKey(2)), u64(2), 'get sees the pending block');
  assert.equal(s.getCommitted('evm', nonceKey(2)), undefined, 'getCommitted does not');
  await s.commit(2);
  assert.deepEqual(s.get('evm', nonceKey(2)), u64(2));
  await s.commit(3); // empty block
  await s.commit(4);
  const root4 = toHex(s.committedRoot());
  assert.notEqual(root4, root1);
  env = crashEnv(env, new Rng(20), { engine: 'none' });
  s = await openSim(env);
  assert.equal(s.version, 4);
  assert.equal(toHex(s.committedRoot()), root4);
  await s.close();
});

test('reads: not-found is undefined for every key shape; a damaged row is a typed DECODE error', async () => {
  const env = simEnv();
  const s = await openSim(env);
  assert.equal(s.get('evm', new Uint8Array(0)), undefined);
  assert.equal(s.get('evm', new Uint8Array([0x03, 1, 2])), undefined);
  assert.equal(s.get('bank', bytes('nothing')), undefined);
  assert.equal(s.get('', bytes('x')), undefined);
  await s.commitBlock(1, [
    evm([
      { key: storageKey(1, 1), value: word(1) },
      { key: nonceKey(1), value: u64(0) },
    ]),
  ]);
  assert.equal(s.get('evm', nonceKey(1)), undefined, 'an all-zero account row is never stored');
  assert.equal(s.blockHeightModified('evm', storageKey(1, 1)), 1);
  const engine = [...env.host.engines.values()].at(-1)!;
  const { kvKey } = await import('../../src/state/records.ts');
  const { evmPhysicalKey } = await import('../../src/state/encoding.ts');
  const kk = kvKey('storage', evmPhysicalKey(0x03, storageKey(1, 1).subarray(1)));
  await engine
    .batch()
    .put(kk, new Uint8Array([9, 9]))
    .write({ sync: false });
  assert.throws(() => s.get('evm', storageKey(1, 1)), expectCode('DECODE'));
  await s.close();
});

test('corrupt meta: a damaged or missing checkpoint record, CURRENT naming a missing snapshot, a torn manifest', async () => {
  // Damaged checkpoint record.
  let env = simEnv();
  let s = await openSim(env);
  await s.commitBlock(1, blockAt(1));
  await s.close();
  env = restartEnv(env);
  let engine = await env.host.open(path.join(DIR, 'kv'));
  const good = engine.get(CHECKPOINT_KEY)!;
  const bad = good.slice();
  bad[100] = (bad[100] ?? 0) ^ 1;
  await engine.batch().put(CHECKPOINT_KEY, bad).write({ sync: true });
  await assert.rejects(openSim(env), expectCode('CORRUPT'));
  engine = await env.host.open(path.join(DIR, 'kv'));
  await engine.batch().del(CHECKPOINT_KEY).write({ sync: true });
  await assert.rejects(openSim(env), expectCode('CORRUPT'));
  // CURRENT naming a snapshot that is gone, and a manifest with a flipped bit.
  env = simEnv(2);
  s = await openSim(env);
  await s.commitBlock(1, blockAt(1));
  await s.snapshot();
  await s.close();
  env = restartEnv(env);
  const snap = path.join(DIR, 'snapshots', snapshotName(1));
  env.fs.flipBit(path.join(snap, 'MANIFEST'), 20, 0);
  await assert.rejects(openSim(env), expectCode('CORRUPT'));
  env.fs.flipBit(path.join(snap, 'MANIFEST'), 20, 0);
  env.fs.rename(snap, path.join(DIR, 'elsewhere'));
  await assert.rejects(openSim(env), expectCode('CORRUPT'));
});

test('A19 (seed): setInitialVersion seeds a fresh store atomically; a crash keeps it or leaves a fresh store', async () => {
  let env = simEnv();
  let s = await openSim(env);
  await s.setInitialVersion(100);
  assert.equal(s.version, 99);
  await assert.rejects(s.commitBlock(1, []), expectCode('OUT_OF_ORDER'));
  await s.commitBlock(100, blockAt(100));
  const root = toHex(s.committedRoot());
  await assert.rejects(s.setInitialVersion(5), expectCode('CONFLICT'));
  env = crashEnv(env, new Rng(100), { engine: 'none', fsPolicy: { data: 'drop', dirOps: 'drop' } });
  s = await openSim(env);
  assert.equal(s.version, 100);
  assert.equal(toHex(s.committedRoot()), root);
  await assert.rejects(s.rollback(50), expectCode('OUT_OF_RANGE'));
  await s.close();
});

test('an oversized block is refused when applied (typed, nothing changed), not stuck pending at commit', async () => {
  const env = simEnv(21);
  const s = await openSim(env);
  await s.commitBlock(1, blockAt(1));
  const bigCode = (a: number) =>
    evm([{ key: new Uint8Array([0x07, ...addr(a)]), value: new Uint8Array(15 << 20) }]);
  // Three 15 MiB rows fit the 48 MiB record; a fourth would not.
  await s.applyChangeSets(2, [bigCode(1), bigCode(2), bigCode(3)]);
  const pendingRoot = toHex(s.workingRoot());
  await assert.rejects(s.applyChangeSets(2, [bigCode(4)]), (err: unknown) => {
    assert.ok(isCairnError(err, 'RECORD_TOO_LARGE'), String(err));
    assert.ok((err.details.bytes as number) > (err.details.limit as number));
    return true;
  });
  assert.equal(toHex(s.workingRoot()), pendingRoot, 'the refused changes were not applied');
  assert.equal(s.get('evm', new Uint8Array([0x07, ...addr(4)])), undefined);
  await s.commit(2);
  assert.equal(s.version, 2);
  await assertVerified(s);
  await s.close();
});

test('a refused rollback (unreachable target) keeps the pending block', async () => {
  const env = simEnv(22);
  const s = await openSim(env);
  await s.setInitialVersion(10);
  await s.commitBlock(10, blockAt(10));
  await s.commitBlock(11, blockAt(11));
  await s.applyChangeSets(12, blockAt(12));
  const pendingRoot = toHex(s.workingRoot());
  await assert.rejects(s.rollback(5), expectCode('OUT_OF_RANGE'));
  await assert.rejects(s.rollback(13), expectCode('OUT_OF_RANGE'));
  assert.equal(s.pendingVersion, 12, 'the pending block survived the refused rollback');
  assert.equal(toHex(s.workingRoot()), pendingRoot);
  await s.commit(12);
  assert.equal(s.version, 12);
  await assertVerified(s);
  await s.close();
});

test('verify on a badly damaged engine names the family and keeps its report bounded', async () => {
  let env = simEnv(23);
  let s = await openSim(env);
  await s.commitBlock(1, blockAt(1));
  await s.close();
  env = restartEnv(env);
  const { kvKey } = await import('../../src/state/records.ts');
  const { evmPhysicalKey } = await import('../../src/state/encoding.ts');
  const engine = await env.host.open(path.join(DIR, 'kv'));
  const batch = engine.batch();
  for (let i = 0; i < 500; i++) {
    batch.put(
      kvKey('storage', evmPhysicalKey(0x03, storageKey(900 + i, i).subarray(1))),
      new Uint8Array([9, 9]),
    );
  }
  await batch.write({ sync: true });
  s = await openSim(env);
  const report = await s.verify();
  assert.equal(report.ok, false);
  const storage = report.families.find((f) => f.family === 'storage')!;
  assert.equal(storage.ok, false);
  assert.equal(storage.rows >= 500, true);
  assert.ok(storage.problems.length <= 22, `${storage.problems.length} problems listed`);
  assert.match(storage.problems.at(-1)!, /more problems/);
  assert.ok(report.families.filter((f) => f.family !== 'storage').every((f) => f.ok));
  await s.close();
});

test('import refuses a stream with bytes after its trailer (two exports glued together)', async () => {
  const src = simEnv(24);
  const a = await openSim(src);
  await commitRange(a, 1, 3, []);
  const chunks: Uint8Array[] = [];
  await a.exportState(0, (c) => {
    chunks.push(c.slice());
  });
  await a.close();
  const s = await openSim(simEnv(25));
  await assert.rejects(s.importState([Buffer.concat(chunks), Buffer.concat(chunks)]), (err: unknown) => {
    assert.ok(isCairnError(err, 'CORRUPT'), String(err));
    assert.match((err as Error).message, /follow the trailer/);
    return true;
  });
  assert.equal(s.version, 0);
  const ok = await s.importState(chunks);
  assert.equal(ok.height, 3);
  await s.close();
});

test('keys and values of the wrong type are typed caller errors and change nothing', async () => {
  const s = await openSim(simEnv(26));
  await s.commitBlock(1, blockAt(1));
  const root = toHex(s.workingRoot());
  const bad = [
    { name: 'bank', pairs: [{ key: 'abc' as unknown as Uint8Array, value: bytes('x') }] },
    { name: 'evm', pairs: [{ key: [3, 1, 2] as unknown as Uint8Array, value: word(1) }] },
    { name: 'evm', pairs: [{ key: nonceKey(1), value: 'eight by' as unknown as Uint8Array }] },
  ];
  for (const cs of bad) await assert.rejects(s.applyChangeSets(2, [cs]), expectCode('INVALID_ARGUMENT'));
  assert.equal(toHex(s.workingRoot()), root);
  assert.equal(s.pendingVersion, 0);
  await s.commitBlock(2, blockAt(2));
  await assertVerified(s);
  await s.close();
});

test('a row too large for the export format is refused at apply, so every committed state can be exported and imported', async () => {
  const s = await openSim(simEnv(27));
  await s.commitBlock(1, blockAt(1));
  const root = toHex(s.workingRoot());
  const huge = { name: 'bank', pairs: [{ key: bytes('blob'), value: new Uint8Array(17 << 20) }] };
  await assert.rejects(s.applyChangeSets(2, [huge]), expectCode('RECORD_TOO_LARGE'));
  assert.equal(toHex(s.workingRoot()), root);
  // Just under the limit commits, exports and imports.
  const big = {
    name: 'bank',
    pairs: [{ key: bytes('blob'), value: new Uint8Array((16 << 20) - 64).fill(7) }],
  };
  await s.commitBlock(2, [big]);
  const chunks: Uint8Array[] = [];
  const exported = await s.exportState(0, (c) => {
    chunks.push(c.slice());
  });
  await s.close();
  const t = await openSim(simEnv(28));
  const imported = await t.importState(chunks, { expectedRoot: exported.root });
  assert.equal(imported.height, 2);
  await t.close();
});
