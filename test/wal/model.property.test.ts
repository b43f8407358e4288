import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { seedFromEnv } from '../../src/lib/rng.ts';
import type { WalOptions } from '../../src/wal/types.ts';
import { Wal } from '../../src/wal/wal.ts';
import { tempDir, WrappingFileSystem } from './helpers.ts';

/**
 * Random sequences of operations against a plain array model. Small segments (with records up to
 * twice their size) cross many segment boundaries, including oversized-record segments. `kill`
 * abandons the log without closing it (buffers lost, OS keeps what was written): the reopened
 * log must be a prefix holding at least everything that was durable.
 */
type Op =
  | { kind: 'append'; sizes: number[] }
  | { kind: 'sync' }
  | { kind: 'truncateFront'; at: number }
  | { kind: 'truncateBack'; at: number }
  | { kind: 'reset'; ahead: number }
  | { kind: 'reopen' }
  | { kind: 'kill' }
  | { kind: 'read'; at: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      sizes: fc.array(fc.nat(300), { minLength: 1, maxLength: 6 }),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ kind: 'sync' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('truncateFront' as const),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('truncateBack' as const),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reset' as const), ahead: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'kill' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('read' as const),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
);

let payloadCounter = 0;
function makePayload(size: number): Uint8Array {
  const tag = ++payloadCounter;
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (tag * 131 + i) & 0xff;
  return out;
}

async function runScenario(ops: Op[], segmentBytes: number, preallocate: boolean): Promise<void> {
  const { dir, cleanup } = tempDir('cairn-walprop-');
  let fs = new WrappingFileSystem();
  const options = (): WalOptions => ({ fs, dir, segmentBytes, preallocate, maxRecordBytes: 1024 });
  let wal = await Wal.open(options());
  const model = { first: 0, records: [] as Uint8Array[] }; // records[i] holds index first + i
  const next = () => model.first + model.records.length;
  const pick = (frac: number) => model.first + Math.floor(frac * (model.records.length + 0.999));
  const check = (label: string) => {
    assert.equal(wal.firstIndex, model.first, `${label}: firstIndex`);
    assert.equal(wal.nextIndex, next(), `${label}: nextIndex`);
    const got = [...wal.iterate()];
    assert.equal(got.length, model.records.length, `${label}: record count`);
    for (const [i, r] of got.entries())
      assert.deepEqual(r.payload, model.records[i], `${label}: record ${r.index}`);
  };
  try {
    for (const [step, op] of ops.entries()) {
      const label = `step ${step} ${op.kind}`;
      switch (op.kind) {
        case 'append': {
          const payloads = op.sizes.map(makePayload);
          assert.equal(wal.append(payloads, next()), next());
          model.records.push(...payloads);
          break;
        }
        case 'sync':
          await wal.sync();
          assert.equal(wal.durableIndex >= next(), true, `${label}: durable after sync`);
          break;
        case 'truncateFront': {
          const at = pick(op.at);
          await wal.truncateFront(at);
          model.records.splice(0, at - model.first);
          model.first = at;
          break;
        }
        case 'truncateBack': {
          const at = pick(op.at);
          await wal.truncateBack(at);
          model.records.length = at - model.first;
          break;
        }
        case 'reset': {
          const at = next() + op.ahead;
          await wal.reset(at);
          model.first = at;
          model.records = [];
          break;
        }
        case 'read': {
          if (model.records.length === 0) break;
          const at = Math.min(pick(op.at), next() - 1);
          assert.deepEqual(wal.read(at), model.records[at - model.first], label);
          break;
        }
        case 'reopen':
          await wal.close();
          fs = new WrappingFileSystem();
          wal = await Wal.open(options());
          break;
        case 'kill': {
          const durable = wal.durableIndex;
          fs.kill();
          fs = new WrappingFileSystem();
          wal = await Wal.open(options());
          assert.equal(wal.firstIndex, model.first, `${label}: first index is durable`);
          assert.ok(
            wal.nextIndex >= Math.max(durable, model.first) && wal.nextIndex <= next(),
            `${label}: next ${wal.nextIndex} outside [${durable}, ${next()}]`,
          );
          model.records.length = wal.nextIndex - model.first;
          break;
        }
      }
      check(label);
    }
    wal.verify();
    await wal.close();
    const reopened = await Wal.open({ ...options(), fs: new WrappingFileSystem() });
    wal = reopened;
    check('final reopen');
    await reopened.close();
  } finally {
    cleanup();
  }
}

test('WAL matches an array model under random operations, reopen and kill', async () => {
  const seed = seedFromEnv();
  console.log('seed', seed, '(replay with CAIRN_SEED)');
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { minLength: 1, maxLength: 30 }),
      fc.constantFrom(160, 300, 700),
      fc.boolean(),
      (ops, segmentBytes, preallocate) => runScenario(ops, segmentBytes, preallocate),
    ),
    { seed, numRuns: Number(process.env.CAIRN_PROPERTY_RUNS ?? 120) },
  );
});
