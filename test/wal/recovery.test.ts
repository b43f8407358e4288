import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { type CairnError, isCairnError } from '../../src/lib/errors.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import type { WalOptions } from '../../src/wal/types.ts';
import { Wal } from '../../src/wal/wal.ts';
import { enc, frameForSegment, payloadFor, tempDir, WrappingFileSystem } from './helpers.ts';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

const SEGMENT = 1024;

function opts(extra: Partial<WalOptions> = {}): WalOptions {
  return { fs: realFileSystem, dir, segmentBytes: SEGMENT, ...extra };
}

async function build(n: number, bytes = 50): Promise<void> {
  const wal = await Wal.open(opts());
  for (let i = 0; i < n; i++) wal.append([payloadFor(i, bytes)]);
  await wal.close();
}

/**
 * As `build`, but the process dies after the last sync instead of closing: no clean-close marker,
 * so the newest records are only as safe as a torn tail allows (nothing vouches for them).
 */
async function buildKilled(n: number, bytes = 50): Promise<void> {
  const fs = new WrappingFileSystem();
  const wal = await Wal.open(opts({ fs }));
  for (let i = 0; i < n; i++) wal.append([payloadFor(i, bytes)]);
  await wal.sync();
  fs.kill();
}

async function openWithWarnings(extra: Partial<WalOptions> = {}) {
  const warnings: { message: string; details: Record<string, unknown> }[] = [];
  const wal = await Wal.open(
    opts({ ...extra, onWarning: (message, details) => warnings.push({ message, details }) }),
  );
  return { wal, warnings };
}

async function expectCorrupt(extra: Partial<WalOptions> = {}): Promise<CairnError> {
  try {
    const wal = await Wal.open(opts(extra));
    await wal.close();
  } catch (err) {
    assert.ok(isCairnError(err, 'WAL_CORRUPT'), `expected WAL_CORRUPT, got ${String(err)}`);
    return err;
  }
  assert.fail('open succeeded on a corrupt log');
}

function segmentFiles(): string[] {
  return nodeFs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.wal'))
    .sort()
    .map((n) => path.join(dir, n));
}

/** A frame that verifies in segment `file` (its format and salt). */
function frameIn(file: string, index: number, payload: Uint8Array, syncedNext = 0): Uint8Array {
  return frameForSegment(nodeFs.readFileSync(file), index, payload, syncedNext);
}

function patch(file: string, offset: number, bytes: Uint8Array): void {
  const fd = nodeFs.openSync(file, 'r+');
  nodeFs.writeSync(fd, bytes, 0, bytes.byteLength, offset);
  nodeFs.closeSync(fd);
}

/** Offset just after the last record of a segment (first zero frame header). */
async function dataEnd(file: string): Promise<number> {
  const wal = await Wal.open(opts({ readOnly: true }));
  const seg = wal.segments().find((s) => s.file === file)!;
  await wal.close();
  return seg.bytes;
}

describe('WAL recovery: torn tail', () => {
  test('a partial frame at the tail is truncated with a warning; later appends survive reopen', async () => {
    await build(30);
    const tail = segmentFiles().at(-1)!;
    const end = await dataEnd(tail);
    const torn = frameIn(tail, 30, payloadFor(30, 50)).subarray(0, 40);
    patch(tail, end, torn);
    const { wal, warnings } = await openWithWarnings();
    assert.equal(wal.nextIndex, 30);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.message, /torn tail/);
    assert.equal(warnings[0]!.details.file, tail);
    assert.equal(warnings[0]!.details.offset, end);
    const tornBytes = nodeFs.readFileSync(tail).subarray(end, end + 40);
    assert.ok(
      tornBytes.every((b) => b === 0),
      'the torn bytes are physically erased',
    );
    wal.append([enc('after repair')]);
    await wal.close();
    const { wal: again, warnings: w2 } = await openWithWarnings();
    assert.equal(again.nextIndex, 31);
    assert.equal(w2.length, 0);
    await again.close();
  });

  test('a frame with a bad checksum in the last record of a killed process is a torn tail', async () => {
    await buildKilled(10);
    const tail = segmentFiles().at(-1)!;
    const wal0 = await Wal.open(opts({ readOnly: true }));
    const lastOffset = wal0.segments().at(-1)!.bytes - (FRAME_HEADER_BYTES + 50);
    await wal0.close();
    patch(tail, lastOffset + 20, new Uint8Array([0xff]));
    const { wal, warnings } = await openWithWarnings();
    assert.equal(wal.nextIndex, 9);
    assert.match(warnings[0]!.message, /checksum/);
    await wal.close();
  });

  test('an intact frame beyond a zero gap written after an fsync covering the gap is corruption (a zeroed header)', async () => {
    await buildKilled(5);
    const tail = segmentFiles().at(-1)!;
    const end = await dataEnd(tail);
    // A whole valid frame beyond a zero gap whose synced index (6) says records 0..5 had been
    // fsynced before it was written: record 5's header was zeroed on synced data. Loud.
    patch(tail, end + 200, frameIn(tail, 9, payloadFor(9, 20), 6));
    const err = await expectCorrupt();
    assert.match(
      err.message,
      /record 9 at offset \d+ after it is intact and was written after records below 6/,
    );
  });

  test('an intact frame beyond a zero gap written before any fsync covered the gap is a torn tail (out-of-order writeback)', async () => {
    await buildKilled(5);
    const tail = segmentFiles().at(-1)!;
    const end = await dataEnd(tail);
    // Synced index 5: record 5 was never covered by an fsync when record 9 was written, so neither
    // was acknowledged; page writeback kept the later page and lost the earlier one. Cut and erase.
    patch(tail, end + 200, frameIn(tail, 9, payloadFor(9, 20), 5));
    const { wal, warnings } = await openWithWarnings();
    assert.equal(wal.nextIndex, 5);
    assert.match(warnings[0]!.message, /non-zero bytes after the end of data \(1 intact later frame/);
    await wal.close();
    const bytes = nodeFs.readFileSync(tail);
    assert.ok(
      bytes.subarray(end).every((b) => b === 0),
      'the unsynced later frame is erased',
    );
  });

  test('non-zero bytes after the end of data that hold no intact frame (torn write) are erased', async () => {
    await buildKilled(5);
    const tail = segmentFiles().at(-1)!;
    const end = await dataEnd(tail);
    // Part of a frame for index 9 beyond a zero gap: from a write that never synced.
    patch(tail, end + 200, frameIn(tail, 9, payloadFor(9, 20)).subarray(0, 30));
    const { wal, warnings } = await openWithWarnings();
    assert.equal(wal.nextIndex, 5);
    assert.match(warnings[0]!.message, /non-zero bytes after the end/);
    await wal.close();
    const bytes = nodeFs.readFileSync(tail);
    assert.ok(bytes.subarray(end).every((b) => b === 0));
    assert.equal(bytes.byteLength, SEGMENT, 'the segment is preallocated again');
  });

  test('a frame with the wrong index at the tail is not accepted', async () => {
    await build(3);
    const tail = segmentFiles().at(-1)!;
    const end = await dataEnd(tail);
    patch(tail, end, frameIn(tail, 7, payloadFor(7, 10)));
    const { wal, warnings } = await openWithWarnings();
    assert.equal(wal.nextIndex, 3);
    assert.match(warnings[0]!.message, /index 7, expected 3/);
    await wal.close();
  });

  test('a last segment whose creation was interrupted (torn header, no data) is removed', async () => {
    await build(30);
    const files = segmentFiles();
    const wal0 = await Wal.open(opts({ readOnly: true }));
    const next = wal0.nextIndex;
    await wal0.close();
    const fresh = path.join(dir, `${String(next).padStart(20, '0')}.wal`);
    nodeFs.writeFileSync(fresh, new Uint8Array(SEGMENT)); // preallocated zeros, header never written
    const { wal, warnings } = await openWithWarnings();
    assert.equal(wal.nextIndex, next);
    assert.ok(warnings.some((w) => /interrupted/.test(w.message)));
    assert.deepEqual(segmentFiles(), files);
    await wal.close();
  });

  test('read-only open reports a torn tail without repairing it; mutations fail', async () => {
    await build(5);
    const tail = segmentFiles().at(-1)!;
    const end = await dataEnd(tail);
    patch(tail, end, new Uint8Array([1, 2, 3]));
    const before = nodeFs.readFileSync(tail);
    const { wal, warnings } = await openWithWarnings({ readOnly: true });
    assert.equal(wal.nextIndex, 5);
    assert.match(warnings[0]!.message, /not repaired/);
    assert.deepEqual(nodeFs.readFileSync(tail), before);
    assert.throws(
      () => wal.append([enc('x')]),
      (e) => isCairnError(e, 'INVALID_ARGUMENT'),
    );
    await assert.rejects(wal.truncateBack(1), (e) => isCairnError(e, 'INVALID_ARGUMENT'));
    await wal.close();
  });

  test('read-only open of a missing directory fails with NOT_FOUND and creates nothing', async () => {
    const missing = path.join(dir, 'nope');
    await assert.rejects(Wal.open({ fs: realFileSystem, dir: missing, readOnly: true }), (e) =>
      isCairnError(e, 'NOT_FOUND'),
    );
    assert.equal(nodeFs.existsSync(missing), false);
  });
});

describe('WAL recovery: corruption is loud', () => {
  test('a bad checksum in a sealed segment fails with the file and offset', async () => {
    await build(60);
    const sealed = segmentFiles()[1]!;
    patch(sealed, 32 + FRAME_HEADER_BYTES + 3, new Uint8Array([0xee])); // payload of its first record
    const err = await expectCorrupt();
    assert.equal(err.details.file, sealed);
    assert.equal(err.details.offset, 32);
    assert.match(err.message, /checksum/);
    assert.match(err.message, new RegExp(path.basename(sealed)));
  });

  test('a bad frame in a sealed segment that is followed by the tail is corruption, not a torn tail', async () => {
    await build(60);
    const files = segmentFiles();
    const sealed = files.at(-2)!;
    const end = await dataEnd(sealed);
    patch(sealed, end - 5, new Uint8Array([1, 2, 3]));
    const err = await expectCorrupt();
    assert.equal(err.details.file, sealed);
  });

  test('a missing middle segment is a gap', async () => {
    await build(80);
    const files = segmentFiles();
    nodeFs.unlinkSync(files[2]!);
    const err = await expectCorrupt();
    assert.match(err.message, /missing/);
    assert.equal(err.details.file, files[1]);
  });

  test('a segment overlapping the previous one (duplicate indices) is corruption', async () => {
    await build(60);
    const files = segmentFiles();
    const second = files[1]!;
    const first = Number(path.basename(second, '.wal'));
    // Rename so the second segment claims to start one index early: header and name disagree.
    const overlapped = path.join(dir, `${String(first - 1).padStart(20, '0')}.wal`);
    nodeFs.renameSync(second, overlapped);
    const err = await expectCorrupt();
    assert.equal(err.details.file, overlapped);
  });

  test('an unparsable header of a sealed segment is corruption', async () => {
    await build(60);
    const sealed = segmentFiles()[0]!;
    patch(sealed, 0, enc('XXXX'));
    const err = await expectCorrupt();
    assert.equal(err.details.file, sealed);
    assert.equal(err.details.offset, 0);
    assert.match(err.message, /header/);
  });

  test('a bad header on a last segment that holds data is corruption, not an interrupted creation', async () => {
    await build(60);
    const tail = segmentFiles().at(-1)!;
    patch(tail, 3, enc('X'));
    const err = await expectCorrupt();
    assert.equal(err.details.file, tail);
  });

  test('a frame holding the wrong index inside a sealed segment is corruption', async () => {
    await build(60);
    const sealed = segmentFiles()[0]!;
    patch(sealed, 32, frameIn(sealed, 999, payloadFor(0, 50)));
    const err = await expectCorrupt();
    assert.match(err.message, /index 999, expected 0/);
  });

  test('meta present but every segment deleted is corruption, not an empty log', async () => {
    await build(60);
    const wal = await Wal.open(opts());
    await wal.truncateFront(10);
    await wal.close();
    for (const f of segmentFiles()) nodeFs.unlinkSync(f);
    const err = await expectCorrupt();
    assert.match(err.message, /no segment file exists/);
  });

  test('segments starting above the durable first index mean lost records', async () => {
    await build(60);
    const wal = await Wal.open(opts());
    await wal.truncateFront(5);
    await wal.close();
    nodeFs.unlinkSync(segmentFiles()[0]!);
    const err = await expectCorrupt();
    assert.match(err.message, /records 5\.\.\d+ are missing/);
  });

  test('verify finds corruption in a live log and names file and offset', async () => {
    const wal = await Wal.open(opts());
    for (let i = 0; i < 40; i++) wal.append([payloadFor(i, 50)]);
    await wal.sync();
    const seg = wal.segments()[0]!;
    assert.equal(wal.verify().records, 40);
    const second = 32 + FRAME_HEADER_BYTES + 50;
    patch(seg.file, second + 20, new Uint8Array([0xab]));
    assert.throws(
      () => wal.verify(),
      (e) => isCairnError(e, 'WAL_CORRUPT') && e.details.file === seg.file && e.details.offset === second,
    );
    assert.throws(
      () => wal.read(1),
      (e) => isCairnError(e, 'WAL_CORRUPT') && e.details.offset === second,
    );
    await wal.close();
  });
});

describe('WAL recovery: interrupted operations (kill at every mutating call)', () => {
  /**
   * Runs `setup` on a real log, then `operation` with the process "killed" at mutating call k
   * (everything before it reached the OS, nothing after), for every k until the operation
   * completes. After each kill the log must reopen to one of the `allowed` states.
   */
  async function everyCrashPoint(
    setup: (wal: Wal) => Promise<void>,
    operation: (wal: Wal) => Promise<void>,
    allowed: (wal: Wal) => string | undefined,
  ): Promise<number> {
    let points = 0;
    for (let k = 0; ; k++) {
      const local = tempDir();
      try {
        const base = await Wal.open({ fs: realFileSystem, dir: local.dir, segmentBytes: 512 });
        await setup(base);
        await base.close();
        const fs = new WrappingFileSystem();
        fs.crashAfterMutations = k;
        let completed = false;
        try {
          const wal = await Wal.open({ fs, dir: local.dir, segmentBytes: 512 });
          await operation(wal);
          completed = true;
          fs.kill();
        } catch (err) {
          assert.ok(fs.crashed, `unexpected failure at crash point ${k}: ${String(err)}`);
        }
        const after = await Wal.open({ fs: realFileSystem, dir: local.dir, segmentBytes: 512 });
        const problem = allowed(after);
        assert.equal(problem, undefined, `crash point ${k}: ${problem}`);
        after.verify();
        await after.close();
        points++;
        if (completed) return points;
      } finally {
        local.cleanup();
      }
    }
  }

  const fill = (n: number) => async (wal: Wal) => {
    for (let i = 0; i < n; i++) wal.append([payloadFor(i, 40)]);
    await wal.sync();
  };
  const contentMatches = (wal: Wal, salt = 0): boolean =>
    [...wal.iterate()].every((r) =>
      Buffer.from(r.payload).equals(Buffer.from(payloadFor(r.index, 40, salt))),
    );

  test('reset: every crash point recovers the old log or the empty log at n', async () => {
    const points = await everyCrashPoint(
      fill(40),
      (wal) => wal.reset(500),
      (wal) => {
        const old = wal.firstIndex === 0 && wal.nextIndex === 40 && contentMatches(wal);
        const empty = wal.firstIndex === 500 && wal.nextIndex === 500;
        return old || empty ? undefined : `got [${wal.firstIndex}, ${wal.nextIndex})`;
      },
    );
    console.log('reset crash points', points);
    assert.ok(points > 3);
  });

  test('truncateFront: every crash point recovers the old or the new first index, never lost data', async () => {
    const points = await everyCrashPoint(
      fill(40),
      (wal) => wal.truncateFront(25),
      (wal) => {
        const okFirst = wal.firstIndex === 0 || wal.firstIndex === 25;
        return okFirst && wal.nextIndex === 40 && contentMatches(wal)
          ? undefined
          : `got [${wal.firstIndex}, ${wal.nextIndex})`;
      },
    );
    console.log('truncateFront crash points', points);
  });

  test('truncateBack: every crash point recovers a prefix between the cut and the old end', async () => {
    const points = await everyCrashPoint(
      fill(40),
      (wal) => wal.truncateBack(7),
      (wal) =>
        wal.firstIndex === 0 && wal.nextIndex >= 7 && wal.nextIndex <= 40 && contentMatches(wal)
          ? undefined
          : `got [${wal.firstIndex}, ${wal.nextIndex})`,
    );
    console.log('truncateBack crash points', points);
  });

  test('appends crossing segment boundaries: every crash point recovers a prefix holding all synced records', async () => {
    const points = await everyCrashPoint(
      fill(5),
      async (wal) => {
        for (let i = 5; i < 40; i++) {
          wal.append([payloadFor(i, 40)]);
          if (i % 4 === 0) await wal.sync();
        }
        await wal.sync();
      },
      (wal) =>
        wal.nextIndex >= 5 && wal.nextIndex <= 40 && contentMatches(wal) ? undefined : `got ${wal.nextIndex}`,
    );
    console.log('append crash points', points);
  });

  test('creating a fresh log: every crash point opens as an empty or the created log', async () => {
    let points = 0;
    for (let k = 0; ; k++) {
      const local = tempDir();
      const walDir = path.join(local.dir, 'log');
      try {
        const fs = new WrappingFileSystem();
        fs.crashAfterMutations = k;
        let completed = false;
        try {
          const wal = await Wal.open({ fs, dir: walDir, initialIndex: 9 });
          completed = true;
          fs.kill();
          void wal;
        } catch {
          assert.ok(fs.crashed);
        }
        const after = await Wal.open({ fs: realFileSystem, dir: walDir, initialIndex: 9 });
        assert.equal(after.nextIndex, 9, `crash point ${k}`);
        await after.close();
        points++;
        if (completed) break;
      } finally {
        local.cleanup();
      }
    }
    console.log('creation crash points', points);
  });
});
