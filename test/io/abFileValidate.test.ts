/**
 * Issue #9 item 11 (A/B part): a winner whose checksum holds but whose payload its owner cannot
 * decode falls back to the other slot; the first image goes to both slots, so one damaged slot
 * never turns a written file into "never written".
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeSlotImage, openAbFile } from '../../src/io/abFile.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined): string | undefined =>
  b === undefined ? undefined : new TextDecoder().decode(b);

test('a winner that passes its CRC but fails validation falls back to the other slot, with a warning', () => {
  const fs = new SimulatedFileSystem({ seed: 1 });
  fs.mkdir('/ab');
  fs.writeFileBytes('/ab/x.a', encodeSlotImage(4, enc('good')));
  fs.writeFileBytes('/ab/x.b', encodeSlotImage(5, enc('BAD!')));
  const validate = (p: Uint8Array): string | undefined => (dec(p) === 'BAD!' ? 'undecodable' : undefined);
  const { file, loaded } = openAbFile(fs, '/ab', 'x', { validate });
  assert.equal(dec(loaded.payload), 'good');
  assert.equal(loaded.seq, 4);
  assert.ok(loaded.warnings.some((w) => w.includes('undecodable')));
  // The next write goes over the rejected slot, never over the good one.
  file.write(enc('next'));
  assert.equal(dec(openAbFile(fs, '/ab', 'x', { validate }).loaded.payload), 'next');
  assert.equal(dec(fs.readFileBytes('/ab/x.a').subarray(16)), 'good');
});

test('both slots failing validation is AB_CORRUPT, never an empty load', () => {
  const fs = new SimulatedFileSystem({ seed: 2 });
  fs.mkdir('/ab');
  fs.writeFileBytes('/ab/x.a', encodeSlotImage(4, enc('BAD!')));
  fs.writeFileBytes('/ab/x.b', encodeSlotImage(5, enc('BAD!')));
  assert.throws(
    () => openAbFile(fs, '/ab', 'x', { validate: () => 'undecodable' }),
    (e) => isCairnError(e, 'AB_CORRUPT'),
  );
});

test('the first image is in both slots: damaging either one still loads it', () => {
  for (const damaged of ['a', 'b']) {
    const fs = new SimulatedFileSystem({ seed: 3 });
    fs.mkdir('/ab');
    openAbFile(fs, '/ab', 'x').file.write(enc('only write'));
    fs.flipBit(`/ab/x.${damaged}`, 18, 3);
    const { loaded } = openAbFile(fs, '/ab', 'x');
    assert.equal(dec(loaded.payload), 'only write', `slot ${damaged} damaged`);
  }
});

test('WAL meta: a newest slot that passes its CRC but holds an unknown layout falls back to the other slot', async () => {
  const fs = new SimulatedFileSystem({ seed: 4 });
  const wal = await Wal.open({ fs, dir: '/w', segmentBytes: 4096 });
  wal.append([enc('r0'), enc('r1'), enc('r2')]);
  await wal.sync();
  await wal.truncateFront(2);
  await wal.close();
  const seqOf = (f: string): number => Number(new DataView(fs.readFileBytes(f).buffer).getBigUint64(4, true));
  const newest = seqOf('/w/wal.meta.a') >= seqOf('/w/wal.meta.b') ? 'a' : 'b';
  // A well-checksummed image whose payload is not a meta layout (a bug or a foreign writer).
  fs.writeFileBytes(
    `/w/wal.meta.${newest}`,
    encodeSlotImage(seqOf(`/w/wal.meta.${newest}`) + 1, enc('garbage')),
  );
  const again = await Wal.open({ fs, dir: '/w', segmentBytes: 4096 });
  assert.equal(again.firstIndex, 2);
  assert.equal(again.nextIndex, 3);
  await again.close();
});
