import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { mkdirDurable, readWholeFile, writeFully } from '../../src/io/fileSystem.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { errnoCode } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import {
  DROP_ALL,
  KEEP_ALL,
  PAGE_SUBSET,
  PAGES_GARBLED,
  PAGES_ZEROED,
  PREFIX_ONLY,
  SimulatedFileSystem,
} from '../../src/testing/simulatedFileSystem.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

function freshFs(seed = 1): SimulatedFileSystem {
  const fs = new SimulatedFileSystem({ seed });
  fs.mkdir('/d');
  fs.syncDir('/');
  return fs;
}

function writeFile(fs: SimulatedFileSystem, p: string, text: string, opts: { sync?: boolean } = {}): void {
  const h = fs.open(p, { create: true });
  writeFully(h, [enc(text)], h.size());
  if (opts.sync) h.sync();
  h.close();
}

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => errnoCode(err) === code, `expected ${code}`);
}

/** Every file with its bytes, for comparing images. */
function snapshot(fs: SimulatedFileSystem): string {
  return fs
    .listFiles()
    .map((p) => `${p}=${Buffer.from(fs.readFileBytes(p)).toString('hex')}`)
    .join('\n');
}

describe('SimulatedFileSystem: durability model', () => {
  test('unsynced data is lost and synced data kept under drop-all', () => {
    const fs = freshFs();
    writeFile(fs, '/d/a', 'hello', { sync: true });
    fs.syncDir('/d');
    const h = fs.open('/d/a');
    writeFully(h, [enc(' world')], 5);
    assert.equal(dec(fs.readFileBytes('/d/a')), 'hello world', 'reads see unsynced data');
    assert.equal(dec(fs.crashImage(DROP_ALL).readFileBytes('/d/a')), 'hello');
    assert.equal(dec(fs.crashImage(KEEP_ALL).readFileBytes('/d/a')), 'hello world');
    h.sync();
    assert.equal(dec(fs.crashImage(DROP_ALL).readFileBytes('/d/a')), 'hello world');
  });

  test('a synced new file is lost without syncDir of its parent (strict POSIX)', () => {
    const fs = freshFs();
    writeFile(fs, '/d/new', 'data', { sync: true });
    assert.equal(fs.crashImage(DROP_ALL).exists('/d/new'), false);
    assert.equal(dec(fs.crashImage(KEEP_ALL).readFileBytes('/d/new')), 'data');
    fs.syncDir('/d');
    assert.equal(dec(fs.crashImage(DROP_ALL).readFileBytes('/d/new')), 'data');
  });

  test('a durable entry of an unsynced file comes back empty', () => {
    const fs = freshFs();
    writeFile(fs, '/d/f', 'payload');
    fs.syncDir('/d');
    const image = fs.crashImage(DROP_ALL);
    assert.equal(image.exists('/d/f'), true);
    assert.equal(image.readFileBytes('/d/f').byteLength, 0);
  });

  test('mkdir needs syncDir of the parent; mkdirDurable provides it', () => {
    const fs = new SimulatedFileSystem({ seed: 2 });
    fs.mkdir('/x/y/z');
    assert.equal(fs.crashImage(DROP_ALL).exists('/x'), false);
    assert.equal(fs.crashImage(KEEP_ALL).exists('/x/y/z'), true);
    const fs2 = new SimulatedFileSystem({ seed: 2 });
    assert.equal(mkdirDurable(fs2, '/x/y/z', path.posix), true);
    assert.equal(fs2.crashImage(DROP_ALL).stat('/x/y/z').isDirectory, true);
    assert.equal(mkdirDurable(fs2, '/x/y/z', path.posix), false);
  });

  test('rename is durable only after syncDir; replacement keeps the old target until then', () => {
    const fs = freshFs();
    writeFile(fs, '/d/target', 'old', { sync: true });
    fs.syncDir('/d');
    writeFile(fs, '/d/tmp', 'new', { sync: true });
    fs.rename('/d/tmp', '/d/target');
    assert.equal(dec(fs.readFileBytes('/d/target')), 'new');
    assert.equal(fs.exists('/d/tmp'), false);
    const dropped = fs.crashImage(DROP_ALL);
    assert.equal(dec(dropped.readFileBytes('/d/target')), 'old');
    assert.equal(dropped.exists('/d/tmp'), false, 'the create of tmp was never durable either');
    const kept = fs.crashImage(KEEP_ALL);
    assert.equal(dec(kept.readFileBytes('/d/target')), 'new');
    assert.equal(kept.exists('/d/tmp'), false);
    fs.syncDir('/d');
    assert.equal(dec(fs.crashImage(DROP_ALL).readFileBytes('/d/target')), 'new');
  });

  test('rename across directories needs syncDir of both', () => {
    const fs = freshFs();
    fs.mkdir('/e');
    fs.syncDir('/');
    writeFile(fs, '/d/f', 'x', { sync: true });
    fs.syncDir('/d');
    fs.rename('/d/f', '/e/f');
    fs.syncDir('/e');
    const image = fs.crashImage(DROP_ALL);
    assert.equal(image.exists('/e/f'), true);
    assert.equal(image.exists('/d/f'), true, 'the unlink from /d is not durable yet');
    fs.syncDir('/d');
    assert.equal(fs.crashImage(DROP_ALL).exists('/d/f'), false);
  });

  test('unlink without syncDir can resurrect the file', () => {
    const fs = freshFs();
    writeFile(fs, '/d/f', 'keep me', { sync: true });
    fs.syncDir('/d');
    fs.unlink('/d/f');
    assert.equal(fs.exists('/d/f'), false);
    assert.equal(dec(fs.crashImage(DROP_ALL).readFileBytes('/d/f')), 'keep me');
    assert.equal(fs.crashImage(KEEP_ALL).exists('/d/f'), false);
    fs.syncDir('/d');
    assert.equal(fs.crashImage(DROP_ALL).exists('/d/f'), false);
  });

  test('open handles survive rename and unlink (inode semantics)', () => {
    const fs = freshFs();
    const h = fs.open('/d/f', { create: true });
    writeFully(h, [enc('abc')], 0);
    fs.rename('/d/f', '/d/g');
    writeFully(h, [enc('def')], 3);
    assert.equal(dec(fs.readFileBytes('/d/g')), 'abcdef');
    fs.unlink('/d/g');
    writeFully(h, [enc('!')], 6);
    const out = new Uint8Array(7);
    assert.equal(h.read(out, 0, 7, 0), 7);
    assert.equal(dec(out), 'abcdef!');
    h.close();
  });

  test('truncate and allocate are unsynced operations too', () => {
    const fs = freshFs();
    writeFile(fs, '/d/f', '0123456789', { sync: true });
    fs.syncDir('/d');
    const h = fs.open('/d/f');
    h.truncate(4);
    assert.equal(h.size(), 4);
    assert.equal(fs.crashImage(DROP_ALL).stat('/d/f').size, 10);
    h.sync();
    assert.equal(fs.crashImage(DROP_ALL).stat('/d/f').size, 4);
    h.allocate(100);
    assert.equal(h.size(), 100);
    assert.equal(fs.crashImage(DROP_ALL).stat('/d/f').size, 4);
    h.sync();
    const image = fs.crashImage(DROP_ALL).readFileBytes('/d/f');
    assert.equal(image.byteLength, 100);
    assert.equal(dec(image.subarray(0, 4)), '0123');
    assert.ok(
      image.subarray(4).every((b) => b === 0),
      'allocated space reads as zeros',
    );
    h.allocate(50);
    assert.equal(h.size(), 100, 'allocate never shrinks');
    h.truncate(2);
    h.truncate(8);
    assert.deepEqual(
      [...fs.readFileBytes('/d/f')],
      [0x30, 0x31, 0, 0, 0, 0, 0, 0],
      'regrown bytes are zeros',
    );
  });

  test('syncAsync makes durable only what was written before the call, on a later tick', async () => {
    const fs = freshFs();
    const h = fs.open('/d/f', { create: true });
    fs.syncDir('/d');
    writeFully(h, [enc('first')], 0);
    let settled = false;
    const p = h.syncAsync().then(() => {
      settled = true;
    });
    writeFully(h, [enc('second')], 5);
    assert.equal(settled, false, 'does not settle synchronously');
    assert.equal(
      fs.crashImage(DROP_ALL).readFileBytes('/d/f').byteLength,
      0,
      'not durable before it resolves',
    );
    await p;
    assert.equal(dec(fs.crashImage(DROP_ALL).readFileBytes('/d/f')), 'first');
    h.sync();
    assert.equal(dec(fs.crashImage(DROP_ALL).readFileBytes('/d/f')), 'firstsecond');
  });

  test('a failed fsync forgets the unsynced writes: a retried fsync does not persist them', () => {
    const fs = freshFs();
    const h = fs.open('/d/f', { create: true });
    fs.syncDir('/d');
    writeFully(h, [enc('lost')], 0);
    fs.injectFault({ op: 'sync', nth: 1, error: 'EIO' });
    throwsCode(() => h.sync(), 'EIO');
    assert.equal(dec(fs.readFileBytes('/d/f')), 'lost', 'the page cache still shows the data');
    h.sync();
    assert.equal(fs.crashImage(DROP_ALL).readFileBytes('/d/f').byteLength, 0);
  });

  test('a failed syncAsync rejects and forgets too', async () => {
    const fs = freshFs();
    const h = fs.open('/d/f', { create: true });
    fs.syncDir('/d');
    writeFully(h, [enc('lost')], 0);
    fs.injectFault({ op: 'syncAsync', nth: 1, error: 'EIO' });
    await assert.rejects(h.syncAsync(), (err: unknown) => errnoCode(err) === 'EIO');
    await h.syncAsync();
    assert.equal(fs.crashImage(DROP_ALL).readFileBytes('/d/f').byteLength, 0);
  });
});

describe('SimulatedFileSystem: torn writes', () => {
  /** A durable 1000-byte file followed by unsynced appends; returns the whole intended contents. */
  function tornSetup(seed: number): { fs: SimulatedFileSystem; intended: Uint8Array; durableLength: number } {
    const rng = new Rng(seed);
    const fs = freshFs(seed);
    const h = fs.open('/d/log', { create: true });
    const base = rng.bytes(1000);
    writeFully(h, [base], 0);
    h.sync();
    fs.syncDir('/d');
    const chunks: Uint8Array[] = [base];
    let at = base.byteLength;
    for (let i = 0; i < 5; i++) {
      const c = rng.bytes(rng.int(1, 1500));
      writeFully(h, [c], at);
      at += c.byteLength;
      chunks.push(c);
    }
    return { fs, intended: Buffer.concat(chunks), durableLength: base.byteLength };
  }

  test('without garbling, a crash leaves a prefix of the write stream at least as long as the synced part', () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const lengths = new Set<number>();
    for (let i = 0; i < 300; i++) {
      const { fs, intended, durableLength } = tornSetup(seed + i);
      const image = fs.crashImage({ data: 'torn', garbleProbability: 0 }).readFileBytes('/d/log');
      assert.ok(image.byteLength >= durableLength && image.byteLength < intended.byteLength);
      assert.ok(bytesEqual(image, intended.subarray(0, image.byteLength)), `case ${i}: not a prefix`);
      lengths.add(image.byteLength);
    }
    assert.ok(lengths.size > 100, `torn lengths should vary, got ${lengths.size} distinct`);
  });

  test('garbling replaces bytes of one sector of the torn write with non-zero junk, never synced bytes', () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    let garbledCases = 0;
    for (let i = 0; i < 300; i++) {
      const { fs, intended, durableLength } = tornSetup(seed + i);
      const image = fs.crashImage({ data: 'torn', garbleProbability: 1 }).readFileBytes('/d/log');
      assert.ok(
        bytesEqual(image.subarray(0, durableLength), intended.subarray(0, durableLength)),
        'synced bytes intact',
      );
      const diffs: number[] = [];
      for (let b = durableLength; b < image.byteLength; b++) if (image[b] !== intended[b]) diffs.push(b);
      if (diffs.length === 0) continue;
      garbledCases++;
      const first = diffs[0]!;
      const last = diffs[diffs.length - 1]!;
      assert.equal(Math.floor(first / 512), Math.floor(last / 512), `case ${i}: garbling spans sectors`);
      const sectorStart = first - (first % 512);
      for (
        let b = Math.max(sectorStart, durableLength);
        b < Math.min(image.byteLength, sectorStart + 512);
        b++
      ) {
        if (b >= first) assert.notEqual(image[b], 0, `case ${i}: garbled byte ${b} is zero`);
      }
    }
    assert.ok(garbledCases > 200, `expected most cases garbled, got ${garbledCases}`);
  });

  test('the legacy random-prefix policy produces drop, keep and torn outcomes, always a prefix', () => {
    const outcomes = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const { fs, intended, durableLength } = tornSetup(1000 + i);
      const image = fs.crashImage({ ...PREFIX_ONLY, garbleProbability: 0 }).readFileBytes('/d/log');
      const len = image.byteLength;
      assert.ok(bytesEqual(image, intended.subarray(0, len)), `case ${i}: not a prefix`);
      outcomes.add(len === durableLength ? 'drop' : len === intended.byteLength ? 'keep' : 'torn');
    }
    assert.deepEqual([...outcomes].sort(), ['drop', 'keep', 'torn']);
  });

  test('torn sectors can be zeroed on request', () => {
    let zeroed = 0;
    for (let i = 0; i < 100; i++) {
      const { fs, intended, durableLength } = tornSetup(2000 + i);
      const image = fs
        .crashImage({ data: 'torn', garbleProbability: 1, damage: 'zero' })
        .readFileBytes('/d/log');
      assert.ok(bytesEqual(image.subarray(0, durableLength), intended.subarray(0, durableLength)));
      for (let b = durableLength; b < image.byteLength; b++) {
        if (image[b] !== intended[b]) {
          assert.equal(image[b], 0, `case ${i}: damaged byte ${b} is not zero`);
          zeroed++;
        }
      }
    }
    assert.ok(zeroed > 0, 'some torn sectors came back zeroed');
  });
});

describe('SimulatedFileSystem: directory crash policies', () => {
  function threeCreates(seed: number): SimulatedFileSystem {
    const fs = freshFs(seed);
    for (const n of ['a', 'b', 'c']) writeFile(fs, `/d/${n}`, n, { sync: true });
    return fs;
  }

  test('random keeps each entry operation independently', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const image = threeCreates(i).crashImage({ dirOps: 'random' });
      seen.add(image.readdir('/d').sort().join(''));
    }
    assert.equal(seen.size, 8, `all 8 subsets should appear, saw ${[...seen].join(',')}`);
  });

  test('prefix keeps an ordered prefix only', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const image = threeCreates(i).crashImage({ dirOps: 'prefix' });
      seen.add(image.readdir('/d').sort().join(''));
    }
    assert.deepEqual([...seen].sort(), ['', 'a', 'ab', 'abc']);
  });
});

describe('SimulatedFileSystem: crashAfter', () => {
  function workload(fs: SimulatedFileSystem): void {
    const h = fs.open('/d/f', { create: true });
    for (let i = 0; i < 5; i++) {
      writeFully(h, [enc(`r${i};`)], h.size());
      h.sync();
    }
    fs.syncDir('/d');
    h.close();
  }

  test('the n-th mutation completes, then every call throws ECRASH, including on open handles', () => {
    const probe = freshFs(7);
    const start = probe.mutationCount;
    workload(probe);
    const total = probe.mutationCount - start;
    assert.equal(total, 1 + 5 * 2 + 1, 'open(create) + 5 × (writev, sync) + syncDir');

    const fs = freshFs(7);
    const h = fs.open('/d/other', { create: true });
    fs.crashAfter(fs.mutationCount + 3, DROP_ALL);
    assert.throws(
      () => workload(fs),
      (err: unknown) => errnoCode(err) === 'ECRASH',
    );
    assert.equal(fs.crashed, true);
    throwsCode(() => fs.exists('/d/f'), 'ECRASH');
    throwsCode(() => fs.readdir('/d'), 'ECRASH');
    throwsCode(() => h.writev([enc('x')], 0), 'ECRASH');
    throwsCode(() => h.size(), 'ECRASH');
    h.close();
    const image = fs.crashedImage();
    // Mutations: open(create), writev, sync → the first record was synced; the entry was never synced.
    assert.equal(image.exists('/d/f'), false);
    const keep = fs.crash(KEEP_ALL);
    assert.equal(keep, image, 'crash() after the power failed returns the captured image');
  });

  test('crash after every mutation gives images consistent with the durability rules', () => {
    const probe = freshFs(8);
    const base = probe.mutationCount;
    workload(probe);
    const n = probe.mutationCount;
    const images: string[] = [];
    for (let k = base + 1; k <= n; k++) {
      const fs = freshFs(8);
      fs.crashAfter(k, { data: 'drop', dirOps: 'keep' });
      try {
        workload(fs);
      } catch (err) {
        assert.equal(errnoCode(err), 'ECRASH');
      }
      const image = fs.crashedImage();
      images.push(image.exists('/d/f') ? dec(image.readFileBytes('/d/f')) : '<none>');
    }
    assert.deepEqual(images, [
      '',
      '',
      'r0;',
      'r0;',
      'r0;r1;',
      'r0;r1;',
      'r0;r1;r2;',
      'r0;r1;r2;',
      'r0;r1;r2;r3;',
      'r0;r1;r2;r3;',
      'r0;r1;r2;r3;r4;',
      'r0;r1;r2;r3;r4;',
    ]);
  });

  test('a pending syncAsync rejects with ECRASH and is not durable if the power fails first', async () => {
    const fs = freshFs();
    const h = fs.open('/d/f', { create: true });
    fs.syncDir('/d');
    writeFully(h, [enc('data')], 0);
    const p = h.syncAsync();
    fs.crash(DROP_ALL);
    await assert.rejects(p, (err: unknown) => errnoCode(err) === 'ECRASH');
    assert.equal(fs.crashedImage().readFileBytes('/d/f').byteLength, 0);
    await assert.rejects(h.syncAsync(), (err: unknown) => errnoCode(err) === 'ECRASH');
  });

  test('the onMutation hook sees each mutation and may cut the power', () => {
    const seen: string[] = [];
    const fs = new SimulatedFileSystem({
      seed: 3,
      traceMutations: true,
      onMutation: (info) => {
        seen.push(`${info.index}:${info.op}`);
        if (info.op === 'syncDir') fs.crash(DROP_ALL);
      },
    });
    fs.mkdir('/d');
    writeFile(fs, '/d/f', 'x', { sync: true });
    fs.syncDir('/d');
    throwsCode(() => fs.stat('/d/f'), 'ECRASH');
    assert.deepEqual(seen, ['1:mkdir', '2:open', '3:writev', '4:sync', '5:syncDir']);
    assert.deepEqual(
      fs.mutationTrace.map((m) => m.path),
      ['/d', '/d/f', '/d/f', '/d/f', '/d'],
    );
    assert.equal(fs.crashedImage().exists('/d/f'), false, '/ was never synced, so /d is not durable');
  });

  test('crashAfter rejects a point already passed, crashedImage requires a crash', () => {
    const fs = freshFs();
    assert.throws(() => fs.crashAfter(1), RangeError);
    assert.throws(() => fs.crashedImage(), /no crash happened/);
  });
});

describe('SimulatedFileSystem: fault injection', () => {
  test('the nth call of a kind fails once; others succeed; opCounts count every call', () => {
    const fs = freshFs();
    const h = fs.open('/d/f', { create: true });
    const before = fs.opCounts.writev;
    const fault = fs.injectFault({ op: 'writev', nth: 3, error: 'EIO' });
    h.writev([enc('a')], 0);
    h.writev([enc('b')], 1);
    assert.equal(fault.firedCount, 0);
    throwsCode(() => h.writev([enc('c')], 2), 'EIO');
    assert.equal(fault.firedCount, 1);
    assert.equal(fault.firstFiring?.path, '/d/f');
    h.writev([enc('d')], 2);
    assert.equal(dec(fs.readFileBytes('/d/f')), 'abd', 'EIO on writev writes nothing');
    assert.equal(fs.opCounts.writev - before, 4);
  });

  test('pathIncludes filters which calls count and fail; times fails consecutive calls', () => {
    const fs = freshFs();
    const a = fs.open('/d/a.seg', { create: true });
    const b = fs.open('/d/b.idx', { create: true });
    const fault = fs.injectFault({ op: 'sync', nth: 2, error: 'EIO', pathIncludes: '.seg', times: 2 });
    a.sync();
    b.sync();
    b.sync();
    throwsCode(() => a.sync(), 'EIO');
    b.sync();
    throwsCode(() => a.sync(), 'EIO');
    a.sync();
    assert.equal(fault.firedCount, 2);
  });

  test('SHORT_WRITE writes a strict prefix and returns its length; writeFully completes the rest', () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const returned = new Set<number>();
    for (let i = 0; i < 100; i++) {
      const fs = freshFs(seed + i);
      const h = fs.open('/d/f', { create: true });
      fs.injectFault({ op: 'writev', nth: 1, error: 'SHORT_WRITE' });
      const n = h.writev([enc('hello '), enc('world')], 0);
      assert.ok(n >= 0 && n < 11, `short write returned ${n}`);
      returned.add(n);
      assert.equal(dec(fs.readFileBytes('/d/f')), 'hello world'.slice(0, n));
      fs.injectFault({ op: 'writev', nth: 1, error: 'SHORT_WRITE' });
      writeFully(h, [enc('ABC'), enc('DEF')], 0);
      assert.equal(dec(fs.readFileBytes('/d/f')).slice(0, 6), 'ABCDEF');
    }
    assert.ok(returned.size >= 8, `short write lengths should vary, got ${[...returned].join(',')}`);
  });

  test('ENOSPC on writev writes a strict prefix then throws; the prefix is unsynced data', () => {
    const fs = freshFs(11);
    const h = fs.open('/d/f', { create: true });
    fs.syncDir('/d');
    fs.injectFault({ op: 'writev', nth: 1, error: 'ENOSPC' });
    throwsCode(() => h.writev([new Uint8Array(1000).fill(7)], 0), 'ENOSPC');
    const size = h.size();
    assert.ok(size < 1000);
    assert.equal(fs.crashImage(DROP_ALL).readFileBytes('/d/f').byteLength, 0);
    assert.equal(fs.crashImage(KEEP_ALL).readFileBytes('/d/f').byteLength, size);
  });

  test('ENOSPC on allocate extends part way, then throws', () => {
    const fs = freshFs(12);
    const h = fs.open('/d/f', { create: true });
    fs.injectFault({ op: 'allocate', nth: 1, error: 'ENOSPC' });
    throwsCode(() => h.allocate(4096), 'ENOSPC');
    assert.ok(h.size() < 4096);
    h.allocate(4096);
    assert.equal(h.size(), 4096);
  });

  test('every faultable kind throws its errno, and the failed call has no effect', () => {
    const fs = freshFs(13);
    writeFile(fs, '/d/f', 'abc', { sync: true });
    const h = fs.open('/d/f');
    const cases: Array<[Parameters<SimulatedFileSystem['injectFault']>[0]['op'], () => unknown]> = [
      ['open', () => fs.open('/d/g', { create: true })],
      ['read', () => h.read(new Uint8Array(3), 0, 3, 0)],
      ['truncate', () => h.truncate(0)],
      ['stat', () => fs.stat('/d/f')],
      ['readdir', () => fs.readdir('/d')],
      ['mkdir', () => fs.mkdir('/d/sub')],
      ['rename', () => fs.rename('/d/f', '/d/h')],
      ['unlink', () => fs.unlink('/d/f')],
      ['syncDir', () => fs.syncDir('/d')],
    ];
    for (const [op, call] of cases) {
      fs.injectFault({ op, nth: 1, error: 'EACCES' });
      throwsCode(call, 'EACCES');
    }
    fs.mkdir('/d/empty');
    fs.injectFault({ op: 'rmdir', nth: 1, error: 'EIO' });
    throwsCode(() => fs.rmdir('/d/empty'), 'EIO');
    assert.deepEqual(fs.readdir('/d').sort(), ['empty', 'f']);
    assert.equal(dec(fs.readFileBytes('/d/f')), 'abc');
  });

  test('invalid fault specs are rejected', () => {
    const fs = freshFs();
    assert.throws(() => fs.injectFault({ op: 'sync', nth: 1, error: 'SHORT_WRITE' }), RangeError);
    assert.throws(() => fs.injectFault({ op: 'sync', nth: 0, error: 'EIO' }), RangeError);
  });
});

describe('SimulatedFileSystem: POSIX behaviour and helpers', () => {
  test('errors match node:fs codes', () => {
    const fs = freshFs();
    throwsCode(() => fs.open('/d/missing'), 'ENOENT');
    throwsCode(() => fs.open('/nope/x', { create: true }), 'ENOENT');
    writeFile(fs, '/d/f', 'x');
    throwsCode(() => fs.open('/d/f', { create: true, exclusive: true }), 'EEXIST');
    throwsCode(() => fs.open('/d', {}), 'EISDIR');
    throwsCode(() => fs.readdir('/d/f'), 'ENOTDIR');
    throwsCode(() => fs.open('/d/f/x', { create: true }), 'ENOTDIR');
    throwsCode(() => fs.unlink('/d'), 'EISDIR');
    throwsCode(() => fs.rmdir('/d'), 'ENOTEMPTY');
    throwsCode(() => fs.rmdir('/d/f'), 'ENOTDIR');
    throwsCode(() => fs.stat('/d/missing'), 'ENOENT');
    throwsCode(() => fs.mkdir('/d/f'), 'EEXIST');
    throwsCode(() => fs.syncDir('/d/f'), 'ENOTDIR');
    throwsCode(() => fs.rename('/d/missing', '/d/y'), 'ENOENT');
    throwsCode(() => fs.rename('/d', '/d/sub'), 'EINVAL');
    const ro = fs.open('/d/f', { readOnly: true });
    throwsCode(() => ro.writev([enc('y')], 0), 'EBADF');
    throwsCode(() => ro.truncate(0), 'EBADF');
    ro.close();
    throwsCode(() => ro.read(new Uint8Array(1), 0, 1, 0), 'EBADF');
    ro.close();
    assert.equal(fs.stat('/d').isDirectory, true);
    assert.deepEqual(fs.stat('/d/f'), { size: 1, isDirectory: false });
  });

  test('relative paths resolve against /, reads at EOF are short', () => {
    const fs = freshFs();
    writeFile(fs, 'd/rel', 'abc');
    assert.equal(dec(readWholeFile(fs, '/d/rel')), 'abc');
    const h = fs.open('/d/rel', { readOnly: true });
    const buf = new Uint8Array(10);
    assert.equal(h.read(buf, 0, 10, 1), 2);
    assert.equal(h.read(buf, 0, 10, 3), 0);
    h.close();
  });

  test('flipBit corrupts durable bytes too; writeFileBytes sets up durable files; listFiles is recursive', () => {
    const fs = new SimulatedFileSystem({ seed: 5 });
    fs.writeFileBytes('/a/b/c.bin', new Uint8Array([0, 0, 0]));
    fs.writeFileBytes('/a/z', new Uint8Array([1]));
    assert.deepEqual(fs.listFiles(), ['/a/b/c.bin', '/a/z']);
    assert.deepEqual(fs.listFiles('/a/b'), ['/a/b/c.bin']);
    fs.flipBit('/a/b/c.bin', 1, 3);
    assert.deepEqual([...fs.crashImage(DROP_ALL).readFileBytes('/a/b/c.bin')], [0, 8, 0]);
    assert.throws(() => fs.flipBit('/a/z', 1, 0), RangeError);
    assert.throws(() => fs.flipBit('/a/z', 0, 8), RangeError);
  });

  test('makeEverythingDurable is a clean shutdown', () => {
    const fs = freshFs();
    writeFile(fs, '/d/f', 'abc');
    fs.mkdir('/d/e/f');
    fs.makeEverythingDurable();
    const image = fs.crashImage(DROP_ALL);
    assert.equal(dec(image.readFileBytes('/d/f')), 'abc');
    assert.equal(image.exists('/d/e/f'), true);
  });

  test('an image is independent of its source (copy-on-write)', () => {
    const fs = freshFs();
    writeFile(fs, '/d/f', 'abc', { sync: true });
    fs.syncDir('/d');
    const image = fs.crashImage(DROP_ALL);
    writeFile(fs, '/d/f', 'def', { sync: true });
    const h = image.open('/d/f');
    writeFully(h, [enc('XYZ')], 0);
    h.sync();
    assert.equal(dec(fs.readFileBytes('/d/f')), 'abcdef');
    assert.equal(dec(image.readFileBytes('/d/f')), 'XYZ');
    image.flipBit('/d/f', 0, 0);
    assert.equal(dec(fs.readFileBytes('/d/f')), 'abcdef');
  });
});

describe('SimulatedFileSystem: determinism and properties', () => {
  function randomWorkload(fs: SimulatedFileSystem, rng: Rng): void {
    fs.mkdir('/w');
    const handles = [0, 1, 2].map((i) => fs.open(`/w/f${i}`, { create: true }));
    for (let step = 0; step < 60; step++) {
      const h = rng.pick(handles);
      const r = rng.next();
      if (r < 0.6) writeFully(h, [rng.bytes(rng.int(1, 700))], rng.int(0, h.size() + 1));
      else if (r < 0.8) h.sync();
      else if (r < 0.9) fs.syncDir('/w');
      else h.truncate(rng.int(0, h.size() + 1));
    }
  }

  test('the same seed and workload give identical crash images; different seeds differ', () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const run = (fsSeed: number): string => {
      const fs = new SimulatedFileSystem({ seed: fsSeed });
      randomWorkload(fs, new Rng(seed));
      return [1, 2, 3].map(() => snapshot(fs.crashImage())).join('\n--\n');
    };
    assert.equal(run(seed), run(seed));
    const others = new Set([run(seed + 1), run(seed + 2), run(seed + 3)]);
    assert.ok(others.size > 1 || !others.has(run(seed)), 'different seeds should give different images');
  });

  test('property: synced bytes always survive any crash policy', () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.array(fc.tuple(fc.nat(900), fc.boolean()), { minLength: 1, maxLength: 25 }),
        (fsSeed, steps) => {
          const fs = new SimulatedFileSystem({ seed: fsSeed });
          fs.mkdir('/p');
          fs.syncDir('/');
          const h = fs.open('/p/log', { create: true });
          fs.syncDir('/p');
          const rng = new Rng(fsSeed);
          let synced: Uint8Array = new Uint8Array(0);
          for (const [len, doSync] of steps) {
            writeFully(h, [rng.bytes(len + 1)], h.size());
            if (doSync) {
              h.sync();
              synced = fs.readFileBytes('/p/log');
            }
          }
          const image = fs.crashImage().readFileBytes('/p/log');
          return (
            image.byteLength >= synced.byteLength && bytesEqual(image.subarray(0, synced.byteLength), synced)
          );
        },
      ),
      { seed, numRuns: 300 },
    );
  });
});

describe('SimulatedFileSystem: hard links', () => {
  test('a link names the same bytes and is lost by a power cut until its directory is fsynced', () => {
    const fs = freshFs();
    writeFile(fs, '/d/a', 'hello', { sync: true });
    fs.syncDir('/d');
    fs.mkdir('/s');
    fs.syncDir('/');
    fs.link('/d/a', '/s/a');
    assert.equal(dec(fs.readFileBytes('/s/a')), 'hello');
    assert.equal(fs.crashImage(DROP_ALL).exists('/s/a'), false);
    fs.syncDir('/s');
    const image = fs.crashImage(DROP_ALL);
    assert.equal(dec(image.readFileBytes('/s/a')), 'hello');
    assert.equal(dec(image.readFileBytes('/d/a')), 'hello');
  });

  test('linking onto an existing name or from a missing file fails with the errno node:fs gives', () => {
    const fs = freshFs();
    writeFile(fs, '/d/a', 'x', { sync: true });
    writeFile(fs, '/d/b', 'y', { sync: true });
    throwsCode(() => fs.link('/d/a', '/d/b'), 'EEXIST');
    throwsCode(() => fs.link('/d/missing', '/d/c'), 'ENOENT');
    throwsCode(() => fs.link('/d', '/e'), 'EPERM');
  });
});

describe('SimulatedFileSystem: page-subset power loss', () => {
  const PAGE = 4096;

  /** A synced first page, then `pages` unsynced pages of distinct non-zero bytes appended. */
  function pagesSetup(
    seed: number,
    pages: number,
  ): { fs: SimulatedFileSystem; synced: Uint8Array; pageData: Uint8Array[] } {
    const fs = freshFs(seed);
    const h = fs.open('/d/log', { create: true });
    const synced = new Uint8Array(PAGE).fill(0xaa);
    writeFully(h, [synced], 0);
    h.sync();
    fs.syncDir('/d');
    const pageData: Uint8Array[] = [];
    for (let p = 0; p < pages; p++) {
      const data = new Uint8Array(PAGE).fill(p + 1);
      writeFully(h, [data], PAGE * (p + 1));
      pageData.push(data);
    }
    return { fs, synced, pageData };
  }

  test('any subset of unsynced pages survives, later pages without earlier ones; synced bytes intact', () => {
    const seen = new Set<string>();
    let laterWithoutEarlier = 0;
    for (let i = 0; i < 400; i++) {
      const { fs, synced } = pagesSetup(100 + i, 3);
      const image = fs.crashImage(PAGE_SUBSET).readFileBytes('/d/log');
      assert.ok(bytesEqual(image.subarray(0, PAGE), synced), `case ${i}: synced page altered`);
      assert.equal(image.byteLength % PAGE, 0);
      let pattern = '';
      for (let p = 1; p < image.byteLength / PAGE; p++) {
        const page = image.subarray(p * PAGE, (p + 1) * PAGE);
        // Each page is its old version (zeros past the old end) or its new one, never a mixture.
        const isNew = page.every((b) => b === p);
        const isOld = page.every((b) => b === 0);
        assert.ok(isNew || isOld, `case ${i}: page ${p} is neither old nor new`);
        pattern += isNew ? '1' : '0';
      }
      seen.add(pattern);
      if (/0.*1/.test(pattern)) laterWithoutEarlier++;
    }
    assert.ok(
      laterWithoutEarlier > 20,
      `a later page survives without an earlier one (${laterWithoutEarlier})`,
    );
    for (const p of ['', '000', '111', '010', '101', '001']) assert.ok(seen.has(p), `outcome ${p} seen`);
  });

  test('property: every page holds one of its versions since the last sync, the size one of the sizes', () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (caseSeed) => {
        const rng = new Rng(caseSeed);
        const fs = freshFs(caseSeed);
        const h = fs.open('/d/f', { create: true });
        fs.syncDir('/d');
        writeFully(h, [rng.bytes(rng.int(0, 3 * PAGE))], 0);
        h.sync();
        const versions: Uint8Array[] = [fs.readFileBytes('/d/f')];
        for (let step = 0, n = rng.int(1, 12); step < n; step++) {
          const r = rng.next();
          if (r < 0.75) writeFully(h, [rng.bytes(rng.int(1, 2 * PAGE))], rng.int(0, h.size() + PAGE));
          else if (r < 0.9) h.truncate(rng.int(0, h.size() + 1));
          else h.allocate(h.size() + rng.int(0, PAGE));
          versions.push(fs.readFileBytes('/d/f'));
        }
        const image = fs.crashImage({ ...PAGE_SUBSET, seed: rng.nextU32() }).readFileBytes('/d/f');
        assert.ok(
          versions.some((v) => v.byteLength === image.byteLength),
          'size is one of the versions',
        );
        for (let start = 0; start < image.byteLength; start += PAGE) {
          const page = image.subarray(start, start + PAGE);
          // A version's page, zero-padded where that version was shorter than the image.
          const matches = versions.some((v) => {
            for (let b = 0; b < page.byteLength; b++) if (page[b] !== (v[start + b] ?? 0)) return false;
            return true;
          });
          assert.ok(matches, `page at ${start} matches no version (seed ${caseSeed})`);
        }
      }),
      { seed, numRuns: 300 },
    );
  });

  test('damaged pages: only bytes unsynced writes covered change, zeroed or garbled, a page or a sector', () => {
    const kinds = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const policy = i % 2 === 0 ? PAGES_ZEROED : PAGES_GARBLED;
      const { fs, synced, pageData } = pagesSetup(500 + i, 3);
      const image = fs.crashImage(policy).readFileBytes('/d/log');
      assert.ok(bytesEqual(image.subarray(0, PAGE), synced), `case ${i}: synced page altered`);
      for (let p = 1; p < image.byteLength / PAGE; p++) {
        const page = image.subarray(p * PAGE, (p + 1) * PAGE);
        const odd: number[] = [];
        for (let b = 0; b < PAGE; b++) if (page[b] !== 0 && page[b] !== pageData[p - 1]![b]) odd.push(b);
        const zeros = page.filter((b) => b === 0).length;
        if (policy === PAGES_ZEROED) {
          assert.equal(odd.length, 0, `case ${i}: zeroing left junk`);
          if (zeros > 0 && zeros < PAGE) kinds.add(zeros === 512 ? 'zero-sector' : 'zero-mixed');
        } else if (odd.length > 0) {
          // Junk is non-zero and equals the intended byte 1 time in 255.
          kinds.add(odd.length > 3500 ? 'garbled-page' : odd.length <= 512 ? 'garbled-sector' : 'garbled');
        }
      }
    }
    for (const k of ['zero-sector', 'garbled-page', 'garbled-sector']) assert.ok(kinds.has(k), `saw ${k}`);
  });

  test('the default random policy includes page subsets and zeroed pages', () => {
    let nonPrefix = 0;
    let zeroedWritten = 0;
    for (let i = 0; i < 300; i++) {
      const { fs, pageData } = pagesSetup(900 + i, 3);
      const image = fs.crashImage().readFileBytes('/d/log');
      let lostBefore = false;
      for (let p = 1; p < image.byteLength / PAGE; p++) {
        const page = image.subarray(p * PAGE, (p + 1) * PAGE);
        const isNew = bytesEqual(page, pageData[p - 1]!);
        if (isNew && lostBefore) nonPrefix++;
        if (!isNew) lostBefore = true;
        const zeros = page.filter((b) => b === 0).length;
        if (zeros > 0 && zeros < PAGE) zeroedWritten++;
      }
    }
    assert.ok(nonPrefix > 0, 'a later page survived an earlier lost one');
    assert.ok(zeroedWritten > 0, 'some written sector came back zeroed');
  });

  test('a truncate and a re-extension: pages past the cut read as zeros or their older bytes', () => {
    const fs = freshFs(4);
    const h = fs.open('/d/f', { create: true });
    fs.syncDir('/d');
    writeFully(h, [new Uint8Array(2 * PAGE).fill(7)], 0);
    h.sync();
    h.truncate(100);
    writeFully(h, [new Uint8Array(10).fill(9)], 2 * PAGE - 10);
    for (let i = 0; i < 200; i++) {
      const image = fs.crashImage({ ...PAGE_SUBSET, seed: i }).readFileBytes('/d/f');
      assert.ok([100, 2 * PAGE].includes(image.byteLength), `size ${image.byteLength}`);
      assert.ok(
        image.subarray(0, 100).every((b) => b === 7),
        'bytes below the cut are never lost',
      );
    }
  });
});

describe('SimulatedFileSystem: kill, then power loss', () => {
  test('kill: the dead process cannot call anything, the next one sees its page cache', async () => {
    const fs = freshFs();
    const h = fs.open('/d/f', { create: true });
    writeFully(h, [enc('unsynced')], 0);
    fs.rename('/d/f', '/d/g');
    const pendingSync = h.syncAsync();
    const next = fs.kill();
    assert.equal(fs.killed, true);
    assert.equal(fs.crashed, false);
    assert.equal(fs.successor(), next);
    assert.equal(fs.kill(), next, 'killing twice returns the same successor');
    await assert.rejects(pendingSync, (err: unknown) => errnoCode(err) === 'EKILLED');
    throwsCode(() => h.writev([enc('x')], 0), 'EKILLED');
    throwsCode(() => h.sync(), 'EKILLED');
    throwsCode(() => fs.exists('/d/g'), 'EKILLED');
    throwsCode(() => fs.open('/d/h', { create: true }), 'EKILLED');
    h.close();
    assert.equal(dec(readWholeFile(next, '/d/g')), 'unsynced');
    assert.equal(next.exists('/d/f'), false);
    assert.equal(next.mutationCount, 0, 'the next process counts its own calls');
    // Nobody fsynced anything: a power cut now loses the data, the create and the rename.
    assert.equal(next.crashImage(DROP_ALL).exists('/d/g'), false);
    assert.equal(next.crashImage(DROP_ALL).exists('/d/f'), false);
    assert.equal(dec(next.crashImage(KEEP_ALL).readFileBytes('/d/g')), 'unsynced');
  });

  test("the next process makes the dead one's writes durable only by fsyncing them itself", () => {
    const fs = freshFs();
    const h = fs.open('/d/f', { create: true });
    writeFully(h, [enc('abc')], 0);
    const next = fs.kill();
    const h2 = next.open('/d/f');
    writeFully(h2, [enc('def')], 3);
    h2.sync();
    assert.equal(next.crashImage(DROP_ALL).exists('/d/f'), false, 'the entry is still unsynced');
    next.syncDir('/d');
    assert.equal(dec(next.crashImage(DROP_ALL).readFileBytes('/d/f')), 'abcdef');
  });

  test('a syncAsync of the dead process never makes its data durable', async () => {
    const fs = freshFs();
    const h = fs.open('/d/f', { create: true });
    fs.syncDir('/d');
    writeFully(h, [enc('data')], 0);
    const p = h.syncAsync();
    const next = fs.kill();
    await assert.rejects(p, (err: unknown) => errnoCode(err) === 'EKILLED');
    assert.equal(next.crashImage(DROP_ALL).readFileBytes('/d/f').byteLength, 0);
  });

  test('killAfter(n): the n-th mutation completes, then the process is dead; crash on a dead view throws', () => {
    const fs = freshFs();
    const base = fs.mutationCount;
    fs.killAfter(base + 2);
    const h = fs.open('/d/f', { create: true });
    writeFully(h, [enc('one')], 0);
    assert.equal(fs.killed, true);
    throwsCode(() => h.sync(), 'EKILLED');
    assert.throws(() => fs.crash(), /cut the power on its successor/);
    const next = fs.successor();
    assert.equal(dec(next.readFileBytes('/d/f')), 'one');
    next.crashAfter(1, DROP_ALL);
    next.mkdir('/e');
    throwsCode(() => next.exists('/e'), 'ECRASH');
    assert.equal(next.crashedImage().exists('/d/f'), false);
    assert.throws(() => next.kill(), /power already failed/);
    assert.throws(() => freshFs().successor(), /no kill happened/);
    assert.throws(() => freshFs().killAfter(0), RangeError);
  });
});

describe('SimulatedFileSystem: damage helpers', () => {
  test('zeroPage and garblePage damage durable and current bytes of one page; pageCount', () => {
    const fs = freshFs();
    const data = new Uint8Array(2 * 4096 + 100).fill(5);
    fs.writeFileBytes('/d/f', data);
    assert.equal(fs.pageCount('/d/f'), 3);
    fs.zeroPage('/d/f', 1);
    fs.garblePage('/d/f', 2, 42);
    for (const view of [fs, fs.crashImage(DROP_ALL)]) {
      const bytes = view.readFileBytes('/d/f');
      assert.equal(bytes.byteLength, data.byteLength);
      assert.ok(bytes.subarray(0, 4096).every((b) => b === 5));
      assert.ok(bytes.subarray(4096, 8192).every((b) => b === 0));
      assert.ok(bytes.subarray(8192).every((b) => b !== 0) && !bytes.subarray(8192).every((b) => b === 5));
    }
    assert.throws(() => fs.zeroPage('/d/f', 3), RangeError);
    assert.throws(() => fs.garblePage('/d/f', -1, 1), RangeError);
    assert.throws(
      () => fs.zeroPage('/d', 0),
      (err: unknown) => errnoCode(err) === 'EISDIR',
    );
  });
});
