import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BlockPersister } from '../../src/consensus/blockPersister.ts';
import { WalLogOpener } from '../../src/consensus/logOpener.ts';
import { PersistenceMetrics } from '../../src/consensus/metrics.ts';
import type { SignedLaneProposal } from '../../src/domain/types.ts';
import type { FileHandle, FileSystem, OpenOptions } from '../../src/io/fileSystem.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { expectCairn, openCp, simFs, smallFixture } from './helpers.ts';

// Review (rrev2): what intake answers while persistence is closing. An 'accepted' block that the
// stopped loop never writes, or a lane log opened after close() went past it, is an answer the
// caller cannot trust.

test('pushBlock, pushCommitQC and pushAppQC during close() throw CLOSED instead of accepting', async () => {
  const fs = simFs();
  const f = smallFixture(2);
  const lane = f.laneAt(0);
  const cp = await openCp(fs, f);
  const first = f.produceBlock(lane);
  assert.equal(cp.pushBlock(first), 'accepted');
  assert.equal(await cp.waitVoteable(lane, 0), 'durable');
  const qc = f.nextCommitQC({ maxPerLane: 1 });
  const closing = cp.close();
  // Same tick as close(): the loop is stopping and will not write anything admitted now.
  await expectCairn(() => cp.pushBlock(f.produceBlock(lane)), 'CLOSED');
  await expectCairn(() => cp.pushCommitQC(qc), 'CLOSED');
  await expectCairn(() => cp.pushAppQC(f.appQC(qc), qc), 'CLOSED');
  await closing;
  await expectCairn(() => cp.pushBlock(f.produceBlock(lane)), 'CLOSED');
});

/** `fs` with a count of file handles opened and not yet closed. */
function countingFs(fs: FileSystem): { fs: FileSystem; openHandles: () => number } {
  let open = 0;
  const wrapped = new Proxy(fs, {
    get(target, prop, receiver) {
      if (prop !== 'open') {
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      }
      return (file: string, options?: OpenOptions): FileHandle => {
        const handle = target.open(file, options);
        open++;
        let closed = false;
        return new Proxy(handle, {
          get(h, key, r) {
            const value = Reflect.get(h, key, r);
            if (key === 'close') {
              return () => {
                if (!closed) open--;
                closed = true;
                return handle.close();
              };
            }
            return typeof value === 'function' ? value.bind(h) : value;
          },
        });
      };
    },
  });
  return { fs: wrapped, openHandles: () => open };
}

test('BlockPersister: a lane write whose log is being opened when close() starts never leaves an open log behind', async () => {
  const counted = countingFs(simFs());
  const fs = counted.fs;
  const f = smallFixture(2);
  const lane = f.laneAt(0);
  const { persister } = await BlockPersister.open({
    opener: new WalLogOpener({ fs, segmentBytes: 4096, preallocate: false }),
    blocksDir: '/data/blocks',
    lanes: f.lanes,
    metrics: new PersistenceMetrics(),
  });
  const blocks: SignedLaneProposal[] = [f.produceBlock(lane), f.produceBlock(lane)];
  // The lane has no log yet: this write opens one (an await) before it appends.
  const write = persister.persistBlocks(lane, blocks);
  const closed = persister.close();
  const outcome = await write.then(
    (r) => ({ ok: true as const, next: r.next }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  await closed;
  if (outcome.ok) {
    // Acknowledged: then close() must have waited for it and closed the log it opened.
    assert.equal(outcome.next, 2);
  } else {
    assert.ok(isCairnError(outcome.err, 'CLOSED'), `a typed CLOSED, got ${String(outcome.err)}`);
  }
  assert.equal(counted.openHandles(), 0, 'every file handle is closed once close() resolved');
});
