// The engine batch written behind the WAL ack (commit resolves once the block's WAL record is
// durable; its engine batch lands while the next block is built). A gate holds the batch in flight so
// that every read path and every queued operation is checked inside that window, deterministically
// (no timers): reads must see the committed block from `inflight`, the next block's hashing must
// read its old values from it, operations that read the engine wholesale must wait for the write,
// and a failure of the held write must reach the caller even when close() is the only call left.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KvBatch } from '../../src/kv/orderedKv.ts';
import { toHex } from '../../src/lib/bytes.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng } from '../../src/lib/rng.ts';
import type { NamedChangeSet } from '../../src/state/stateStore.ts';
import type { MemoryKv } from '../../src/testing/memoryKv.ts';
import {
  codeHashKey,
  crashEnv,
  evm,
  nonceKey,
  openSim,
  randomBlock,
  type SimEnv,
  simEnv,
  storageKey,
  u64,
  word,
} from './support/harness.ts';

function expectCode(code: string) {
  return (err: unknown) => {
    assert.ok(isCairnError(err), `expected CairnError ${code}, got ${err}`);
    assert.equal(err.code, code, (err as Error).message);
    return true;
  };
}

/** Holds every batch write of one engine until released; counts the writes that are waiting. */
class WriteGate {
  private open = true;
  private waiters: (() => void)[] = [];
  waiting = 0;
  constructor(kv: MemoryKv) {
    const batch = kv.batch.bind(kv);
    kv.batch = (): KvBatch => {
      const b = batch();
      const write = b.write.bind(b);
      b.write = async (options) => {
        if (!this.open) {
          this.waiting++;
          await new Promise<void>((resolve) => this.waiters.push(resolve));
          this.waiting--;
        }
        return write(options);
      };
      return b;
    };
  }
  hold(): void {
    this.open = false;
  }
  release(): void {
    this.open = true;
    for (const w of this.waiters.splice(0)) w();
  }
}

const engineOf = (env: SimEnv): MemoryKv => [...env.host.engines.values()].at(-1)!;
const blockAt = (h: number): NamedChangeSet[] => randomBlock(new Rng(104_729 * h + 3), 10);

/** Lets every pending microtask and immediate run (the store's queue steps are promise chains). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

// Block 4 sets an account's nonce and a slot; block 5 sets the same account's code hash (a
// read-modify-write of the account row written by block 4) and deletes the slot.
const block4 = (): NamedChangeSet[] => [
  evm([
    { key: nonceKey(1), value: u64(5) },
    { key: storageKey(1, 1), value: word(41) },
  ]),
];
const block5 = (): NamedChangeSet[] => [
  evm([
    { key: codeHashKey(1), value: word(9) },
    { key: storageKey(1, 1), value: new Uint8Array(0), delete: true },
  ]),
];

async function reference(): Promise<{ root4: string; root5: string }> {
  const s = await openSim(simEnv(), { checkpointIntervalBlocks: 100 });
  for (let h = 1; h <= 3; h++) await s.commitBlock(h, blockAt(h));
  await s.commitBlock(4, block4());
  const root4 = toHex(s.committedRoot());
  await s.commitBlock(5, block5());
  const root5 = toHex(s.committedRoot());
  await s.close();
  return { root4, root5 };
}

/** Blocks 1-3 committed and in the engine; the engine's next batches are held at the gate. */
async function threeBlocksThenHold(env: SimEnv) {
  const s = await openSim(env, { checkpointIntervalBlocks: 100 });
  for (let h = 1; h <= 3; h++) await s.commitBlock(h, blockAt(h));
  await s.engineWritten();
  const engine = engineOf(env);
  const gate = new WriteGate(engine);
  gate.hold();
  return { s, engine, gate };
}

test('write-behind: reads and the next block see a committed block whose engine batch is still held', async () => {
  const expected = await reference();
  const { s, gate } = await threeBlocksThenHold(simEnv());
  assert.equal(await s.commitBlock(4, block4()), 4, 'block 4 is acknowledged with its batch held');
  assert.equal(gate.waiting, 1, 'the batch of block 4 is in flight');
  assert.equal(toHex(s.committedRoot()), expected.root4);
  // The engine does not hold block 4 yet (its write waits at the gate); every read path answers
  // from the committed block anyway.
  assert.deepEqual(s.get('evm', storageKey(1, 1)), word(41));
  assert.deepEqual(s.getCommitted('evm', storageKey(1, 1)), word(41));
  assert.deepEqual(s.get('evm', nonceKey(1)), u64(5));
  assert.equal(s.blockHeightModified('evm', storageKey(1, 1)), 4);
  // Operations that read the engine wholesale wait for the write (they must not see it without 4).
  let verified = false;
  const verify = s.verify().then((r) => {
    verified = true;
    return r;
  });
  const written = s.engineWritten();
  await settle();
  assert.equal(verified, false, 'verify waits for the held batch');
  gate.release();
  await written;
  assert.ok((await verify).ok);
  assert.equal(await s.commitBlock(5, block5()), 5);
  assert.equal(toHex(s.committedRoot()), expected.root5);
  await s.engineWritten();
  assert.ok((await s.verify()).ok);
  await s.close();
});

test('write-behind: the next block hashes against the held batch (account read-modify-write, delete)', async () => {
  const expected = await reference();
  const { s, gate } = await threeBlocksThenHold(simEnv());
  await s.commitBlock(4, block4());
  // Block 5 is applied and hashed while block 4's batch is still held: its old values (the account
  // row, the slot it deletes) can only come from the committed block in flight.
  await s.applyChangeSets(5, block5());
  assert.equal(gate.waiting, 1, 'block 4 still in flight while block 5 was applied');
  assert.equal(toHex(s.workingRoot()), expected.root5);
  const commit5 = s.commit(5);
  gate.release();
  assert.equal(await commit5, 5);
  assert.equal(toHex(s.committedRoot()), expected.root5);
  await s.engineWritten();
  assert.ok((await s.verify()).ok, 'the engine agrees with the roots after both batches');
  assert.deepEqual(s.get('evm', codeHashKey(1)), word(9));
  assert.deepEqual(s.get('evm', nonceKey(1)), u64(5));
  assert.equal(s.get('evm', storageKey(1, 1)), undefined);
  await s.close();
});

test('write-behind: a held batch that fails during close() makes close reject; the block survives from the WAL', async () => {
  const expected = await reference();
  let env = simEnv();
  const { s, engine, gate } = await threeBlocksThenHold(env);
  assert.equal(await s.commitBlock(4, block4()), 4);
  engine.failNextWrites(1, 'ENOSPC');
  const closing = s.close();
  gate.release();
  // close() is the only call left to the caller: the failure of an acknowledged block's engine
  // batch must not be swallowed (the node would shut down believing the engine is healthy).
  await assert.rejects(closing, expectCode('IO_FATAL'));
  env = crashEnv(env, new Rng(11), { engine: 'subset' });
  const again = await openSim(env, { checkpointIntervalBlocks: 100 });
  assert.equal(again.version, 4, 'block 4 was acknowledged: it is replayed from the WAL');
  assert.equal(toHex(again.committedRoot()), expected.root4);
  assert.deepEqual(again.get('evm', storageKey(1, 1)), word(41));
  assert.ok((await again.verify()).ok);
  await again.close();
});

test('write-behind: close() rejects for a batch that failed behind an acknowledged commit before close', async () => {
  const env = simEnv();
  const s = await openSim(env, { checkpointIntervalBlocks: 100 });
  await s.commitBlock(1, blockAt(1));
  await s.engineWritten();
  const engine = engineOf(env);
  const gate = new WriteGate(engine);
  gate.hold();
  engine.failNextWrites(1);
  assert.equal(await s.commitBlock(2, blockAt(2)), 2, 'acknowledged: its WAL record is durable');
  gate.release();
  await settle();
  // The batch failed with no call in flight: the first call the caller makes must report it, and if
  // that call is close(), close must reject too.
  assert.throws(() => s.get('evm', storageKey(1, 1)), expectCode('IO_FATAL'));
  await assert.rejects(s.close(), expectCode('IO_FATAL'));
});

test('write-behind: WAL truncation waits for a held checkpoint batch; a crash meanwhile replays from the durable checkpoint', async () => {
  const expected: string[] = [];
  {
    const ref = await openSim(simEnv(), { checkpointIntervalBlocks: 4 });
    for (let h = 1; h <= 12; h++) {
      await ref.commitBlock(h, blockAt(h));
      expected[h] = toHex(ref.committedRoot());
    }
    await ref.close();
  }
  let env = simEnv();
  // Small WAL segments, snapshots every 4 blocks, a window of 4: retention truncates the WAL front.
  const options = {
    checkpointIntervalBlocks: 4,
    snapshotIntervalBlocks: 4,
    retainBlocks: 4,
    walSegmentBytes: 4096,
  };
  const s = await openSim(env, options);
  for (let h = 1; h <= 11; h++) await s.commitBlock(h, blockAt(h));
  await s.engineWritten();
  await s.snapshot();
  const before = s.describe();
  assert.ok(before.wal.first > 1, 'retention truncates the WAL front in this configuration');
  const gate = new WriteGate(engineOf(env));
  gate.hold();
  // Block 12 is a checkpoint block and a snapshot block: its synced batch is held, and the snapshot
  // (with its retention) is queued behind it.
  assert.equal(await s.commitBlock(12, blockAt(12)), 12);
  await settle();
  const during = s.describe();
  assert.equal(during.checkpoint, before.checkpoint, 'the held checkpoint is not counted as durable');
  assert.equal(during.wal.first, before.wal.first, 'no WAL record was dropped while the batch is held');
  assert.ok(during.wal.first <= before.checkpoint + 1, 'replay from the durable checkpoint stays possible');
  // The process dies with the batch still held: the engine lost it (and every unsynced batch).
  env = crashEnv(env, new Rng(5), { engine: 'none' });
  const again = await openSim(env, options);
  assert.equal(again.version, 12);
  assert.equal(toHex(again.committedRoot()), expected[12]);
  assert.ok((await again.verify()).ok);
  await again.close();
});
