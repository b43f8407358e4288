/** The WAL's slow-fsync warning: threshold, rate limit, delivered through onWarning. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FileHandle } from '../../src/io/fileSystem.ts';
import { SlowFsyncMonitor } from '../../src/wal/slowFsync.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor, tempDir, WrappingFileSystem } from './helpers.ts';

test('fsyncs under the threshold are silent; slow ones are reported at most once per interval, with counts', () => {
  let now = 0;
  const reports: Record<string, unknown>[] = [];
  const monitor = new SlowFsyncMonitor(
    100,
    1000,
    (_m, d) => reports.push(d),
    () => now,
  );
  monitor.record(50, '/f');
  assert.equal(reports.length, 0);
  monitor.record(150, '/f');
  assert.equal(reports.length, 1);
  now = 10;
  monitor.record(300, '/f');
  monitor.record(200, '/f');
  assert.equal(reports.length, 1, 'rate-limited');
  now = 1500;
  monitor.record(120, '/f');
  assert.equal(reports.length, 2);
  assert.equal(reports[1]!.slowFsyncs, 3);
  assert.equal(reports[1]!.worstFsyncMs, 300);
});

class SlowSyncFileSystem extends WrappingFileSystem {
  delayMs = 0;
  override open(p: string, options?: Parameters<WrappingFileSystem['open']>[1]): FileHandle {
    const handle = super.open(p, options);
    const inner = handle.syncAsync.bind(handle);
    handle.syncAsync = async () => {
      await inner();
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    };
    return handle;
  }
}

test('the WAL reports a slow fsync through onWarning, once per interval', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const fs = new SlowSyncFileSystem();
    const warnings: Array<{ message: string; details: Record<string, unknown> }> = [];
    const wal = await Wal.open({
      fs,
      dir,
      syncOffThread: true,
      slowFsyncWarnMs: 20,
      onWarning: (message, details) => warnings.push({ message, details }),
    });
    fs.delayMs = 40;
    for (let i = 0; i < 3; i++) {
      wal.append([payloadFor(i, 10)]);
      await wal.sync();
    }
    fs.delayMs = 0;
    const slow = warnings.filter((w) => w.message.startsWith('slow fsync'));
    assert.equal(slow.length, 1, JSON.stringify(warnings));
    assert.ok((slow[0]!.details.fsyncMs as number) >= 20);
    await wal.close();
  } finally {
    cleanup();
  }
});
