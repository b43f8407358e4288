import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openAnchorStore } from '../../src/consensus/anchorStore.ts';
import { encodePruneAnchor } from '../../src/domain/codecs.ts';
import type { PruneAnchor } from '../../src/domain/types.ts';
import { bytesEqual } from '../../src/lib/bytes.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { expectCairn, simFs, smallFixture } from './helpers.ts';

const DIR = '/data/consensus';

function anchors(n: number): PruneAnchor[] {
  const f = smallFixture(4, 41);
  const out: PruneAnchor[] = [];
  for (let i = 0; i < n; i++) {
    f.produceRound(1);
    out.push(f.pruneAnchor(f.nextCommitQC()));
  }
  return out;
}

function setup() {
  const fs = simFs(3);
  fs.mkdir(DIR);
  fs.syncDir('/data');
  return fs;
}

const road = (a: PruneAnchor | undefined) => a?.commitQC.roadIndex;

test('a fresh store loads no anchor; writes alternate slots and the newest wins on reopen', () => {
  const fs = setup();
  const [a0, a1, a2] = anchors(3);
  let { store, loaded } = openAnchorStore(fs, DIR);
  assert.equal(loaded, undefined);
  store.write(a0!);
  store.write(a1!);
  store.write(a2!);
  store.close();
  ({ store, loaded } = openAnchorStore(fs, DIR));
  assert.equal(road(loaded), 2);
  assert.deepEqual(loaded, a2);
  store.close();
});

test('AC-02 payload corruption is caught by the checksum and the slot is treated as corrupt', () => {
  const fs = setup();
  const [a0, a1] = anchors(2);
  const { store } = openAnchorStore(fs, DIR);
  store.write(a0!); // seq 1 → slot a
  store.write(a1!); // seq 2 → slot b
  store.close();
  fs.flipBit(`${DIR}/anchor.b`, 40, 3); // inside the payload
  const { store: s2, loaded, warnings } = openAnchorStore(fs, DIR);
  assert.equal(road(loaded), 0, 'the older, intact slot is used');
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /anchor\.b is corrupt \(checksum mismatch\)/);
  s2.close();
});

test('AC-10 after falling back from a corrupt slot, the next write goes to that slot and wins', () => {
  const fs = setup();
  const [a0, a1, a2] = anchors(3);
  let { store } = openAnchorStore(fs, DIR);
  store.write(a0!);
  store.write(a1!);
  store.close();
  fs.flipBit(`${DIR}/anchor.b`, 20, 0);
  const fallenBack = openAnchorStore(fs, DIR);
  store = fallenBack.store;
  assert.equal(road(fallenBack.loaded), 0);
  const goodSlot = fs.readFileBytes(`${DIR}/anchor.a`);
  store.write(a2!);
  assert.ok(
    bytesEqual(fs.readFileBytes(`${DIR}/anchor.a`), goodSlot),
    'the last good copy was not overwritten',
  );
  store.close();
  const reopened = openAnchorStore(fs, DIR);
  assert.equal(road(reopened.loaded), 2);
  assert.deepEqual(reopened.warnings, []);
  reopened.store.close();
});

test('AC-11 a failed anchor write does not advance: the last good slot survives, the store latches', () => {
  const fs = setup();
  const [a0, a1, a2] = anchors(3);
  const { store } = openAnchorStore(fs, DIR);
  store.write(a0!); // slot a
  store.write(a1!); // slot b
  const winner = fs.readFileBytes(`${DIR}/anchor.b`);
  const fault = fs.injectFault({ op: 'writev', nth: 1, error: 'ENOSPC', pathIncludes: 'anchor' });
  assert.throws(
    () => store.write(a2!),
    (e) => isCairnError(e, 'IO_FATAL') && /ENOSPC/.test(e.message),
  );
  assert.equal(fault.firedCount, 1);
  assert.ok(bytesEqual(fs.readFileBytes(`${DIR}/anchor.b`), winner), 'the winner slot is untouched');
  // Latched: even a write that would now succeed is refused with the original error.
  assert.throws(() => store.write(a2!), /ENOSPC/);
  store.close();
  const { store: s2, loaded } = openAnchorStore(fs, DIR);
  assert.equal(road(loaded), 1);
  s2.close();
  // A failed fsync latches the same way and is never retried.
  const fs2 = setup();
  const { store: s3 } = openAnchorStore(fs2, DIR);
  fs2.injectFault({ op: 'sync', nth: 1, error: 'EIO', pathIncludes: 'anchor' });
  assert.throws(() => s3.write(a0!), /EIO/);
  assert.throws(() => s3.write(a0!), /EIO/);
  s3.close();
});

test('a torn very first anchor write opens as "no anchor" instead of refusing to start', () => {
  const fs = setup();
  const [a0] = anchors(1);
  const { store } = openAnchorStore(fs, DIR);
  store.close();
  // What a power cut in the middle of the first write leaves: a partial, non-empty slot a.
  const image = encodePruneAnchor(a0!);
  fs.writeFileBytes(`${DIR}/anchor.a`, image.subarray(0, 30));
  const { store: s2, loaded, warnings } = openAnchorStore(fs, DIR);
  assert.equal(loaded, undefined);
  assert.match(warnings.join('\n'), /torn first write/);
  s2.close();
});

test('a slot that passes its checksum but does not decode as an anchor is a typed CORRUPT error', async () => {
  const fs = setup();
  const { store } = openAnchorStore(fs, DIR);
  store.close();
  // Write a well-formed A/B image whose payload is not an anchor, through a raw A/B file.
  const { openAbFile } = await import('../../src/io/abFile.ts');
  const raw = openAbFile(fs, DIR, 'anchor');
  raw.file.write(new Uint8Array([1, 2, 3]));
  raw.file.close();
  await expectCairn(() => openAnchorStore(fs, DIR), 'CORRUPT', /prune anchor in .* does not decode/);
});

test('writeAsync (fsync on the pool) alternates slots with write, is durable on resolve, and latches on a failed fsync', async () => {
  const fs = setup();
  const [a0, a1, a2, a3] = anchors(4);
  const { store } = openAnchorStore(fs, DIR);
  await store.writeAsync(a0!); // seq 1 → slot a
  store.write(a1!); // seq 2 → slot b
  await store.writeAsync(a2!); // seq 3 → slot a
  // Durable on resolve: a power cut that drops everything unsynced still loads road 2.
  const image = fs.crashImage({ data: 'drop', dirOps: 'keep' });
  const reopened = openAnchorStore(image, DIR);
  assert.equal(road(reopened.loaded), 2);
  assert.equal(reopened.warnings.length, 0);
  reopened.store.close();
  const fault = fs.injectFault({ op: 'syncAsync', nth: 1, error: 'EIO', pathIncludes: 'anchor' });
  const err = await store.writeAsync(a3!).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.equal(fault.firedCount, 1);
  assert.ok(isCairnError(err, 'IO_FATAL'), String(err));
  assert.throws(
    () => store.write(a3!),
    (e: unknown) => e === err,
  );
  await assert.rejects(store.writeAsync(a3!), (e: unknown) => e === err);
  store.close();
  // The failed write went to the non-winning slot: the last acknowledged anchor still loads.
  const after = openAnchorStore(fs.crashImage({ data: 'drop', dirOps: 'keep' }), DIR);
  assert.equal(road(after.loaded), 2);
  after.store.close();
});

test('an overlapping anchor write is refused with CONFLICT and does not latch; a failed plain write does', async () => {
  const fs = setup();
  const [a0, a1, a2] = anchors(3);
  const { store } = openAnchorStore(fs, DIR);
  const first = store.writeAsync(a0!);
  await assert.rejects(store.writeAsync(a1!), (e: unknown) => isCairnError(e, 'CONFLICT'));
  assert.throws(
    () => store.write(a1!),
    (e: unknown) => isCairnError(e, 'CONFLICT'),
  );
  await first;
  await store.writeAsync(a1!);
  // Unlike the bare A/B file, the anchor store latches even a failed write (not only a failed
  // fsync): the persist loop stops at its first I/O error.
  const fault = fs.injectFault({ op: 'writev', nth: 1, error: 'EIO', pathIncludes: 'anchor' });
  const err = await store.writeAsync(a2!).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.equal(fault.firedCount, 1);
  assert.ok(isCairnError(err, 'IO_FATAL'), String(err));
  await assert.rejects(store.writeAsync(a2!), (e: unknown) => e === err);
  store.close();
  const reopened = openAnchorStore(fs.crashImage({ data: 'drop', dirOps: 'keep' }), DIR);
  assert.equal(road(reopened.loaded), 1);
  reopened.store.close();
});
