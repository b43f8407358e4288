import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import type { WalOptions } from '../../src/wal/types.ts';
import { Wal } from '../../src/wal/wal.ts';
import { dec, enc, payloadFor, tempDir, WrappingFileSystem } from './helpers.ts';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

const open = (extra: Partial<WalOptions> = {}) =>
  Wal.open({ fs: realFileSystem, dir, segmentBytes: 1024, ...extra });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isCairnError(err) ? err.code : `non-cairn: ${String(err)}`;
  }
  return undefined;
}

async function asyncCodeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return isCairnError(err) ? err.code : `non-cairn: ${String(err)}`;
  }
  return undefined;
}

describe('WAL basics', () => {
  test('fresh log is empty at index 0 and records get consecutive indices', async () => {
    const wal = await open();
    assert.equal(wal.firstIndex, 0);
    assert.equal(wal.nextIndex, 0);
    assert.equal(wal.count, 0);
    assert.equal(wal.append([enc('a'), enc('b')]), 0);
    assert.equal(wal.append([enc('c')]), 2);
    assert.equal(wal.append([]), 3, 'an empty batch appends nothing and returns the next index');
    assert.equal(wal.count, 3);
    assert.equal(dec(wal.read(1)), 'b');
    await wal.close();
  });

  test('initialIndex positions a brand-new log, and is ignored once the log exists', async () => {
    const wal = await open({ initialIndex: 1000 });
    assert.equal(wal.nextIndex, 1000);
    wal.append([enc('x')]);
    await wal.close();
    const again = await open({ initialIndex: 5 });
    assert.equal(again.firstIndex, 1000);
    assert.equal(again.nextIndex, 1001);
    assert.equal(dec(again.read(1000)), 'x');
    await again.close();
  });

  test('buffered records are readable before they are written, and sync makes them durable', async () => {
    const wal = await open();
    wal.append([enc('one'), enc('two')]);
    assert.equal(wal.durableIndex, 0);
    assert.equal(dec(wal.read(0)), 'one');
    const copy = wal.read(0);
    copy[0] = 0;
    assert.equal(dec(wal.read(0)), 'one', 'read returns a copy, not the buffer');
    await wal.sync();
    assert.equal(wal.durableIndex, 2);
    assert.equal(dec(wal.read(1)), 'two');
    await wal.close();
  });

  test('records spanning many segments survive reopen, byte for byte', async () => {
    const wal = await open();
    const sizes: number[] = [];
    for (let i = 0; i < 300; i++) {
      sizes.push((i * 37) % 200);
      wal.append([payloadFor(i, sizes[i]!)]);
      if (i % 17 === 0) await wal.sync();
    }
    await wal.close();
    const again = await open();
    assert.equal(again.nextIndex, 300);
    assert.ok(again.segments().length > 10, `expected many segments, got ${again.segments().length}`);
    const all = [...again.iterate()];
    assert.equal(all.length, 300);
    for (const { index, payload } of all) assert.deepEqual(payload, payloadFor(index, sizes[index]!));
    assert.deepEqual(
      [...again.iterate(100, 103)].map((r) => r.index),
      [100, 101, 102],
    );
    const report = again.verify();
    assert.equal(report.records, 300);
    assert.equal(report.nextIndex, 300);
    const segs = again.segments();
    for (let i = 1; i < segs.length; i++) assert.equal(segs[i]!.firstIndex, segs[i - 1]!.nextIndex);
    assert.ok(segs.slice(0, -1).every((s) => s.sealed));
    assert.equal(segs.at(-1)!.sealed, false);
    await again.close();
  });

  test('a record larger than a segment gets a segment of its own', async () => {
    const wal = await open({ segmentBytes: 256 });
    wal.append([payloadFor(0, 10), payloadFor(1, 1000), payloadFor(2, 10)]);
    await wal.sync();
    const segs = wal.segments();
    const big = segs.find((s) => s.firstIndex === 1)!;
    assert.equal(big.nextIndex, 2, 'the oversized record is alone in its segment');
    await wal.close();
    const again = await open({ segmentBytes: 256 });
    assert.deepEqual(again.read(1), payloadFor(1, 1000));
    assert.deepEqual(again.read(2), payloadFor(2, 10));
    await again.close();
  });

  test('segment files are named by their first index', async () => {
    const wal = await open({ segmentBytes: 128, initialIndex: 7 });
    for (let i = 0; i < 5; i++) wal.append([payloadFor(i, 60)]);
    await wal.sync();
    const names = nodeFs.readdirSync(dir).filter((n) => n.endsWith('.wal'));
    assert.deepEqual(
      names.sort(),
      wal.segments().map((s) => path.basename(s.file)),
    );
    assert.equal(names[0], '00000000000000000007.wal');
    await wal.close();
  });

  test('preallocate=false writes segments without zero padding', async () => {
    const wal = await open({ preallocate: false, segmentBytes: 4096 });
    wal.append([payloadFor(0, 100)]);
    await wal.sync();
    const size = nodeFs.statSync(wal.segments()[0]!.file).size;
    assert.equal(size, 32 + FRAME_HEADER_BYTES + 100);
    await wal.close();
    const pre = tempDir();
    const wal2 = await Wal.open({ fs: realFileSystem, dir: pre.dir, segmentBytes: 4096 });
    assert.equal(nodeFs.statSync(wal2.segments()[0]!.file).size, 4096);
    await wal2.close();
    pre.cleanup();
  });
});

describe('WAL bad input', () => {
  test('records over maxRecordBytes are refused and nothing of the batch is appended', async () => {
    const wal = await open({ maxRecordBytes: 100 });
    wal.append([payloadFor(0, 100)]);
    assert.equal(
      codeOf(() => wal.append([payloadFor(1, 10), payloadFor(2, 101)])),
      'RECORD_TOO_LARGE',
    );
    assert.equal(wal.nextIndex, 1);
    try {
      wal.append([payloadFor(1, 101)]);
    } catch (err) {
      assert.match((err as Error).message, /101 bytes, over the maximum of 100/);
    }
    await wal.close();
  });

  test('append with a wrong expectedIndex fails with OUT_OF_ORDER', async () => {
    const wal = await open();
    assert.equal(wal.append([enc('a')], 0), 0);
    assert.equal(
      codeOf(() => wal.append([enc('b')], 5)),
      'OUT_OF_ORDER',
    );
    assert.equal(
      codeOf(() => wal.append([enc('b')], 0)),
      'OUT_OF_ORDER',
    );
    assert.equal(wal.append([enc('b')], 1), 1);
    await wal.close();
  });

  test('reads and iteration outside [first, next) fail with OUT_OF_RANGE', async () => {
    const wal = await open();
    wal.append([enc('a'), enc('b'), enc('c')]);
    await wal.truncateFront(1);
    assert.equal(
      codeOf(() => wal.read(0)),
      'OUT_OF_RANGE',
    );
    assert.equal(
      codeOf(() => wal.read(3)),
      'OUT_OF_RANGE',
    );
    assert.equal(
      codeOf(() => wal.read(-1)),
      'INVALID_ARGUMENT',
    );
    assert.equal(
      codeOf(() => wal.read(1.5)),
      'INVALID_ARGUMENT',
    );
    assert.equal(
      codeOf(() => [...wal.iterate(0, 2)]),
      'OUT_OF_RANGE',
    );
    assert.equal(
      codeOf(() => [...wal.iterate(1, 4)]),
      'OUT_OF_RANGE',
    );
    assert.equal(
      codeOf(() => [...wal.iterate(2, 1)]),
      'OUT_OF_RANGE',
    );
    await wal.close();
  });

  test('truncations outside [first, next] fail with OUT_OF_RANGE and change nothing', async () => {
    const wal = await open();
    wal.append([enc('a'), enc('b'), enc('c')]);
    await wal.truncateFront(1);
    assert.equal(await asyncCodeOf(wal.truncateFront(0)), 'OUT_OF_RANGE');
    assert.equal(await asyncCodeOf(wal.truncateFront(4)), 'OUT_OF_RANGE');
    assert.equal(await asyncCodeOf(wal.truncateBack(0)), 'OUT_OF_RANGE');
    assert.equal(await asyncCodeOf(wal.truncateBack(4)), 'OUT_OF_RANGE');
    assert.equal(await asyncCodeOf(wal.reset(2)), 'OUT_OF_RANGE', 'reset may not move backwards');
    assert.equal(wal.firstIndex, 1);
    assert.equal(wal.nextIndex, 3);
    await wal.close();
  });

  test('calls after close fail with CLOSED; close is idempotent', async () => {
    const wal = await open();
    wal.append([enc('a')]);
    const first = wal.close();
    assert.equal(wal.close(), first, 'every close call gets the same promise');
    await first;
    await wal.close();
    assert.equal(
      codeOf(() => wal.append([enc('b')])),
      'CLOSED',
    );
    assert.equal(
      codeOf(() => wal.read(0)),
      'CLOSED',
    );
    assert.equal(await asyncCodeOf(wal.sync()), 'CLOSED');
    assert.equal(await asyncCodeOf(wal.truncateBack(0)), 'CLOSED');
    const again = await open();
    assert.equal(again.nextIndex, 1, 'close made the buffered record durable');
    await again.close();
  });

  test('bad options are refused', async () => {
    assert.equal(await asyncCodeOf(open({ segmentBytes: 10 })), 'INVALID_ARGUMENT');
    assert.equal(await asyncCodeOf(open({ maxRecordBytes: 0 })), 'INVALID_ARGUMENT');
    assert.equal(await asyncCodeOf(open({ initialIndex: -1 })), 'INVALID_ARGUMENT');
    assert.equal(
      await asyncCodeOf(open({ durability: { mode: 'interval', intervalMs: 0 } })),
      'INVALID_ARGUMENT',
    );
  });
});

describe('WAL truncation', () => {
  async function filled(n: number, extra: Partial<WalOptions> = {}) {
    const wal = await open(extra);
    for (let i = 0; i < n; i++) wal.append([payloadFor(i, 50)]);
    await wal.sync();
    return wal;
  }

  test('truncateFrontFreesSegment predicts exactly whether truncateFront deletes a file', async () => {
    const wal = await filled(100);
    assert.ok(wal.segments().length > 3);
    for (let newFirst = 1; newFirst <= 100; newFirst += 3) {
      const predicted = wal.truncateFrontFreesSegment(newFirst);
      const before = wal.segments().length;
      await wal.truncateFront(newFirst);
      assert.equal(predicted, wal.segments().length < before, `truncateFront(${newFirst})`);
    }
    await wal.close();
  });

  test('truncateFront deletes whole segments only and the first index survives reopen', async () => {
    const wal = await filled(100);
    const before = wal.segments();
    const cut = before[3]!.firstIndex + 2;
    const sizesBefore = new Map(before.map((s) => [s.file, nodeFs.readFileSync(s.file)]));
    await wal.truncateFront(cut);
    assert.equal(wal.firstIndex, cut);
    const after = wal.segments();
    assert.equal(after[0]!.firstIndex, before[3]!.firstIndex, 'the segment holding the new first stays');
    for (const s of after)
      assert.deepEqual(nodeFs.readFileSync(s.file), sizesBefore.get(s.file), 'retained data untouched');
    for (const s of before.slice(0, 3)) assert.equal(nodeFs.existsSync(s.file), false);
    await wal.close();
    const again = await open();
    assert.equal(again.firstIndex, cut);
    assert.equal(again.nextIndex, 100);
    assert.equal(
      codeOf(() => again.read(cut - 1)),
      'OUT_OF_RANGE',
    );
    assert.deepEqual(again.read(cut), payloadFor(cut, 50));
    await again.close();
  });

  test('truncateFront to nextIndex empties the log and the position survives reopen', async () => {
    const wal = await filled(40);
    await wal.truncateFront(40);
    assert.equal(wal.count, 0);
    await wal.close();
    const again = await open();
    assert.equal(again.firstIndex, 40);
    assert.equal(again.nextIndex, 40);
    assert.equal(again.append([enc('next')]), 40);
    await again.close();
    const third = await open();
    assert.equal(dec(third.read(40)), 'next');
    assert.equal(third.count, 1);
    await third.close();
  });

  test('truncateFront past records that were still buffered keeps the log contiguous', async () => {
    const wal = await open();
    for (let i = 0; i < 10; i++) wal.append([payloadFor(i, 30)]);
    await wal.truncateFront(8);
    wal.append([payloadFor(10, 30)]);
    await wal.close();
    const again = await open();
    assert.equal(again.firstIndex, 8);
    assert.equal(again.nextIndex, 11);
    assert.deepEqual(
      [...again.iterate()].map((r) => r.index),
      [8, 9, 10],
    );
    await again.close();
  });

  test('truncateBack across segments, then appends continue at the cut and survive reopen', async () => {
    const wal = await filled(100);
    await wal.truncateBack(37);
    assert.equal(wal.nextIndex, 37);
    assert.equal(wal.durableIndex, 37);
    assert.ok(wal.segments().every((s) => s.firstIndex <= 37));
    assert.equal(wal.append([enc('new 37')]), 37);
    await wal.sync();
    await wal.close();
    const again = await open();
    assert.equal(again.nextIndex, 38);
    assert.equal(dec(again.read(37)), 'new 37');
    assert.deepEqual(again.read(36), payloadFor(36, 50));
    again.verify();
    await again.close();
  });

  test('truncateBack to a segment boundary and to firstIndex', async () => {
    const wal = await filled(60);
    const boundary = wal.segments()[2]!.firstIndex;
    await wal.truncateBack(boundary);
    assert.equal(wal.nextIndex, boundary);
    await wal.truncateBack(0);
    assert.equal(wal.count, 0);
    await wal.close();
    const again = await open();
    assert.equal(again.nextIndex, 0);
    assert.equal(again.append([enc('z')]), 0);
    await again.close();
  });

  test('truncateBack of buffered records only', async () => {
    const wal = await open();
    wal.append([enc('a'), enc('b'), enc('c')]);
    await wal.truncateBack(1);
    assert.equal(wal.nextIndex, 1);
    wal.append([enc('B')]);
    await wal.close();
    const again = await open();
    assert.deepEqual(
      [...again.iterate()].map((r) => dec(r.payload)),
      ['a', 'B'],
    );
    await again.close();
  });

  test('stale frames after truncateBack never come back (preallocated segment, same sizes)', async () => {
    // Records 5..9 are rewritten with the same sizes at the same offsets. If the cut only moved
    // an in-memory pointer, the old frames 7..9 would still pass their checksums after reopen.
    const wal = await open({ segmentBytes: 64 * 1024 });
    for (let i = 0; i < 10; i++) wal.append([payloadFor(i, 40, 1)]);
    await wal.sync();
    await wal.truncateBack(5);
    await wal.close();
    const reopened = await open({ segmentBytes: 64 * 1024 });
    assert.equal(reopened.nextIndex, 5, 'truncated records must not reappear');
    reopened.append([payloadFor(5, 40, 2), payloadFor(6, 40, 2)]);
    await reopened.sync();
    await reopened.close();
    const third = await open({ segmentBytes: 64 * 1024 });
    assert.equal(third.nextIndex, 7);
    assert.deepEqual(third.read(6), payloadFor(6, 40, 2));
    await third.close();
  });

  test('reset empties the log at a higher index; position survives reopen', async () => {
    const wal = await filled(50);
    await wal.reset(1_000_000);
    assert.equal(wal.firstIndex, 1_000_000);
    assert.equal(wal.count, 0);
    assert.equal(wal.segments().length, 1);
    await wal.close();
    const files = nodeFs.readdirSync(dir).filter((n) => n.endsWith('.wal'));
    assert.deepEqual(files, ['00000000000001000000.wal']);
    const again = await open();
    assert.equal(again.nextIndex, 1_000_000);
    assert.equal(again.append([enc('after reset')]), 1_000_000);
    await again.close();
  });

  test('reset with no argument keeps the next index', async () => {
    const wal = await filled(10);
    wal.append([enc('buffered')]);
    await wal.reset();
    assert.equal(wal.firstIndex, 11);
    assert.equal(wal.nextIndex, 11);
    await wal.reset();
    await wal.close();
    const again = await open();
    assert.equal(again.firstIndex, 11);
    assert.equal(again.count, 0);
    await again.close();
  });
});

describe('WAL durability modes', () => {
  test('mode none: sync writes to the OS without fsync, data is readable after reopen', async () => {
    const fs = new WrappingFileSystem();
    const wal = await Wal.open({ fs, dir, segmentBytes: 1 << 20, durability: { mode: 'none' } });
    const fsyncsAfterOpen = fs.fsyncs();
    for (let i = 0; i < 20; i++) wal.append([payloadFor(i, 100)]);
    await wal.sync();
    assert.equal(fs.fsyncs(), fsyncsAfterOpen, 'no fsync in mode none');
    assert.ok(fs.count('writev') > 0);
    await wal.close();
    assert.equal(fs.fsyncs(), fsyncsAfterOpen, 'close does not fsync in mode none');
    const again = await open({ segmentBytes: 1 << 20 });
    assert.equal(again.nextIndex, 20);
    await again.close();
  });

  test('mode interval: records become durable without anyone calling sync', async () => {
    const fs = new WrappingFileSystem();
    const wal = await Wal.open({ fs, dir, durability: { mode: 'interval', intervalMs: 5 } });
    wal.append([enc('a'), enc('b')]);
    const fsyncsBefore = fs.fsyncs();
    // Poll (no timing assertion): fails only if the background sync never happens.
    for (let i = 0; i < 2000 && wal.durableIndex < 2; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(wal.durableIndex, 2);
    assert.ok(fs.fsyncs() > fsyncsBefore);
    await wal.close();
  });

  test('sync on an idle log resolves without an fsync', async () => {
    const fs = new WrappingFileSystem();
    const wal = await Wal.open({ fs, dir });
    wal.append([enc('a')]);
    await wal.sync();
    const n = fs.fsyncs();
    await wal.sync();
    await wal.sync();
    assert.equal(fs.fsyncs(), n);
    await wal.close();
  });
});

describe('WAL group commit and the event loop', () => {
  // Rounds of a log whose fsync runs on the main thread (or is skipped) resolve entirely inside the
  // microtask queue; a caller looping `append; await sync()` must still let timers and I/O run.
  for (const durability of [{ mode: 'on-request' }, { mode: 'none' }] as const) {
    test(`a tight append/sync loop does not starve timers (durability ${durability.mode})`, async () => {
      const wal = await open({ segmentBytes: 1 << 20, durability, syncOffThread: false });
      let timerFired = false;
      const timer = setTimeout(() => {
        timerFired = true;
      }, 0);
      let rounds = 0;
      // Without a yield this loop would never see the timer: it stops only when the timer ran.
      while (!timerFired && rounds < 10_000) {
        wal.append([enc(`r${rounds}`)]);
        await wal.sync();
        rounds++;
      }
      clearTimeout(timer);
      assert.equal(timerFired, true, `timer never ran during ${rounds} append/sync rounds`);
      await wal.close();
    });
  }

  test('a log syncing on the thread pool does not take an event-loop detour per round', async () => {
    const wal = await open({ segmentBytes: 1 << 20, syncOffThread: true });
    // Every round waits for a thread-pool fsync, which is itself an event-loop turn; no round should
    // additionally be deferred with setImmediate. Count setImmediate calls made by the log.
    const original = globalThis.setImmediate;
    let immediates = 0;
    globalThis.setImmediate = ((...args: Parameters<typeof setImmediate>) => {
      immediates++;
      return original(...args);
    }) as typeof setImmediate;
    try {
      for (let i = 0; i < 20; i++) {
        wal.append([enc(`r${i}`)]);
        await wal.sync();
      }
    } finally {
      globalThis.setImmediate = original;
    }
    assert.equal(immediates, 0);
    await wal.close();
  });
});

describe('WAL front truncation off the main thread', () => {
  test('truncateFront deletes segments with unlinkAsync; a crash before they go leaves garbage recovery removes', async () => {
    const sim = new SimulatedFileSystem({ seed: 7 });
    const simDir = '/wal';
    const wal = await Wal.open({ fs: sim, dir: simDir, segmentBytes: 1024 });
    for (let i = 0; i < 100; i++) wal.append([payloadFor(i, 50)]);
    await wal.sync();
    const segmentsBefore = wal.segments().length;
    let asyncUnlinks = 0;
    let image: SimulatedFileSystem | undefined;
    const original = sim.unlinkAsync.bind(sim);
    sim.unlinkAsync = (p: string) => {
      // Power cut once the meta is durable, before the background unlinks ran: the meta alone decides.
      image ??= sim.crashImage(DROP_ALL);
      asyncUnlinks++;
      return original(p);
    };
    const syncUnlinksBefore = sim.opCounts.unlink;
    const pending = wal.truncateFront(60);
    // The log already starts at 60; the meta write and the files go in the background.
    assert.equal(wal.firstIndex, 60);
    await pending;
    assert.ok(image !== undefined);
    assert.ok(asyncUnlinks > 0 && asyncUnlinks === segmentsBefore - wal.segments().length);
    assert.equal(
      sim.opCounts.unlink - syncUnlinksBefore,
      asyncUnlinks,
      'every deletion went through unlinkAsync',
    );
    await wal.close();
    const recovered = await Wal.open({ fs: image!, dir: simDir, segmentBytes: 1024 });
    assert.equal(recovered.firstIndex, 60);
    assert.equal(recovered.nextIndex, 100);
    assert.equal(
      recovered.segments().length,
      segmentsBefore - asyncUnlinks,
      'leftover segments deleted at open',
    );
    for (const { index, payload } of recovered.iterate())
      assert.ok(bytesEqual(payload, payloadFor(index, 50)));
    await recovered.close();
  });
});
