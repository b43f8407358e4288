/**
 * Review finding: WAL recovery trusts the page cache. After a process crash (kill -9) between a
 * write and its fsync, the written frames are still in the OS page cache; a restarted process reads
 * them back and `Wal.open` reports them as part of the log and as durable (`durableIndex`), although
 * nothing ever fsynced them. Callers treat what a log recovered as durable — consensus persistence
 * makes every loaded lane block voteable and publishes the newest loaded CommitQC, the block store's
 * flush gate acknowledges every recovered block — so a power cut after the restart can take back
 * what was voted on. Recovery must make what it returns durable (fdatasync of the tail segment) before
 * `open` resolves.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';

const DIR = '/wal';

test('a WAL reopened after a process crash reports only records that survive a power cut', async () => {
  const fs = new SimulatedFileSystem({ seed: 7 });
  const first = await Wal.open({ fs, dir: DIR, segmentBytes: 1024 * 1024 });
  first.append([new Uint8Array(100).fill(1)]);
  await first.sync();
  // Large enough to be written to the OS inside `append` (the WAL's write threshold), never fsynced:
  // the process dies here (the log object is abandoned, not closed).
  first.append([new Uint8Array(300 * 1024).fill(2)]);
  assert.equal(first.durableIndex, 1, 'precondition: the second record is not durable');

  // The restarted process sees the page cache (same file system, no power loss).
  const restarted = await Wal.open({ fs, dir: DIR, segmentBytes: 1024 * 1024 });
  const recoveredNext = restarted.nextIndex;
  assert.equal(recoveredNext, 2, 'precondition: the unsynced record is visible after the restart');
  assert.equal(restarted.durableIndex, 2, 'the restarted log claims the record is durable');

  // Power fails right after the restart: what open returned (and claimed durable) must survive.
  const afterPowerLoss = await Wal.open({ fs: fs.crashImage(DROP_ALL), dir: DIR, segmentBytes: 1024 * 1024 });
  assert.equal(
    afterPowerLoss.nextIndex,
    recoveredNext,
    `open returned records [0, ${recoveredNext}) as durable, a power cut left [0, ${afterPowerLoss.nextIndex})`,
  );
  await afterPowerLoss.close();
  await restarted.close();
});
