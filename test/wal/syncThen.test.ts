/**
 * `Wal.syncThen` on the real file system, whose handles fsync through a callback (no promise):
 * the callback runs only after an fsync that started after the record was written, and a failed
 * fsync latches the log with every caller (callback or promise) getting the same error. node:fs's
 * `fdatasync` is spied on to see the order and to inject the failure.
 */
import assert from 'node:assert/strict';
import fsModule from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { afterEach, beforeEach, test } from 'node:test';
import { RealFileSystem } from '../../src/io/realFileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Wal } from '../../src/wal/wal.ts';
import { enc, tempDir } from './helpers.ts';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

type FdatasyncCallback = (err: NodeJS.ErrnoException | null) => void;

/** Replaces fs.fdatasync while `body` runs; `wrap` gets the real call and its callback. */
async function withFdatasync(
  wrap: (fd: number, callback: FdatasyncCallback, real: typeof fsModule.fdatasync) => void,
  body: () => Promise<void>,
): Promise<void> {
  const real = fsModule.fdatasync;
  fsModule.fdatasync = ((fd: number, callback: FdatasyncCallback) => wrap(fd, callback, real)) as typeof real;
  syncBuiltinESMExports();
  try {
    await body();
  } finally {
    fsModule.fdatasync = real;
    syncBuiltinESMExports();
  }
}

const syncThen = (wal: Wal) =>
  new Promise<unknown>((resolve) => {
    wal.syncThen((err) => resolve(err ?? 'ok'));
  });

test('syncThen calls back only after an fsync that started after the write, and it covers the record', async () => {
  const events: string[] = [];
  await withFdatasync(
    (fd, callback, real) => {
      events.push('fsync start');
      real(fd, (err) => {
        events.push('fsync end');
        callback(err);
      });
    },
    async () => {
      const wal = await Wal.open({ fs: new RealFileSystem(), dir, syncOffThread: true, preallocate: false });
      for (let i = 0; i < 5; i++) {
        const index = wal.append([enc(`record ${i}`)]);
        events.push(`append ${index}`);
        assert.equal(await syncThen(wal), 'ok');
        events.push(`ack ${index}`);
        assert.ok(wal.durableIndex > index);
      }
      await wal.close();
    },
  );
  for (let i = 0; i < 5; i++) {
    const appended = events.indexOf(`append ${i}`);
    const acked = events.indexOf(`ack ${i}`);
    const window = events.slice(appended, acked);
    const start = window.indexOf('fsync start');
    assert.ok(start > 0 && window.indexOf('fsync end', start) > start, `record ${i}: ${window.join(', ')}`);
  }
  const reopened = await Wal.open({ fs: new RealFileSystem(), dir, preallocate: false });
  assert.equal(reopened.nextIndex, 5);
  await reopened.close();
});

test('a failed callback fsync latches the log: callbacks and promises all get the same error', async () => {
  const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
  let failing = false;
  await withFdatasync(
    (fd, callback, real) => {
      if (failing) setImmediate(() => callback(eio));
      else real(fd, callback);
    },
    async () => {
      const wal = await Wal.open({ fs: new RealFileSystem(), dir, syncOffThread: true, preallocate: false });
      wal.append([enc('kept')]);
      assert.equal(await syncThen(wal), 'ok');
      failing = true;
      wal.append([enc('lost')]);
      const [first, second, promised] = await Promise.allSettled([syncThen(wal), syncThen(wal), wal.sync()]);
      const err = (first as PromiseFulfilledResult<unknown>).value;
      assert.ok(isCairnError(err, 'IO_FATAL'), `got ${String(err)}`);
      assert.equal((second as PromiseFulfilledResult<unknown>).value, err);
      assert.equal((promised as PromiseRejectedResult).reason, err);
      assert.equal(await syncThen(wal), err, 'latched: a later caller gets the first error');
      assert.throws(
        () => wal.append([enc('after')]),
        (e) => e === err,
      );
      failing = false;
      await assert.rejects(wal.close(), (e) => e === err);
    },
  );
});
