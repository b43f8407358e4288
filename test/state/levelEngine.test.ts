// The state store on the real engine (LevelDB via classic-level) and the real file system: snapshots
// are hard-link checkpoints, rollbacks and views clone them, a lost engine directory is rebuilt from
// the snapshot plus the WAL, and every root matches the in-memory reference run.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
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

/** Every file under `dir` with its size and mtime: what an inspection must leave exactly as it was. */
function treeSignature(dir: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else out.push(`${path.relative(dir, p)}:${st.size}:${st.mtimeMs}`);
    }
  };
  walk(dir);
  return out.join('\n');
}

test('read-only inspection creates and changes nothing in the data directory and never blocks a running writer', async () => {
  const dir = path.join(root, 'ro');
  const roots: string[] = [];
  const scratchDir = mkdtempSync(path.join(root, 'scratch-'));
  let writer = await StateStore.open({
    dataDir: dir,
    snapshotIntervalBlocks: 0,
    checkpointIntervalBlocks: 4,
  });
  for (let h = 1; h <= 6; h++) {
    await writer.commitBlock(h, randomBlock(new Rng(h + 500), 200));
    roots[h] = toHex(writer.committedRoot());
  }
  await writer.close();
  const before = treeSignature(dir);
  const ro = await StateStore.open({ dataDir: dir, readOnly: true, scratchDir });
  assert.equal(ro.version, 6);
  assert.equal(toHex(ro.committedRoot()), roots[6]);
  assert.ok((await ro.verify()).ok);
  // A writer starts while the inspection is open: neither blocks the other.
  writer = await StateStore.open({ dataDir: dir, snapshotIntervalBlocks: 0, checkpointIntervalBlocks: 4 });
  await writer.commitBlock(7, randomBlock(new Rng(507), 200));
  roots[7] = toHex(writer.committedRoot());
  await ro.close();
  // Inspecting while it commits sees one committed height with exactly that height's root.
  const inspected = StateStore.open({ dataDir: dir, readOnly: true, scratchDir });
  for (let h = 8; h <= 10; h++) {
    await writer.commitBlock(h, randomBlock(new Rng(h + 500), 200));
    roots[h] = toHex(writer.committedRoot());
  }
  const live = await inspected;
  assert.ok(live.version >= 7 && live.version <= 10, `inspected height ${live.version}`);
  assert.equal(toHex(live.committedRoot()), roots[live.version]);
  assert.ok((await live.verify()).ok);
  await live.close();
  await writer.close();
  assert.deepEqual(readdirSync(scratchDir), [], 'the private copies were removed');
  const after = treeSignature(dir);
  const settled = await StateStore.open({ dataDir: dir, readOnly: true, scratchDir });
  await settled.close();
  assert.equal(treeSignature(dir), after, 'a read-only open changed files in the data directory');
  assert.notEqual(before, after, 'sanity: the writer did change files');
});
