// The write path encodes a block once, straight from the caller's objects (encodeBlock), and the hot
// tier indexes it from those bytes (visitBlockEntry, PostingBucket.addAt). These tests hold the
// fast path to the slow, obvious one: the same bytes as normalizing then encoding, the same
// receipts and logs as decoding, the same postings as a list per value.
import assert from 'node:assert/strict';
import test from 'node:test';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import {
  decodeBlockEntry,
  encodeBlock,
  encodeBlockEntry,
  entryBlockNumber,
  entryChecksum,
  normalizeBlock,
  visitBlockEntry,
} from '../../src/receipts/codec.ts';
import { decodePostings, type Posting, PostingBucket } from '../../src/receipts/postings.ts';
import type { BlockReceiptsInput, LogInput, ReceiptInput } from '../../src/receipts/types.ts';
import { heavyBlock, makeBlock } from './support/fixtures.ts';

const receiptsOf = (b: BlockReceiptsInput): ReceiptInput[] => b.receipts as ReceiptInput[];
const logsOf = (r: ReceiptInput): LogInput[] => r.logs as LogInput[];

const seed = seedFromEnv();
console.log(`encodeOnce seed ${seed} (replay with CAIRN_SEED=${seed})`);

function blocks(count: number): BlockReceiptsInput[] {
  const rng = new Rng(seed);
  // Block numbers past 2^32 too: the u64 is written as two halves.
  return Array.from({ length: count }, (_, i) => makeBlock(seed, i * 7919 + rng.int(0, 2 ** 20) * 2 ** 21));
}

test('encodeBlock writes the bytes of normalizeBlock + encodeBlockEntry and keeps nothing of the input', () => {
  for (const input of blocks(200)) {
    const encoded = encodeBlock(input);
    const reference = encodeBlockEntry(normalizeBlock(input)).payload;
    assert.deepEqual(encoded.payload, reference, `block ${input.number}`);
    assert.equal(encoded.crc, entryChecksum(reference));
    assert.equal(encoded.number, input.number);
    assert.equal(entryBlockNumber(encoded.payload), input.number);
    assert.deepEqual(encoded.hash, input.hash);
    // Changing the caller's arrays afterwards changes nothing that was encoded.
    const before = encoded.payload.slice();
    input.hash.fill(0);
    for (const r of input.receipts) {
      r.txHash.fill(0);
      for (const log of r.logs) log.address.fill(0xee);
    }
    assert.deepEqual(encoded.payload, before);
    assert.notDeepEqual(encoded.hash, input.hash);
  }
});

test('encodeBlock rejects what normalizeBlock rejects, with the same caller error, before encoding', () => {
  const good = makeBlock(seed, 3, { maxReceipts: 3 });
  const bad: [string, (b: BlockReceiptsInput) => void][] = [
    ['short block hash', (b) => Object.assign(b, { hash: new Uint8Array(31) })],
    ['negative number', (b) => Object.assign(b, { number: -1 })],
    ['duplicate txIndex', (b) => receiptsOf(b).push({ ...b.receipts[0]! })],
    ['bad status', (b) => Object.assign(b.receipts[0]!, { status: 2 })],
    [
      'short address',
      (b) =>
        logsOf(b.receipts[0]!).push({ address: new Uint8Array(19), topics: [], data: new Uint8Array(0) }),
    ],
    [
      'five topics',
      (b) =>
        logsOf(b.receipts[0]!).push({
          address: new Uint8Array(20),
          topics: Array.from({ length: 5 }, () => new Uint8Array(32)),
          data: new Uint8Array(0),
        }),
    ],
    ['gas price not a bigint', (b) => Object.assign(b.receipts[0]!, { effectiveGasPrice: 1 })],
  ];
  for (const [what, spoil] of bad) {
    const input = structuredClone(good);
    if (input.receipts.length === 0)
      receiptsOf(input).push(structuredClone(makeBlock(seed, 4, { maxReceipts: 1 }).receipts[0]!));
    spoil(input);
    let expected: unknown;
    try {
      normalizeBlock(input);
    } catch (err) {
      expected = err;
    }
    assert.ok(expected, `${what}: normalizeBlock accepted it`);
    assert.throws(
      () => encodeBlock(input),
      (err: unknown) => {
        assert.equal((err as { code?: string }).code, 'INVALID_ARGUMENT', what);
        assert.equal((err as Error).message, (expected as Error).message, what);
        return true;
      },
    );
  }
});

test('visitBlockEntry hands out every receipt and log of the entry at its offsets, in order', () => {
  for (const input of blocks(100)) {
    const { payload } = encodeBlock(input);
    const decoded = decodeBlockEntry(payload);
    const seen: string[] = [];
    const logs = visitBlockEntry(payload, {
      receipt(entry, txHashAt, txIndex) {
        seen.push(`r ${Buffer.from(entry.subarray(txHashAt, txHashAt + 32)).toString('hex')} ${txIndex}`);
      },
      log(entry, addressAt, topic0At, txIndex, logIndex) {
        const address = Buffer.from(entry.subarray(addressAt, addressAt + 20)).toString('hex');
        const t0 = topic0At < 0 ? '-' : Buffer.from(entry.subarray(topic0At, topic0At + 32)).toString('hex');
        seen.push(`l ${address} ${t0} ${txIndex} ${logIndex}`);
      },
    });
    const expected: string[] = [];
    let count = 0;
    for (const r of decoded.receipts) {
      expected.push(`r ${Buffer.from(r.txHash).toString('hex')} ${r.txIndex}`);
      r.logs.forEach((log, i) => {
        const t0 = log.topics[0] === undefined ? '-' : Buffer.from(log.topics[0]).toString('hex');
        expected.push(
          `l ${Buffer.from(log.address).toString('hex')} ${t0} ${r.txIndex} ${r.firstLogIndex + i}`,
        );
        count++;
      });
    }
    assert.deepEqual(seen, expected);
    assert.equal(logs, count);
  }
});

test('visitBlockEntry refuses an entry whose lengths run past it (CORRUPT, nothing read out of bounds)', () => {
  const { payload } = encodeBlock(heavyBlock(new Rng(seed), 5));
  const noop = { receipt() {}, log() {} };
  for (let cut = 1; cut < payload.length; cut += Math.max(1, payload.length >> 6)) {
    const truncated = payload.slice(0, payload.length - cut);
    assert.throws(() => visitBlockEntry(truncated, noop), { code: 'CORRUPT' }, `cut ${cut}`);
  }
  // A log's topic count or data length that runs past its receipt body.
  const logsAt: number[] = [];
  visitBlockEntry(payload, { receipt() {}, log: (_e, addressAt) => logsAt.push(addressAt) });
  for (const addressAt of [logsAt[0]!, logsAt[logsAt.length - 1]!]) {
    const topics = payload.slice();
    topics[addressAt + 20] = 255;
    assert.throws(() => visitBlockEntry(topics, noop), { code: 'CORRUPT' });
    const data = payload.slice();
    const dataLengthAt = addressAt + 21 + 32 * payload[addressAt + 20]!;
    data.fill(0xff, dataLengthAt, dataLengthAt + 4);
    assert.throws(() => visitBlockEntry(data, noop), { code: 'CORRUPT' });
  }
});

test('a posting bucket fed by offsets holds what a list per value holds, also after a drop below a floor', () => {
  const rng = new Rng(seed ^ 0x5eed);
  const span = 64;
  const values = Array.from({ length: 40 }, () => rng.bytes(rng.bool() ? 20 : 32));
  // Values that share their first bytes and their last bytes (only the middle differs).
  for (let i = 0; i < 4; i++) {
    const v = new Uint8Array(32);
    v[12] = i + 1;
    values.push(v);
  }
  for (let round = 0; round < 20; round++) {
    const bucket = 3 + round;
    const b = new PostingBucket(bucket, span, round * 10);
    const model = new Map<number, Posting[]>();
    let logIndex = 0;
    for (let block = bucket * span; block < (bucket + 1) * span; block++) {
      for (let n = rng.int(0, 12); n > 0; n--) {
        const which = rng.int(0, values.length);
        const value = values[which]!;
        // Embedded in a larger buffer at an odd offset, as inside an encoded entry.
        const host = new Uint8Array(value.length + 9);
        host.set(value, 5);
        const txIndex = rng.int(0, 2 ** 32);
        b.addAt(value.length === 20 ? 'address' : 'topic', host, 5, value.length, block, txIndex, logIndex);
        const list = model.get(which) ?? [];
        list.push({ block, txIndex, logIndex });
        model.set(which, list);
        logIndex++;
      }
    }
    const floor = rng.bool() ? bucket * span + rng.int(0, span) : 0;
    if (floor > 0) b.dropBelow(floor);
    for (let which = 0; which < values.length; which++) {
      const value = values[which]!;
      const kind = value.length === 20 ? 'address' : 'topic';
      const want = (model.get(which) ?? []).filter((p) => p.block >= floor);
      const got: Posting[] = [];
      b.collect(kind, value, 0, Number.MAX_SAFE_INTEGER, got);
      assert.deepEqual(got, want, `round ${round} value ${which}`);
      const p = [...(kind === 'address' ? b.addresses : b.topics).values()].find((v) =>
        Buffer.from(v.value).equals(value),
      );
      if (p === undefined) {
        assert.equal(want.length, 0);
        continue;
      }
      assert.equal(b.keptCount(p), want.length);
      const encoded = b.encode(p, new Uint8Array(want.length * 10 + 4));
      const decoded: Posting[] = [];
      decodePostings(encoded, bucket, span, 0, Number.MAX_SAFE_INTEGER, decoded);
      assert.deepEqual(decoded, want);
    }
  }
});
