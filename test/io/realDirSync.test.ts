/**
 * RealFileSystem.syncDir skips an fsync only when it would be a no-op: the same instance fsynced
 * the same directory before and no entry of it changed since (its mtime/ctime have not moved), in
 * this process or any other. Checked by counting the real fsync calls (node:fs spied on).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fsModule, { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RealFileSystem } from '../../src/io/realFileSystem.ts';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** Longer than the quiet period a directory needs before an fsync of it is remembered. */
const QUIET_MS = 250;

/** Counts fsyncSync calls while `body` runs. */
async function countingFsyncs(body: (count: () => number) => Promise<void>): Promise<void> {
  const original = fsModule.fsyncSync;
  let calls = 0;
  fsModule.fsyncSync = (fd) => {
    calls++;
    original(fd);
  };
  syncBuiltinESMExports();
  try {
    await body(() => calls);
  } finally {
    fsModule.fsyncSync = original;
    syncBuiltinESMExports();
  }
}

test('a directory unchanged since this instance fsynced it is not fsynced again; any change is', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cairn-dirsync-'));
  try {
    const dir = join(root, 'logs');
    mkdirSync(dir);
    await countingFsyncs(async (count) => {
      const fs = new RealFileSystem();
      // Just created: its times are too recent to vouch for anything, so every call fsyncs.
      fs.syncDir(dir);
      fs.syncDir(dir);
      assert.equal(count(), 2);
      await sleep(QUIET_MS);
      fs.syncDir(dir);
      assert.equal(count(), 3);
      fs.syncDir(dir);
      fs.syncDir(dir);
      assert.equal(count(), 3, 'unchanged since the last fsync: skipped');
      // A new entry (made by this process) moves the times: fsynced again.
      writeFileSync(join(dir, 'segment'), 'x');
      fs.syncDir(dir);
      assert.equal(count(), 4);
      await sleep(QUIET_MS);
      fs.syncDir(dir);
      fs.syncDir(dir);
      assert.equal(count(), 5);
      // Another process renames an entry and exits without any fsync (a killed writer): the next
      // call fsyncs, although this instance had fsynced the directory.
      const script = `require('node:fs').renameSync(${JSON.stringify(join(dir, 'segment'))}, ${JSON.stringify(join(dir, 'renamed'))})`;
      execFileSync(process.execPath, ['-e', script]);
      fs.syncDir(dir);
      assert.equal(count(), 6);
      // Another instance (another FileSystem, e.g. a simulated one in tests) knows nothing.
      await sleep(QUIET_MS);
      fs.syncDir(dir);
      new RealFileSystem().syncDir(dir);
      assert.equal(count(), 8);
      // The same path, now a different directory (removed and made again): fsynced.
      fs.syncDir(dir);
      assert.equal(count(), 8);
      rmSync(dir, { recursive: true });
      mkdirSync(dir);
      fs.syncDir(dir);
      assert.equal(count(), 9);
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

/**
 * ext3, ext4 with 128-byte inodes and HFS+ keep whole seconds (FAT: two): two entry changes half a
 * second apart carry the same mtime and ctime there. The quiet period must then count from the end
 * of that second, or an fsync between the two changes is remembered and the second change is never
 * fsynced. Simulated here (the machine's disk keeps nanoseconds): fstat rounds to whole seconds, and
 * the clock is set.
 */
test('on a file system with whole-second times, a change later in the same second is fsynced', async () => {
  const root = mkdtempSync(join(tmpdir(), 'cairn-dirsync-coarse-'));
  const originalFstat = fsModule.fstatSync;
  const originalNow = Date.now;
  const secondMs = Math.floor(originalNow() / 1000) * 1000 - 10_000;
  let nowMs = secondMs;
  try {
    const dir = join(root, 'logs');
    mkdirSync(dir);
    // Every change made below lands in the same whole second `secondMs`.
    const wholeSecondNs = BigInt(secondMs) * 1_000_000n;
    fsModule.fstatSync = ((fd: number, options?: { bigint?: boolean }) => {
      const st = originalFstat(fd, options as { bigint: true });
      if (options?.bigint === true) {
        (st as fsModule.BigIntStats).mtimeNs = wholeSecondNs;
        (st as fsModule.BigIntStats).ctimeNs = wholeSecondNs;
      }
      return st;
    }) as typeof fsModule.fstatSync;
    syncBuiltinESMExports();
    Date.now = () => nowMs;
    await countingFsyncs(async (count) => {
      const fs = new RealFileSystem();
      // An entry made at .100 s, the directory fsynced at .500 s (its time, .000, looks 500 ms old).
      nowMs = secondMs + 500;
      fs.syncDir(dir);
      assert.equal(count(), 1);
      // Another entry at .600 s: the file system records the same second for it.
      writeFileSync(join(dir, 'segment'), 'x');
      nowMs = secondMs + 700;
      fs.syncDir(dir);
      assert.equal(count(), 2, 'a change in the same second as the remembered fsync is fsynced');
      // Once the whole second (two, for FAT) and the quiet period have passed, skipping is sound.
      nowMs = secondMs + 2_200;
      fs.syncDir(dir);
      fs.syncDir(dir);
      assert.equal(count(), 3, 'remembered only once no later change can carry the same time');
    });
  } finally {
    fsModule.fstatSync = originalFstat;
    syncBuiltinESMExports();
    Date.now = originalNow;
    rmSync(root, { recursive: true, force: true });
  }
});

test('a directory that is gone is an error, as before', () => {
  const fs = new RealFileSystem();
  assert.throws(() => fs.syncDir(join(tmpdir(), 'cairn-dirsync-missing-', String(process.pid))), {
    code: 'ENOENT',
  });
});
