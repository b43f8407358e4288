/**
 * Review finding: loading an A/B file trusts the page cache. A process killed between writing a
 * slot and fsyncing it leaves the new image in the OS page cache; the restarted process loads it as
 * the winner and acts on it as durable. For the prune anchor that is an ordering violation: startup
 * prunes every log below the loaded anchor (durably), a power cut then brings back the older anchor
 * (the new slot was never fsynced), and the node refuses to start (GAP) although nothing it had
 * acknowledged was lost. Loading (when not read-only) must fdatasync the winning slot before
 * returning its payload.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeSlotImage, openAbFile } from '../../src/io/abFile.ts';
import { writeFully } from '../../src/io/fileSystem.ts';
import { DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { GatedFileSystem, openCp, ROOT, settle, smallFixture } from '../consensus/helpers.ts';

test('an A/B file loaded after a process crash returns only a payload that survives a power cut', () => {
  const fs = new SimulatedFileSystem({ seed: 3 });
  fs.mkdir('/ab');
  fs.syncDir('/');
  const { file } = openAbFile(fs, '/ab', 'x');
  file.write(new Uint8Array([1]));
  file.close();
  // The next write goes to slot b; the process dies after writing it and before its fsync.
  const handle = fs.open('/ab/x.b');
  writeFully(handle, [encodeSlotImage(2, new Uint8Array([2]))], 0);
  handle.close();

  const restarted = openAbFile(fs, '/ab', 'x');
  assert.equal(restarted.loaded.seq, 2, 'precondition: the restart sees the unsynced image');
  restarted.file.close();
  const afterPowerLoss = openAbFile(fs.crashImage(DROP_ALL), '/ab', 'x');
  assert.equal(
    afterPowerLoss.loaded.seq,
    restarted.loaded.seq,
    `open returned seq ${restarted.loaded.seq}, a power cut right after left seq ${afterPowerLoss.loaded.seq}`,
  );
});

test('consensus persistence restarted after a kill between anchor write and fsync survives a power cut', async () => {
  const sim = new SimulatedFileSystem({ seed: 5 });
  // Every anchor fsync hangs forever: the process is "killed" with the anchor written, not synced.
  const gated = new GatedFileSystem(sim, 'anchor.');
  gated.hold();
  const f = smallFixture(2);
  const cp = await openCp(gated, f);
  for (const p of f.produceRound(4)) cp.pushBlock(p);
  for (const lane of f.lanes) assert.equal(await cp.waitVoteable(lane, 3), 'durable');
  const qc0 = f.nextCommitQC({ maxPerLane: 2 });
  const qc1 = f.nextCommitQC({ maxPerLane: 2 });
  cp.pushCommitQC(qc0);
  cp.pushCommitQC(qc1);
  await cp.waitCommitQC(1);
  // The anchor at road 1 (lane first 2) is written to its slot; its fsync never returns.
  assert.equal(cp.pushAppQC(f.appQC(qc1), qc1), true);
  await settle(50);
  assert.equal(cp.durableAnchor(), undefined, 'precondition: the anchor never became durable');
  assert.ok(gated.gatedSyncs > 0, 'precondition: the anchor write reached its fsync');
  // `cp` is abandoned (killed). The restarted process sees the page cache of the same disk.
  const restarted = await openCp(sim, f);
  assert.equal(restarted.durableAnchor()?.commitQC.roadIndex, 1, 'precondition: the restart loads road 1');
  await restarted.close();

  // Power fails after the restart. Nothing any process acknowledged was lost: it must open.
  const image = sim.crashImage(DROP_ALL);
  const after = await openCp(image, f);
  for (const lane of f.lanes) assert.ok(after.voteableNext(lane) >= 4, 'acknowledged blocks lost');
  await after.close();
  assert.ok(image.exists(ROOT));
});

test('an A/B write after a failed fsync and a reopen survives a power cut (size taken from the page cache)', () => {
  // After a failed fsync the kernel drops the dirty pages but reads still see them: the slot's
  // cached size no longer matches the disk. A write that skips the truncate because the cached size
  // already equals the new image's length leaves the old, longer image's tail on disk: the slot is
  // corrupt after a power cut and an acknowledged write is lost. (Fix: always truncate to the image
  // length before the fsync.)
  const fs = new SimulatedFileSystem({ seed: 9 });
  fs.mkdir('/ab');
  fs.syncDir('/');
  let opened = openAbFile(fs, '/ab', 'x').file;
  opened.write(new Uint8Array(500).fill(1)); // seq 1 → slot a, 516 bytes on disk
  opened.write(new Uint8Array(10).fill(2)); // seq 2 → slot b
  fs.injectFault({ op: 'sync', nth: 1, error: 'EIO' });
  assert.throws(() => opened.write(new Uint8Array(100).fill(3))); // seq 3 → slot a: fsync fails
  opened.close();
  // Reopen (a restarted process, or a new handle): the page cache shows seq 3 in slot a.
  opened = openAbFile(fs, '/ab', 'x').file;
  opened.write(new Uint8Array(20).fill(4)); // → slot b
  opened.write(new Uint8Array(100).fill(5)); // → slot a, same length as the cached seq-3 image
  const acked = opened.seq;
  opened.close();
  const afterPowerLoss = openAbFile(fs.crashImage(DROP_ALL), '/ab', 'x').loaded;
  assert.equal(
    afterPowerLoss.seq,
    acked,
    `acknowledged seq ${acked}, a power cut left seq ${afterPowerLoss.seq}`,
  );
});
