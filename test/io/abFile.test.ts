import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { encodeSlotImage, openAbFile } from '../../src/io/abFile.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { DROP_ALL, SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { dec, enc, errno, tempDir, WrappingFileSystem } from '../wal/helpers.ts';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir('cairn-ab-')));
afterEach(() => cleanup());

const slotA = () => path.join(dir, 'anchor.a');
const slotB = () => path.join(dir, 'anchor.b');
const load = () => openAbFile(realFileSystem, dir, 'anchor');

describe('A/B file: writing', () => {
  test('a fresh store loads empty and creates both slot files with one directory fsync', () => {
    const fs = new WrappingFileSystem();
    const { file, loaded } = openAbFile(fs, dir, 'anchor');
    assert.equal(loaded.payload, undefined);
    assert.equal(loaded.seq, 0);
    assert.deepEqual(loaded.warnings, []);
    assert.equal(nodeFs.statSync(slotA()).size, 0);
    assert.equal(nodeFs.statSync(slotB()).size, 0);
    assert.equal(fs.count('syncDir'), 1);
    file.close();
    const again = new WrappingFileSystem();
    openAbFile(again, dir, 'anchor').file.close();
    // Issue #9 item 4: slots a killed process created may exist only in the page cache.
    assert.equal(again.count('syncDir'), 1, 'the directory is fsynced at every open, slots present or not');
  });

  test('the first image goes to both slots; later writes alternate slots with one fsync each and no directory fsync; the newest wins', () => {
    const fs = new WrappingFileSystem();
    const { file } = openAbFile(fs, dir, 'anchor');
    const dirSyncs = fs.count('syncDir');
    for (let i = 1; i <= 5; i++) {
      const before = fs.fsyncs();
      file.write(enc(`state ${i}`));
      assert.equal(fs.fsyncs() - before, i === 1 ? 2 : 1);
      assert.equal(file.seq, i);
      if (i === 1)
        assert.equal(dec(nodeFs.readFileSync(slotB()).subarray(16)), 'state 1', 'first image in both');
    }
    assert.equal(fs.count('syncDir'), dirSyncs);
    assert.equal(dec(nodeFs.readFileSync(slotA()).subarray(16)), 'state 5');
    assert.equal(dec(nodeFs.readFileSync(slotB()).subarray(16)), 'state 4');
    const { loaded } = load();
    assert.equal(dec(loaded.payload!), 'state 5');
    assert.equal(loaded.seq, 5);
  });

  test('a shorter image overwriting a longer one leaves no trailing bytes', () => {
    const { file } = load();
    file.write(new Uint8Array(100).fill(7));
    file.write(enc('b'));
    file.write(enc('short'));
    assert.equal(nodeFs.statSync(slotA()).size, 16 + 5);
    assert.equal(dec(load().loaded.payload!), 'short');
  });

  test('after reopen the next write goes to the losing slot, never over the winner', () => {
    const first = load().file;
    first.write(enc('one'));
    first.write(enc('two')); // B holds the winner
    const winner = nodeFs.readFileSync(slotB());
    const { file, loaded } = load();
    assert.equal(loaded.seq, 2);
    file.write(enc('three'));
    assert.deepEqual(nodeFs.readFileSync(slotB()), winner);
    assert.equal(dec(load().loaded.payload!), 'three');
  });

  test('payloads over the maximum are refused with RECORD_TOO_LARGE', () => {
    const { file } = openAbFile(realFileSystem, dir, 'anchor', { maxPayloadBytes: 8 });
    assert.throws(
      () => file.write(new Uint8Array(9)),
      (e) => isCairnError(e, 'RECORD_TOO_LARGE'),
    );
    assert.equal(file.seq, 0);
  });

  test('write after close fails with CLOSED', () => {
    const { file } = load();
    file.close();
    assert.throws(
      () => file.write(enc('x')),
      (e) => isCairnError(e, 'CLOSED'),
    );
  });

  test('read-only open creates nothing and refuses writes', () => {
    const { file, loaded } = openAbFile(realFileSystem, dir, 'anchor', { readOnly: true });
    assert.equal(loaded.payload, undefined);
    assert.equal(nodeFs.existsSync(slotA()), false);
    assert.throws(
      () => file.write(enc('x')),
      (e) => isCairnError(e, 'INVALID_ARGUMENT'),
    );
  });
});

describe('A/B file: failures', () => {
  test('a failed write does not advance seq, leaves the winner untouched, and the next write retries the same slot', () => {
    const fs = new WrappingFileSystem();
    const { file } = openAbFile(fs, dir, 'anchor');
    file.write(enc('good 1'));
    const winner = nodeFs.readFileSync(slotA());
    fs.failWhen = (call) => (call === 'writev' ? errno('ENOSPC') : undefined);
    assert.throws(
      () => file.write(enc('lost 2')),
      (e) => isCairnError(e, 'IO_FATAL') && /ENOSPC/.test(String(e)),
    );
    assert.equal(file.seq, 1);
    assert.deepEqual(nodeFs.readFileSync(slotA()), winner);
    fs.failWhen = undefined;
    file.write(enc('good 2'));
    assert.equal(file.seq, 2);
    assert.deepEqual(nodeFs.readFileSync(slotA()), winner, 'the retry went to B again');
    const { loaded } = load();
    assert.equal(dec(loaded.payload!), 'good 2');
    assert.equal(loaded.seq, 2);
  });

  test('a failed fsync latches: seq unchanged, winner untouched, every later write throws the same error', () => {
    const fs = new WrappingFileSystem();
    const { file } = openAbFile(fs, dir, 'anchor');
    file.write(enc('good 1'));
    const winner = nodeFs.readFileSync(slotA());
    fs.failWhen = (call) => (call === 'sync' ? errno('EIO') : undefined);
    let latched: unknown;
    assert.throws(
      () => file.write(enc('maybe 2')),
      (e) => {
        latched = e;
        return isCairnError(e, 'IO_FATAL');
      },
    );
    fs.failWhen = undefined;
    assert.equal(file.seq, 1);
    assert.deepEqual(nodeFs.readFileSync(slotA()), winner);
    const syncs = fs.fsyncs();
    assert.throws(
      () => file.write(enc('again')),
      (e) => e === latched,
    );
    assert.equal(fs.fsyncs(), syncs, 'no fsync retry');
  });

  test('a torn write into the target slot falls back to the previous copy with a warning', () => {
    const { file } = load();
    file.write(enc('one'));
    file.write(enc('two'));
    const image = encodeSlotImage(3, enc('three, torn'));
    nodeFs.writeFileSync(slotA(), image.subarray(0, 20));
    const { loaded } = load();
    assert.equal(dec(loaded.payload!), 'two');
    assert.equal(loaded.seq, 2);
    assert.equal(loaded.warnings.length, 1);
    assert.match(loaded.warnings[0]!, /anchor\.a is corrupt/);
  });
});

describe('A/B file: load rules', () => {
  const writeSlot = (file: string, seq: number, text: string) =>
    nodeFs.writeFileSync(file, encodeSlotImage(seq, enc(text)));
  const corruptSlot = (file: string) => {
    const image = encodeSlotImage(9, enc('garbled'));
    image[18] = image[18]! ^ 0xff;
    nodeFs.writeFileSync(file, image);
  };

  test('both valid: the higher seq wins, in either slot', () => {
    writeSlot(slotA(), 4, 'four');
    writeSlot(slotB(), 7, 'seven');
    assert.equal(dec(load().loaded.payload!), 'seven');
    writeSlot(slotA(), 8, 'eight');
    const { loaded } = load();
    assert.equal(dec(loaded.payload!), 'eight');
    assert.equal(loaded.seq, 8);
    assert.deepEqual(loaded.warnings, []);
  });

  test('equal seq with identical payloads is accepted', () => {
    writeSlot(slotA(), 3, 'same');
    writeSlot(slotB(), 3, 'same');
    const { loaded, file } = load();
    assert.equal(dec(loaded.payload!), 'same');
    file.write(enc('next'));
    assert.equal(file.seq, 4);
  });

  test('equal seq with different payloads fails with AB_CORRUPT', () => {
    writeSlot(slotA(), 3, 'left');
    writeSlot(slotB(), 3, 'right');
    assert.throws(load, (e) => isCairnError(e, 'AB_CORRUPT') && /sequence 3/.test(String(e)));
  });

  test('one corrupt, the other valid: the valid one with a warning (both orders)', () => {
    corruptSlot(slotA());
    writeSlot(slotB(), 2, 'b ok');
    let r = load().loaded;
    assert.equal(dec(r.payload!), 'b ok');
    assert.match(r.warnings[0]!, /anchor\.a is corrupt/);
    writeSlot(slotA(), 5, 'a ok');
    corruptSlot(slotB());
    r = load().loaded;
    assert.equal(dec(r.payload!), 'a ok');
    assert.match(r.warnings[0]!, /anchor\.b is corrupt/);
  });

  test('one valid, the other empty: the valid one, no warning', () => {
    writeSlot(slotA(), 1, 'first');
    nodeFs.writeFileSync(slotB(), new Uint8Array(0));
    const { loaded } = load();
    assert.equal(dec(loaded.payload!), 'first');
    assert.deepEqual(loaded.warnings, []);
  });

  test('a torn first write (one corrupt, the other empty or absent) opens EMPTY with a loud warning', () => {
    for (const otherExists of [true, false]) {
      nodeFs.rmSync(slotA(), { force: true });
      nodeFs.rmSync(slotB(), { force: true });
      nodeFs.writeFileSync(slotA(), encodeSlotImage(1, enc('first anchor')).subarray(0, 11));
      if (otherExists) nodeFs.writeFileSync(slotB(), new Uint8Array(0));
      const { loaded, file } = load();
      assert.equal(loaded.payload, undefined);
      assert.equal(loaded.seq, 0);
      assert.match(loaded.warnings[0]!, /torn first write.*EMPTY/);
      file.write(enc('retry'));
      assert.equal(dec(load().loaded.payload!), 'retry');
    }
  });

  test('both corrupt fails with AB_CORRUPT naming both files', () => {
    corruptSlot(slotA());
    nodeFs.writeFileSync(slotB(), new Uint8Array([1, 2, 3]));
    assert.throws(load, (e) => {
      assert.ok(isCairnError(e, 'AB_CORRUPT'));
      assert.match(e.message, /anchor\.a \(checksum mismatch\)/);
      assert.match(e.message, /anchor\.b \(3 bytes/);
      return true;
    });
  });

  test('seq 0, a length field that disagrees with the size, and an oversized file are corrupt', () => {
    writeSlot(slotB(), 2, 'fallback');
    for (const bad of [
      encodeSlotImage(0, enc('zero seq')),
      Buffer.concat([encodeSlotImage(5, enc('x')), Buffer.from([0])]),
    ]) {
      nodeFs.writeFileSync(slotA(), bad);
      const { loaded } = load();
      assert.equal(dec(loaded.payload!), 'fallback');
      assert.equal(loaded.warnings.length, 1);
    }
    nodeFs.writeFileSync(slotA(), encodeSlotImage(5, new Uint8Array(100)));
    const { loaded } = openAbFile(realFileSystem, dir, 'anchor', { maxPayloadBytes: 50 });
    assert.equal(dec(loaded.payload!), 'fallback');
    assert.match(loaded.warnings[0]!, /larger than the maximum/);
  });
});

describe('A/B file: writeAsync (fsync on the thread pool)', () => {
  const SIM_DIR = '/ab';
  function simSetup(seed = 21) {
    const fs = new SimulatedFileSystem({ seed, maxSyncAsyncHops: 3 });
    fs.mkdir(SIM_DIR);
    fs.syncDir('/');
    return { fs, file: openAbFile(fs, SIM_DIR, 'x').file };
  }
  const loadAfterPowerCut = (fs: SimulatedFileSystem) =>
    openAbFile(fs.crashImage(DROP_ALL), SIM_DIR, 'x').loaded;
  const rejection = (promise: Promise<unknown>) =>
    promise.then(
      () => assert.fail('expected a rejection'),
      (e: unknown) => e,
    );

  test('alternates slots with write, advances seq only once its fsync returned, and is durable on resolve', async () => {
    const { fs, file } = simSetup();
    await file.writeAsync(enc('one')); // seq 1 → slot a
    file.write(enc('two')); // seq 2 → slot b
    const pending = file.writeAsync(enc('three')); // seq 3 → slot a
    // The image is written (reads see it) but not acknowledged: seq and the durable state lag.
    assert.equal(file.seq, 2);
    assert.equal(dec(fs.readFileBytes(`${SIM_DIR}/x.a`).subarray(16)), 'three');
    assert.equal(loadAfterPowerCut(fs).seq, 2, 'before the fsync returned, a power cut keeps seq 2');
    await pending;
    assert.equal(file.seq, 3);
    const loaded = loadAfterPowerCut(fs);
    assert.equal(loaded.seq, 3);
    assert.equal(dec(loaded.payload!), 'three');
    assert.deepEqual(loaded.warnings, []);
    assert.equal(
      dec(fs.readFileBytes(`${SIM_DIR}/x.b`).subarray(16)),
      'two',
      'the previous winner is intact',
    );
  });

  test('always truncates the slot to the image length, even when the cached size already matches', async () => {
    const { fs, file } = simSetup();
    const before = fs.opCounts.truncate;
    for (let i = 0; i < 4; i++) await file.writeAsync(enc('same size'));
    // The first image is written to both slots.
    assert.equal(fs.opCounts.truncate - before, 5);
    assert.equal(fs.opCounts.syncAsync, 5);
    assert.equal(fs.opCounts.sync, 0, 'writeAsync never fsyncs on the main thread');
  });

  test('overlapping calls are refused with CONFLICT while a fsync is in flight, without touching the disk or latching', async () => {
    const { fs, file } = simSetup();
    await file.writeAsync(enc('one'));
    const first = file.writeAsync(enc('two')); // → slot b, fsync in flight
    const inFlightImage = fs.readFileBytes(`${SIM_DIR}/x.b`);
    const writesBefore = fs.opCounts.writev;
    const second = await rejection(file.writeAsync(enc('overlapping')));
    assert.ok(isCairnError(second, 'CONFLICT'), String(second));
    assert.match((second as Error).message, /a write \(seq 2\) is still waiting for its fsync/);
    assert.throws(
      () => file.write(enc('overlapping sync')),
      (e) => isCairnError(e, 'CONFLICT'),
    );
    assert.equal(fs.opCounts.writev, writesBefore, 'a refused call writes nothing');
    assert.deepEqual(fs.readFileBytes(`${SIM_DIR}/x.b`), inFlightImage);
    await first;
    assert.equal(file.seq, 2);
    // Not latched: the next call proceeds normally.
    await file.writeAsync(enc('three'));
    assert.equal(file.seq, 3);
    assert.equal(dec(loadAfterPowerCut(fs).payload!), 'three');
  });

  test('a failed fsync latches: seq unchanged, the winner intact, every later call fails with the same error and no fsync is retried', async () => {
    const { fs, file } = simSetup();
    await file.writeAsync(enc('one'));
    file.write(enc('two')); // winner in slot b
    const winner = fs.readFileBytes(`${SIM_DIR}/x.b`);
    const fault = fs.injectFault({ op: 'syncAsync', nth: 1, error: 'EIO', pathIncludes: '/ab/x.' });
    const err = await rejection(file.writeAsync(enc('maybe three')));
    assert.equal(fault.firedCount, 1);
    assert.ok(isCairnError(err, 'IO_FATAL') && /EIO/.test(err.message), String(err));
    assert.equal((err as { details: { file?: string } }).details.file, `${SIM_DIR}/x.a`);
    assert.equal(file.seq, 2);
    assert.deepEqual(fs.readFileBytes(`${SIM_DIR}/x.b`), winner);
    const syncsAfterFailure = fs.opCounts.syncAsync + fs.opCounts.sync;
    assert.equal(await rejection(file.writeAsync(enc('again'))), err);
    assert.throws(
      () => file.write(enc('again')),
      (e) => e === err,
    );
    assert.equal(fs.opCounts.syncAsync + fs.opCounts.sync, syncsAfterFailure, 'no fsync retry');
    const loaded = loadAfterPowerCut(fs);
    assert.equal(loaded.seq, 2);
    assert.equal(dec(loaded.payload!), 'two');
  });

  test('a failed write rejects without advancing seq or latching; the next call rewrites the same slot', async () => {
    const { fs, file } = simSetup();
    await file.writeAsync(enc('one')); // slot a
    const winner = fs.readFileBytes(`${SIM_DIR}/x.a`);
    const fault = fs.injectFault({ op: 'writev', nth: 1, error: 'ENOSPC', pathIncludes: '/ab/x.' });
    const err = await rejection(file.writeAsync(enc('lost two')));
    assert.equal(fault.firedCount, 1);
    assert.ok(isCairnError(err, 'IO_FATAL') && /ENOSPC/.test(err.message), String(err));
    assert.equal(file.seq, 1);
    assert.equal(fs.opCounts.syncAsync, 2, 'no fsync after a failed write (the first image took two)');
    // Nothing is left in flight: both a sync and an async write proceed.
    file.write(enc('two'));
    assert.equal(file.seq, 2);
    assert.deepEqual(fs.readFileBytes(`${SIM_DIR}/x.a`), winner, 'the retry went to slot b again');
    await file.writeAsync(enc('three'));
    assert.equal(dec(loadAfterPowerCut(fs).payload!), 'three');
  });

  test('after a failed fsync and a reopen, a writeAsync whose image has the cached length still survives a power cut', async () => {
    const { fs, file } = simSetup();
    await file.writeAsync(new Uint8Array(500).fill(1)); // seq 1 → slot a
    await file.writeAsync(new Uint8Array(10).fill(2)); // seq 2 → slot b
    fs.injectFault({ op: 'syncAsync', nth: 1, error: 'EIO' });
    await rejection(file.writeAsync(new Uint8Array(100).fill(3))); // seq 3 → slot a: fsync fails
    file.close();
    // The page cache shows seq 3 in slot a (116 bytes); the disk still holds the 516-byte seq 1.
    const reopened = openAbFile(fs, SIM_DIR, 'x').file;
    await reopened.writeAsync(new Uint8Array(20).fill(4)); // → slot b
    await reopened.writeAsync(new Uint8Array(100).fill(5)); // → slot a, same length as the cached image
    const acked = reopened.seq;
    const loaded = loadAfterPowerCut(fs);
    assert.equal(loaded.seq, acked, `acknowledged seq ${acked}, a power cut left seq ${loaded.seq}`);
    assert.deepEqual(loaded.payload, new Uint8Array(100).fill(5));
  });

  test('refused calls reject (never throw synchronously): closed, read-only, too large', async () => {
    const { fs, file } = simSetup();
    file.close();
    const closed = file.writeAsync(enc('x'));
    assert.ok(isCairnError(await rejection(closed), 'CLOSED'));
    const readOnly = openAbFile(fs, SIM_DIR, 'x', { readOnly: true }).file;
    assert.ok(isCairnError(await rejection(readOnly.writeAsync(enc('x'))), 'INVALID_ARGUMENT'));
    const small = openAbFile(fs, SIM_DIR, 'x', { maxPayloadBytes: 8 }).file;
    const tooLarge = await rejection(small.writeAsync(new Uint8Array(9)));
    assert.ok(
      isCairnError(tooLarge, 'RECORD_TOO_LARGE') && /9 bytes exceeds the maximum 8/.test(tooLarge.message),
    );
    assert.equal(small.seq, 0);
    await small.writeAsync(new Uint8Array(8));
    assert.equal(small.seq, 1, 'a refused call does not latch');
  });
});
