import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { encodeSlotImage, openAbFile } from '../../src/io/abFile.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
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
    assert.equal(again.count('syncDir'), 0, 'no directory fsync when both slots exist');
  });

  test('writes alternate slots with one fsync each and no directory fsync; the newest wins', () => {
    const fs = new WrappingFileSystem();
    const { file } = openAbFile(fs, dir, 'anchor');
    const dirSyncs = fs.count('syncDir');
    for (let i = 1; i <= 5; i++) {
      const before = fs.fsyncs();
      file.write(enc(`state ${i}`));
      assert.equal(fs.fsyncs() - before, 1);
      assert.equal(file.seq, i);
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
