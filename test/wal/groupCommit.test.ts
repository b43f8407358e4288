import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Wal } from '../../src/wal/wal.ts';
import { enc, errno, payloadFor, tempDir, WrappingFileSystem } from './helpers.ts';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

const CALLERS = 64;
const ROUNDS = 20;

async function concurrentAppenders(wal: Wal, log: string[] = []): Promise<void> {
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, caller) => {
      for (let r = 0; r < ROUNDS; r++) {
        const index = wal.append([payloadFor(caller * 1000 + r, 64)]);
        log.push(`append ${index}`);
        await wal.sync();
        assert.ok(wal.durableIndex > index, `record ${index} acknowledged before it was durable`);
        log.push(`ack ${index}`);
      }
    }),
  );
}

for (const syncOffThread of [false, true]) {
  describe(`group commit (syncOffThread=${syncOffThread})`, () => {
    test(`${CALLERS} concurrent append+sync callers share far fewer fsyncs`, async () => {
      const fs = new WrappingFileSystem();
      const wal = await Wal.open({ fs, dir, syncOffThread, segmentBytes: 1 << 20 });
      const before = fs.fsyncs();
      await concurrentAppenders(wal);
      const fsyncs = fs.fsyncs() - before;
      console.log(`syncOffThread=${syncOffThread}: ${CALLERS * ROUNDS} acks, ${fsyncs} fsyncs`);
      assert.ok(fsyncs <= ROUNDS * 3, `expected about ${ROUNDS} fsyncs, got ${fsyncs}`);
      assert.equal(wal.nextIndex, CALLERS * ROUNDS);
      await wal.close();
      const again = await Wal.open({ fs: realFileSystem, dir, segmentBytes: 1 << 20 });
      assert.equal(again.nextIndex, CALLERS * ROUNDS);
      await again.close();
    });

    test('every acknowledgement follows an fsync that started after the record was written', async () => {
      const fs = new WrappingFileSystem();
      const wal = await Wal.open({ fs, dir, syncOffThread, segmentBytes: 4096 });
      fs.recordEvents = true;
      const acks: { index: number; eventsAtAppend: number; eventsAtAck: number }[] = [];
      await Promise.all(
        Array.from({ length: 8 }, async (_, caller) => {
          for (let r = 0; r < 10; r++) {
            const index = wal.append([payloadFor(caller + r, 100)]);
            const eventsAtAppend = fs.events.length;
            await wal.sync();
            acks.push({ index, eventsAtAppend, eventsAtAck: fs.events.length });
          }
        }),
      );
      for (const ack of acks) {
        const window = fs.events.slice(ack.eventsAtAppend, ack.eventsAtAck);
        // The record is written (writev) after its append, then an fsync of its file completes.
        const write = window.findIndex((e) => e.call === 'writev' && e.phase === 'end');
        // The fsync must be of a log file and start after the write; its end is the matching
        // end event (same call, same file), not the end of some other file's fsync (the spare
        // segment is fsynced in the background and may finish inside the window).
        const fsyncStart = window.findIndex(
          (e, i) =>
            i > write &&
            e.path.endsWith('.wal') &&
            (e.call === 'sync' || e.call === 'syncAsync') &&
            e.phase === 'start',
        );
        const started = window[fsyncStart];
        const fsyncEnd = window.findIndex(
          (e, i) =>
            i > fsyncStart &&
            started !== undefined &&
            e.call === started.call &&
            e.path === started.path &&
            e.phase === 'end',
        );
        assert.ok(write >= 0, `record ${ack.index} acknowledged without being written`);
        assert.ok(
          fsyncStart > write && fsyncEnd > fsyncStart,
          `record ${ack.index}: no fsync after its write`,
        );
      }
      await wal.close();
    });
  });
}

test('appends that arrive while an off-thread fsync is in flight join the next one', async () => {
  const fs = new WrappingFileSystem();
  const wal = await Wal.open({ fs, dir, syncOffThread: true });
  wal.append([enc('a')]);
  const first = wal.sync();
  // Let the first round start its fsync, then append more while it runs.
  await new Promise((r) => setImmediate(r));
  const before = fs.fsyncs();
  const late = [1, 2, 3].map((i) => {
    wal.append([enc(`late ${i}`)]);
    return wal.sync();
  });
  await Promise.all([first, ...late]);
  assert.ok(fs.fsyncs() - before <= 1, 'the late appends shared one fsync');
  assert.equal(wal.durableIndex, 4);
  await wal.close();
});

describe('latched failures', () => {
  test('a failed fsync rejects sync and every later call with the original cause; never retried', async () => {
    const fs = new WrappingFileSystem();
    const wal = await Wal.open({ fs, dir });
    const boom = errno('EIO', 'disk on fire');
    fs.failWhen = (call) => (call === 'sync' ? boom : undefined);
    wal.append([enc('a')]);
    const err = await wal.sync().then(
      () => assert.fail('sync resolved after a failed fsync'),
      (e: unknown) => e,
    );
    assert.ok(isCairnError(err, 'IO_FATAL'));
    assert.equal((err as Error).cause, boom);
    fs.failWhen = undefined;
    const syncsBefore = fs.fsyncs();
    assert.throws(
      () => wal.append([enc('b')]),
      (e) => e === err,
    );
    assert.throws(
      () => wal.read(0),
      (e) => e === err,
    );
    await assert.rejects(wal.sync(), (e) => e === err);
    await assert.rejects(wal.truncateBack(0), (e) => e === err);
    await assert.rejects(wal.truncateFront(0), (e) => e === err);
    await assert.rejects(wal.reset(), (e) => e === err);
    assert.throws(
      () => wal.verify(),
      (e) => e === err,
    );
    await assert.rejects(wal.close(), (e) => e === err);
    await assert.rejects(wal.close(), (e) => e === err, 'close is idempotent, same result');
    assert.equal(fs.fsyncs(), syncsBefore, 'the failed fsync is never retried');
  });

  test('a failed off-thread fsync latches too, rejecting every caller sharing it', async () => {
    const fs = new WrappingFileSystem();
    const wal = await Wal.open({ fs, dir, syncOffThread: true });
    fs.failWhen = (call) => (call === 'syncAsync' ? errno('EIO') : undefined);
    const results = await Promise.allSettled(
      [0, 1, 2].map((i) => {
        wal.append([enc(`r${i}`)]);
        return wal.sync();
      }),
    );
    assert.ok(results.every((r) => r.status === 'rejected'));
    const reasons = new Set(results.map((r) => (r as PromiseRejectedResult).reason));
    assert.equal(reasons.size, 1, 'all callers get the same latched error');
    await assert.rejects(wal.close());
  });

  test('a failed write (ENOSPC) latches the log', async () => {
    const fs = new WrappingFileSystem();
    const wal = await Wal.open({ fs, dir });
    fs.failWhen = (call) => (call === 'writev' ? errno('ENOSPC', 'no space left') : undefined);
    wal.append([enc('a')]);
    await assert.rejects(
      wal.sync(),
      (e) => isCairnError(e, 'IO_FATAL') && /ENOSPC/.test((e as Error).message),
    );
    fs.failWhen = undefined;
    assert.throws(
      () => wal.append([enc('b')]),
      (e) => isCairnError(e, 'IO_FATAL'),
    );
    await assert.rejects(wal.close());
  });

  test('a write failure inside append (buffer over its cap) throws and latches', async () => {
    const fs = new WrappingFileSystem();
    const wal = await Wal.open({ fs, dir });
    fs.failWhen = (call) => (call === 'writev' ? errno('EIO') : undefined);
    assert.throws(
      () => {
        for (let i = 0; i < 1000; i++) wal.append([payloadFor(i, 1024)]);
      },
      (e) => isCairnError(e, 'IO_FATAL'),
    );
    await assert.rejects(wal.sync(), (e) => isCairnError(e, 'IO_FATAL'));
    await assert.rejects(wal.close());
  });

  test('a failed meta write during truncateFront latches and deletes nothing', async () => {
    const fs = new WrappingFileSystem();
    const wal = await Wal.open({ fs, dir, segmentBytes: 512 });
    for (let i = 0; i < 40; i++) wal.append([payloadFor(i, 40)]);
    await wal.sync();
    const segments = wal.segments().length;
    fs.failWhen = (call, p) =>
      (call === 'sync' || call === 'syncAsync') && p.includes('wal.meta') ? errno('EIO') : undefined;
    await assert.rejects(wal.truncateFront(30), (e) => isCairnError(e, 'IO_FATAL'));
    assert.equal(fs.count('unlink'), 0);
    await assert.rejects(wal.close());
    assert.ok(segments > 3);
    // The meta bytes did reach the page cache (only the fsync "failed"), so either first is valid.
    const again = await Wal.open({ fs: realFileSystem, dir, segmentBytes: 512 });
    assert.ok(again.firstIndex === 0 || again.firstIndex === 30, `first ${again.firstIndex}`);
    assert.equal(again.nextIndex, 40);
    await again.close();
  });
});
