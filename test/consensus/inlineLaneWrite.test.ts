/**
 * An admission on an idle lane writes the block and issues its fsync inside `pushBlock` (no
 * microtask step first), while the vote gate still opens only once that fsync has returned, and
 * blocks pushed during the fsync form the next batch (one more fsync, not one each).
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import type { FileSystem } from '../../src/io/fileSystem.ts';
import { GatedFileSystem, openCp, ROOT, settle, simFs, smallFixture } from './helpers.ts';

/** Whether `bytes` appear in any file of `dir` (what the write put in the page cache or on disk). */
function filesContain(fs: FileSystem, dir: string, bytes: Uint8Array): boolean {
  for (const name of fs.readdir(dir)) {
    const file = path.join(dir, name);
    if (fs.stat(file).size === 0) continue;
    const h = fs.open(file, { readOnly: true });
    try {
      const buf = Buffer.alloc(h.size());
      h.read(buf, 0, buf.byteLength, 0);
      if (buf.indexOf(Buffer.from(bytes)) >= 0) return true;
    } finally {
      h.close();
    }
  }
  return false;
}

test('an idle lane writes inside pushBlock; the vote waits for the fsync; blocks pushed meanwhile share the next one', async () => {
  const f = smallFixture(2);
  const lane = f.laneAt(0);
  const fs = new GatedFileSystem(simFs(), lane);
  const cp = await openCp(fs, f);
  // Block 0 creates the lane's log (the slow path, asynchronous by nature).
  cp.pushBlock(f.produceBlock(lane));
  assert.equal(await cp.waitVoteable(lane, 0), 'durable');
  await settle();
  const laneDir = path.join(ROOT, 'blocks', lane);
  fs.hold();
  const syncsBefore = fs.gatedSyncs;
  const b1 = f.produceBlock(lane);
  assert.equal(filesContain(fs, laneDir, b1.block.payload), false);
  assert.equal(cp.pushBlock(b1), 'accepted');
  // Synchronously after pushBlock returned: the block is in the lane's file and its fsync started.
  assert.equal(filesContain(fs, laneDir, b1.block.payload), true, 'written inside pushBlock');
  assert.equal(fs.gatedSyncs, syncsBefore + 1, 'fsync issued inside pushBlock');
  const voted1 = cp.waitVoteable(lane, 1);
  let released = false;
  void voted1.then(() => (released = true));
  // More blocks while that fsync is held: no fsync of their own yet, and no vote for anything.
  const more = Array.from({ length: 5 }, () => f.produceBlock(lane));
  for (const b of more) cp.pushBlock(b);
  await settle();
  assert.equal(fs.gatedSyncs, syncsBefore + 1, 'no second fsync while one is in flight');
  assert.equal(released, false, 'no vote before the fsync returns');
  assert.equal(cp.voteableNext(lane), 1);
  fs.release();
  assert.equal(await voted1, 'durable');
  assert.equal(await cp.waitVoteable(lane, 6), 'durable');
  assert.equal(fs.gatedSyncs, syncsBefore + 2, 'the five blocks pushed meanwhile shared one fsync');
  for (const b of more) assert.equal(filesContain(fs, laneDir, b.block.payload), true);
  await cp.close();
});
