// The archive writer's two stage layouts (src/receipts/stageLayouts.ts) write the same Parquet
// files, byte for byte: `chunks` (an entry walked once into DuckDB data chunks, a log staged as two
// BLOB views the COPY cuts into columns) against `rows` (the previous path: decoded objects, one
// appender call per value). Covered: both log orders, one sort and sorted slices, blocks staged
// ahead of a window and carried over to the next, empty blocks, contract creations, logs with 0-4
// topics and empty data. And the entry walker (codec.ts walkBlockEntry) reports exactly what
// decodeBlockEntry decodes, and rejects damaged entries with CORRUPT.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { crc32c } from '../../src/lib/crc32c.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import {
  decodeBlockEntry,
  type EntryRow,
  encodeBlockEntry,
  normalizeBlock,
  walkBlockEntry,
} from '../../src/receipts/codec.ts';
import { ParquetWindowWriter } from '../../src/receipts/parquetWindowWriter.ts';
import type { StageLayoutName } from '../../src/receipts/stageLayouts.ts';
import type { BlockEntry, StoredReceipt } from '../../src/receipts/types.ts';
import { makeBlock } from './support/fixtures.ts';
import { withTempDir } from './support/harness.ts';

const WINDOW = 300;
const AHEAD = 7;

const entry = (seed: number, n: number): Uint8Array =>
  encodeBlockEntry(normalizeBlock(makeBlock(seed, n, { maxReceipts: 12 }))).payload;

/**
 * Stages two windows (plus blocks ahead) in batches of `batches` sizes with one layout and writes
 * both windows; returns the four files' bytes.
 */
async function writeTwoWindows(
  layout: StageLayoutName,
  seed: number,
  logOrder: 'address' | 'block',
  sortSliceBytes: number | undefined,
  batchSizes: readonly number[],
  dir: string,
): Promise<Buffer[]> {
  const w = await ParquetWindowWriter.open({
    threads: 1,
    memoryLimit: '256MB',
    rowGroupRows: 2_048,
    logOrder,
    stageLayout: layout,
    ...(sortSliceBytes === undefined ? {} : { sortSliceBytes }),
  });
  const files: Buffer[] = [];
  try {
    let next = 0;
    let k = 0;
    const stageTo = async (last: number): Promise<void> => {
      while (next <= last) {
        const size = Math.min(batchSizes[k++ % batchSizes.length]!, last - next + 1);
        const batch = Array.from({ length: size }, (_, i) => entry(seed, next + i));
        await w.stage(next, batch);
        next += size;
      }
    };
    for (let win = 0; win < 2; win++) {
      const first = win * WINDOW;
      const last = first + WINDOW - 1;
      await stageTo(last + AHEAD);
      assert.ok(w.covers(first, last), `${layout}: window ${win} staged`);
      const paths = [join(dir, `${layout}-${win}.receipts`), join(dir, `${layout}-${win}.logs`)] as const;
      const rows = await w.write(first, last, undefined, paths[0], paths[1]);
      assert.ok(rows.receiptRows > 0 && rows.logRows > 0);
      if (sortSliceBytes !== undefined) assert.ok(w.lastSlices.logs > 1, `${layout}: logs sorted in slices`);
      for (const p of paths) files.push(readFileSync(p));
    }
  } finally {
    w.close();
  }
  return files;
}

test('both stage layouts write byte-identical files (both log orders, one sort and slices, blocks carried over)', async () => {
  const seed = seedFromEnv();
  console.log(`stageLayouts seed ${seed} (replay with CAIRN_SEED=${seed})`);
  const rng = new Rng(seed);
  await withTempDir(async (dir) => {
    for (const logOrder of ['address', 'block'] as const) {
      for (const sortSliceBytes of [undefined, 40_000]) {
        const batchSizes = Array.from({ length: 5 }, () => rng.int(1, 90));
        const [rows, chunks] = [
          await writeTwoWindows('rows', seed, logOrder, sortSliceBytes, batchSizes, dir),
          await writeTwoWindows('chunks', seed, logOrder, sortSliceBytes, batchSizes, dir),
        ];
        const what = `${logOrder} order, ${sortSliceBytes === undefined ? 'one sort' : 'slices'}`;
        assert.equal(chunks.length, 4);
        for (let i = 0; i < 4; i++) {
          assert.ok(rows[i]!.equals(chunks[i]!), `${what}: file ${i} differs between the layouts`);
        }
      }
    }
  });
});

/** The block the walker reports, rebuilt as decodeBlockEntry's shape. */
function walked(bytes: Uint8Array): BlockEntry {
  const receipts: StoredReceipt[] = [];
  const view = (at: number, n: number): Uint8Array => bytes.subarray(at, at + n);
  const { number, hashAt } = walkBlockEntry(bytes, {
    receipt(r: EntryRow) {
      receipts.push({
        txHash: view(r.txHashAt, 32),
        txIndex: r.txIndex,
        type: r.type,
        status: r.status === 1 ? 1 : 0,
        from: view(r.fromAt, 20),
        to: r.toAt < 0 ? undefined : view(r.toAt, 20),
        contractAddress: r.contractAt < 0 ? undefined : view(r.contractAt, 20),
        gasUsed: Number(r.gasUsed),
        cumulativeGasUsed: Number(r.cumulativeGasUsed),
        effectiveGasPrice: r.effectiveGasPrice,
        firstLogIndex: r.firstLogIndex,
        logs: [],
      });
      assert.deepEqual(view(r.hashesAt, 32), view(r.blockHashAt, 32), 'hashes start with the block hash');
      assert.deepEqual(view(r.hashesAt + 32, 32), view(r.txHashAt, 32), 'then the tx hash');
    },
    log(r: EntryRow) {
      const receipt = receipts.at(-1)!;
      assert.equal(r.logIndex, receipt.firstLogIndex + receipt.logs.length);
      const topics = Array.from({ length: r.topicCount }, (_, t) => view(r.logAt + 21 + 32 * t, 32));
      const data = bytes.subarray(r.logEnd - r.dataLength, r.logEnd);
      receipt.logs.push({ address: view(r.logAt, 20), topics, data });
    },
  });
  return { number, hash: view(hashAt, 32), receipts };
}

test('the entry walker reports what decodeBlockEntry decodes', () => {
  const seed = seedFromEnv();
  for (let n = 0; n < 400; n++) {
    const bytes = entry(seed, n);
    const { bodies: _bodies, ...decoded } = decodeBlockEntry(bytes, true);
    assert.deepEqual(walked(bytes), decoded, `block ${n} (seed ${seed})`);
  }
});

/** `bytes` with its trailing CRC recomputed (a damage the CRC cannot see). */
function resealed(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setUint32(out.length - 4, crc32c(out.subarray(0, out.length - 4)), true);
  return out;
}

test('the entry walker rejects damaged entries with CORRUPT', () => {
  // Block 3 of seed 5 has receipts with logs (checked below), so every damage has a target.
  const good = entry(5, 3);
  const block = decodeBlockEntry(good);
  assert.ok(block.receipts.length > 0 && block.receipts.some((r) => r.logs.length > 0));
  const firstBody = 45 + 4;
  const cases: [string, Uint8Array][] = [];
  const flipped = good.slice();
  flipped[20]! ^= 1;
  cases.push(['a flipped byte', flipped]);
  const version = good.slice();
  version[0] = 9;
  cases.push(['an unknown entry version', resealed(version)]);
  const otherHash = good.slice();
  otherHash[firstBody + 1]! ^= 0xff;
  cases.push(["a body naming another block's hash", resealed(otherHash)]);
  const bodyVersion = good.slice();
  bodyVersion[firstBody] = 2;
  cases.push(['an unknown body version', resealed(bodyVersion)]);
  const longBody = good.slice();
  const view = new DataView(longBody.buffer);
  view.setUint32(45, view.getUint32(45, true) + 1, true);
  cases.push(['a body length past its end', resealed(longBody)]);
  // A receipt count one higher: the walker runs out of bodies.
  const count = good.slice();
  new DataView(count.buffer).setUint32(41, block.receipts.length + 1, true);
  cases.push(['a receipt count past the bodies', resealed(count)]);
  // Five topics on the first log of a receipt with logs.
  const withLogs = block.receipts.findIndex((r) => r.logs.length > 0);
  let at = 45;
  for (let i = 0; i < withLogs; i++) at += 4 + new DataView(good.buffer).getUint32(at, true);
  const body = at + 4;
  const r = block.receipts[withLogs]!;
  const logAt = body + 1 + 32 + 32 + 4 + 3 + 20 + (r.to ? 20 : 0) + (r.contractAddress ? 20 : 0) + 32;
  const topics = good.slice();
  topics[logAt + 20] = 5;
  cases.push(['a log with 5 topics', resealed(topics)]);
  cases.push(['a truncated entry', resealed(good.subarray(0, good.length - 7))]);
  const visitor = { receipt() {}, log() {} };
  for (const [what, bytes] of cases) {
    assert.throws(
      () => walkBlockEntry(bytes, visitor),
      (err) => isCairnError(err, 'CORRUPT'),
      `${what} is CORRUPT`,
    );
  }
  walkBlockEntry(good, visitor);
});
