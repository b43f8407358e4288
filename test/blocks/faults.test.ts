// Error injection at every I/O call site of the block store's own files (value log on the simulated
// file system) and of its index, and bit flips in stored records.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BLOCK_STORE_KINDS, BlockStore } from '../../src/blocks/blockStore.ts';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { hashBlockHeader } from '../../src/domain/crypto.ts';
import { CairnError, isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { RecordStore } from '../../src/records/recordStore.ts';
import { type KvCrashModel, MemoryKv } from '../../src/testing/memoryKv.ts';
import {
  type CrashPolicy,
  FAULTABLE_OPS,
  type FaultError,
  PAGES_ZEROED,
  SimulatedFileSystem,
} from '../../src/testing/simulatedFileSystem.ts';
import { makeChain } from './support/chain.ts';
import { MemoryLog } from './support/memoryLog.ts';

const chain = makeChain({ seed: 21, cohorts: 12, payloadBytes: 300 });
const DIR = '/faulty';
const open = (fs: SimulatedFileSystem, kv: MemoryKv): Promise<BlockStore> =>
  openBlockStore({ dir: DIR, fs, kv, segmentBytes: 4096 });

interface Progress {
  blocksAcked: number;
  floorAcked: number;
}

/** Open, write 12 cohorts with a flush each, prune twice, close. Records acknowledgements. */
async function workload(fs: SimulatedFileSystem, kv: MemoryKv, p: Progress): Promise<void> {
  const store = await open(fs, kv);
  let failure: unknown;
  try {
    for (let i = 0; i < chain.qcs.length; i++) {
      store.writeQC(chain.qcs[i]!);
      const r = chain.range(i);
      for (let n = r.first; n < r.next; n++) store.writeBlock(n, chain.block(n));
      await store.flush();
      p.blocksAcked = r.next;
      if (i === 5 || i === 9) p.floorAcked = await store.pruneBefore(r.first - 2);
    }
  } catch (err) {
    failure = err;
  }
  if (failure !== undefined) {
    // Latched: every later call fails with the very same error.
    assert.throws(
      () => store.writeQC(chain.qcs[0]!),
      (e: unknown) =>
        e === failure ||
        isCairnError(e, 'PRUNED') ||
        isCairnError(e, 'CONFLICT') ||
        e === (failure as CairnError),
    );
    await assert.rejects(store.flush(), (e: unknown) => e === failure);
    await store.close().catch(() => undefined);
    throw failure;
  }
  await store.close();
}

describe('block store fault injection', () => {
  const faults: FaultError[] = ['EIO', 'ENOSPC'];
  /** Every I/O call site × a fault, then a power cut under `fsPolicy` with the index under `kvModel`. */
  async function faultThenPowerLoss(fsPolicy: CrashPolicy, kvModel: KvCrashModel): Promise<void> {
    let fired = 0;
    let sites = 0;
    for (const op of FAULTABLE_OPS) {
      for (let nth = 1; nth < 400; nth++) {
        const error = faults[(nth + op.length) % faults.length]!;
        const fs = new SimulatedFileSystem({ seed: nth });
        const kv = new MemoryKv();
        const fault = fs.injectFault({ op, nth, error });
        const p: Progress = { blocksAcked: 0, floorAcked: 0 };
        let err: unknown;
        try {
          await workload(fs, kv, p);
        } catch (e) {
          err = e;
        }
        if (fault.firedCount === 0) {
          assert.equal(err, undefined, `${op} #${nth}: failed without a fault: ${String(err)}`);
          break; // no call number nth of this op: move to the next op
        }
        fired++;
        if (err !== undefined) {
          assert.ok(err instanceof CairnError, `${op} #${nth}: untyped error ${String(err)}`);
          assert.ok(err.message.length > 20, `${op} #${nth}: vague message: ${err.message}`);
          sites++;
        }
        // Power cut after the failure, fault gone: reopen and check what was acknowledged.
        fs.clearFaults();
        const image = fs.crash(fsPolicy);
        const store = await open(image, kv.crashImage(new Rng(nth), kvModel));
        const r = store.ranges();
        assert.ok(r.blocks.next >= p.blocksAcked, `${op} #${nth}: acknowledged blocks lost`);
        assert.ok(r.floor >= p.floorAcked, `${op} #${nth}: floor moved back`);
        for (let n = r.blocks.first; n < r.blocks.next; n++) {
          const b = store.readBlock(n);
          assert.ok(b.status === 'found', `${op} #${nth}: block ${n} ${b.status}`);
          assert.deepEqual(b.value, chain.block(n));
        }
        await store.close();
      }
    }
    console.log(`faults fired: ${fired}, surfaced as typed errors: ${sites}`);
    assert.ok(sites > 50, `only ${sites} failing call sites exercised`);
  }

  // The new models: page subsets in the value log (F1 fixed by WAL frame format 2), index batches as
  // any subset (F2 fixed by the synced re-index checkpoint).
  test('every I/O call of the value log can fail, then a power cut under page subsets and index batch subsets', async () => {
    await faultThenPowerLoss({ data: 'random', dirOps: 'random' }, 'subset');
  });

  test('every I/O call can fail, then a power cut that zeroes a page in flight (index batch subsets)', async () => {
    await faultThenPowerLoss(PAGES_ZEROED, 'subset');
  });

  test('a failed index batch latches the store with IO_FATAL', async () => {
    const fs = new SimulatedFileSystem({ seed: 3 });
    const kv = new MemoryKv();
    const store = await open(fs, kv);
    store.writeQC(chain.qcs[0]!);
    kv.failNextWrites(1);
    await assert.rejects(store.flush(), (e: unknown) => isCairnError(e, 'IO_FATAL'));
    assert.throws(
      () => store.writeBlock(0, chain.block(0)),
      (e: unknown) => isCairnError(e, 'IO_FATAL'),
    );
    await assert.rejects(store.pruneBefore(1), (e: unknown) => isCairnError(e, 'IO_FATAL'));
  });

  test('a failed prune floor write latches the store and drops nothing', async () => {
    const fs = new SimulatedFileSystem({ seed: 4 });
    const kv = new MemoryKv();
    const store = await open(fs, kv);
    for (let i = 0; i < 4; i++) store.writeQC(chain.qcs[i]!);
    for (let n = 0; n < 16; n++) store.writeBlock(n, chain.block(n));
    await store.flush();
    kv.failNextWrites(2);
    await assert.rejects(store.pruneBefore(9), (e: unknown) => isCairnError(e, 'IO_FATAL'));
    assert.equal(store.floor, 0);
    assert.equal(store.readBlock(0).status, 'found');
  });
});

describe('block store bit flips', () => {
  test('a flipped bit in a stored record is detected on read, never returned as a different block', async () => {
    const seed = seedFromEnv();
    console.log('seed', seed);
    const rng = new Rng(seed);
    let detected = 0;
    for (let round = 0; round < 150; round++) {
      const fs = new SimulatedFileSystem({ seed: seed + round });
      const kv = new MemoryKv();
      const store = await open(fs, kv);
      for (let i = 0; i < 4; i++) store.writeQC(chain.qcs[i]!);
      for (let n = 0; n < 16; n++) store.writeBlock(n, chain.block(n));
      await store.flush();
      const files = fs.listFiles(`${DIR}/values`).filter((f) => !f.endsWith('.meta'));
      const file = rng.pick(files);
      const bytes = fs.readFileBytes(file);
      let lastNonZero = bytes.byteLength - 1;
      while (lastNonZero >= 0 && bytes[lastNonZero] === 0) lastNonZero--;
      if (lastNonZero < 0) continue;
      fs.flipBit(file, rng.int(0, lastNonZero + 1), rng.int(0, 8));
      for (let n = 0; n < 16; n++) {
        let result: ReturnType<BlockStore['readBlock']> | undefined;
        try {
          result = store.readBlock(n);
        } catch (err) {
          assert.ok(isCairnError(err), `untyped error ${String(err)}`);
          assert.ok(err.kind === 'fatal', `error kind ${err.kind}: ${err.message}`);
          detected++;
          continue;
        }
        assert.equal(result.status, 'found');
        if (result.status === 'found')
          assert.deepEqual(result.value, chain.block(n), `block ${n} silently changed`);
      }
      for (let n = 0; n < 16; n += 5) {
        try {
          const q = store.readQCForBlock(n);
          if (q.status === 'found') assert.deepEqual(q.value, chain.qcs[Math.floor(n / 4)]);
        } catch (err) {
          assert.ok(isCairnError(err) && err.kind === 'fatal');
          detected++;
        }
      }
      await store.close().catch(() => undefined);
    }
    console.log('corrupt reads detected', detected);
    assert.ok(detected > 50, `only ${detected} detections`);
  });

  test('the record checksum catches a flip even when the log layer returns the bytes', async () => {
    const log = new MemoryLog();
    const kv = new MemoryKv();
    const records = await RecordStore.open({ log, kv, name: 'mem', ...BLOCK_STORE_KINDS });
    const store = BlockStore.open(records);
    store.writeQC(chain.qcs[0]!);
    for (let n = 0; n < 4; n++) store.writeBlock(n, chain.block(n));
    await store.flush();
    // Log index 2 holds block 1; flip a payload bit and a header bit.
    log.flipBit(2, 200, 3);
    assert.throws(
      () => store.readBlock(1),
      (e: unknown) => isCairnError(e, 'CORRUPT') && /checksum/.test(e.message),
    );
    assert.throws(
      () => store.readBlockByHash(hashBlockHeader(chain.block(1).header)),
      (e: unknown) => isCairnError(e, 'CORRUPT'),
    );
    log.flipBit(3, 5, 0);
    assert.throws(
      () => store.readBlock(2),
      (e: unknown) => isCairnError(e, 'CORRUPT'),
    );
    assert.equal(store.readBlock(0).status, 'found');
    const report = await store.verify();
    assert.ok(report.problems.length >= 2, report.problems.join('\n'));
  });
});
