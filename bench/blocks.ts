/**
 * Block store benchmark: `npm run bench -- blocks [--quick]`.
 *
 * 1. Writes: 4 KiB and 64 KiB blocks, one FullCommitQC per 16 blocks, one flush per batch
 *    (QC + its 16 blocks), on Cairn's store (value log on our WAL + classic-level index) and on the
 *    naive classic-level layout (number → block, hash → number, one synced batch per flush).
 * 2. Reads: on a store of 200,000 blocks of 4 KiB (quick: 20,000), random reads by number and by
 *    hash on both, p50/p99 latency and reads/s.
 * Last line: the JSON summary of DESIGN.md §5.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import type { BlockStore } from '../src/blocks/blockStore.ts';
import { openBlockStore } from '../src/blocks/openBlockStore.ts';
import { decodeBlock, encodeBlock, encodeFullCommitQC } from '../src/domain/codecs.ts';
import { hashBlockHeader, hashPayload } from '../src/domain/crypto.ts';
import type { Block, BlockHeader, FullCommitQC, Hash } from '../src/domain/types.ts';
import { ZERO_HASH } from '../src/domain/types.ts';
import { Rng } from '../src/lib/rng.ts';

const BLOCKS_PER_QC = 16;
const LANE = 'ab'.repeat(32);

/** One lane of blocks, one CommitQC per 16 (unsigned: signatures are not what is measured). */
class BatchSource {
  private parent: Hash = ZERO_HASH;
  private next = 0;
  private readonly payload: Uint8Array;
  constructor(
    blockBytes: number,
    private readonly rng: Rng,
  ) {
    this.payload = rng.bytes(blockBytes);
  }
  batch(): { qc: FullCommitQC; blocks: { number: number; block: Block; hash: Hash }[] } {
    const blocks: { number: number; block: Block; hash: Hash }[] = [];
    const headers: BlockHeader[] = [];
    const first = this.next;
    for (let i = 0; i < BLOCKS_PER_QC; i++) {
      const payload = this.payload.slice();
      new DataView(payload.buffer).setFloat64(0, this.next + this.rng.next());
      const header: BlockHeader = {
        lane: LANE,
        blockNumber: this.next,
        parentHash: this.parent,
        payloadHash: hashPayload(payload),
      };
      const hash = hashBlockHeader(header);
      this.parent = hash;
      headers.push(header);
      blocks.push({ number: this.next, block: { header, payload }, hash });
      this.next++;
    }
    const qc: FullCommitQC = {
      qc: {
        roadIndex: first / BLOCKS_PER_QC,
        viewNumber: 0,
        createdAtMs: 1_700_000_000_000 + first,
        globalFirst: first,
        laneRanges: [{ lane: LANE, first, next: this.next, lastHash: this.parent }],
        signatures: [],
      },
      headers,
    };
    return { qc, blocks };
  }
}

interface Store {
  writeBatch(b: ReturnType<BatchSource['batch']>): Promise<void>;
  readByNumber(n: number): boolean;
  readByHash(h: Hash): boolean;
  close(): Promise<void>;
}

async function cairnStore(dir: string): Promise<Store> {
  const store: BlockStore = await openBlockStore({ dir });
  return {
    async writeBatch(b) {
      store.writeQC(b.qc);
      for (const x of b.blocks) store.writeBlock(x.number, x.block);
      await store.flush();
    },
    readByNumber: (n) => store.readBlock(n).status === 'found',
    readByHash: (h) => store.readBlockByHash(h).status === 'found',
    close: () => store.close(),
  };
}

function key(prefix: number, n: number): Uint8Array {
  const k = new Uint8Array(9);
  k[0] = prefix;
  new DataView(k.buffer).setBigUint64(1, BigInt(n));
  return k;
}

async function naiveStore(dir: string): Promise<Store> {
  const db = new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const hk = (h: Hash): Uint8Array => {
    const k = new Uint8Array(33);
    k[0] = 0x68;
    k.set(h, 1);
    return k;
  };
  return {
    async writeBatch(b) {
      const batch = db.batch();
      batch.put(key(0x71, b.qc.qc.globalFirst), encodeFullCommitQC(b.qc));
      for (const x of b.blocks) {
        batch.put(key(0x62, x.number), encodeBlock(x.block));
        batch.put(hk(x.hash), key(0, x.number).subarray(1));
      }
      await batch.write({ sync: true });
    },
    // Decoded like Cairn's reads, so both sides return a Block.
    readByNumber: (n) => decodeOrFalse(db.getSync(key(0x62, n))),
    readByHash(h) {
      const n = db.getSync(hk(h));
      if (n === undefined) return false;
      return decodeOrFalse(
        db.getSync(key(0x62, Number(new DataView(n.buffer, n.byteOffset, 8).getBigUint64(0)))),
      );
    },
    close: () => db.close(),
  };
}

function decodeOrFalse(bytes: Uint8Array | undefined): boolean {
  return bytes !== undefined && decodeBlock(bytes).payload.byteLength > 0;
}

async function measureWrites(
  open: (dir: string) => Promise<Store>,
  blockBytes: number,
  blocks: number,
): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-blocks-'));
  const store = await open(dir);
  const src = new BatchSource(blockBytes, new Rng(blockBytes));
  let elapsedNs = 0n;
  try {
    for (let i = 0; i < blocks / BLOCKS_PER_QC; i++) {
      const b = src.batch(); // generation is not timed
      const t0 = process.hrtime.bigint();
      await store.writeBatch(b);
      elapsedNs += process.hrtime.bigint() - t0;
    }
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return (blocks * blockBytes) / (1024 * 1024) / (Number(elapsedNs) / 1e9);
}

interface ReadFigures {
  byNumberP50Ms: number;
  byNumberP99Ms: number;
  byNumberPerSec: number;
  byHashP50Ms: number;
  byHashP99Ms: number;
  byHashPerSec: number;
}

async function measureReads(
  open: (dir: string) => Promise<Store>,
  blocks: number,
  reads: number,
): Promise<ReadFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-blocks-'));
  const store = await open(dir);
  const src = new BatchSource(4096, new Rng(4));
  const hashes: Hash[] = [];
  try {
    for (let i = 0; i < blocks / BLOCKS_PER_QC; i++) {
      const b = src.batch();
      for (const x of b.blocks) hashes.push(x.hash);
      await store.writeBatch(b);
    }
    const rng = new Rng(99);
    const one = (fn: (i: number) => boolean): { p50: number; p99: number; perSec: number } => {
      const lat = new Float64Array(reads);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < reads; i++) {
        const n = rng.int(0, blocks);
        const s = process.hrtime.bigint();
        if (!fn(n)) throw new Error(`read of block ${n} failed`);
        lat[i] = Number(process.hrtime.bigint() - s) / 1e6;
      }
      const total = Number(process.hrtime.bigint() - t0) / 1e9;
      lat.sort();
      return {
        p50: lat[Math.floor(reads * 0.5)]!,
        p99: lat[Math.floor(reads * 0.99)]!,
        perSec: reads / total,
      };
    };
    one((n) => store.readByNumber(n)); // warm-up pass
    const num = one((n) => store.readByNumber(n));
    const hash = one((n) => store.readByHash(hashes[n]!));
    return {
      byNumberP50Ms: num.p50,
      byNumberP99Ms: num.p99,
      byNumberPerSec: Math.round(num.perSec),
      byHashP50Ms: hash.p50,
      byHashP99Ms: hash.p99,
      byHashPerSec: Math.round(hash.perSec),
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const round = (x: number, digits = 4): number => Number(x.toPrecision(digits));

export async function run(args: string[]): Promise<void> {
  const quick = args.includes('--quick');
  const w4 = quick ? 4_000 : 16_000;
  const w64 = quick ? 800 : 3_200;
  const readStore = quick ? 20_000 : 200_000;
  const reads = quick ? 20_000 : 100_000;
  console.log(
    `blocks bench (${quick ? 'quick' : 'full'}): writes ${w4} × 4 KiB, ${w64} × 64 KiB; reads on ${readStore} × 4 KiB`,
  );

  // Interleave Cairn and naive runs so machine noise hits both alike.
  const cairn4 = await measureWrites(cairnStore, 4096, w4);
  const naive4 = await measureWrites(naiveStore, 4096, w4);
  const cairn64 = await measureWrites(cairnStore, 65536, w64);
  const naive64 = await measureWrites(naiveStore, 65536, w64);
  const cairnReads = await measureReads(cairnStore, readStore, reads);
  const naiveReads = await measureReads(naiveStore, readStore, reads);

  const rows: [string, string, string][] = [
    ['write 4 KiB blocks (MB/s)', cairn4.toFixed(1), naive4.toFixed(1)],
    ['write 64 KiB blocks (MB/s)', cairn64.toFixed(1), naive64.toFixed(1)],
    [
      'read by number p50 / p99 (ms)',
      `${cairnReads.byNumberP50Ms.toFixed(4)} / ${cairnReads.byNumberP99Ms.toFixed(4)}`,
      `${naiveReads.byNumberP50Ms.toFixed(4)} / ${naiveReads.byNumberP99Ms.toFixed(4)}`,
    ],
    ['read by number (reads/s)', String(cairnReads.byNumberPerSec), String(naiveReads.byNumberPerSec)],
    [
      'read by hash p50 / p99 (ms)',
      `${cairnReads.byHashP50Ms.toFixed(4)} / ${cairnReads.byHashP99Ms.toFixed(4)}`,
      `${naiveReads.byHashP50Ms.toFixed(4)} / ${naiveReads.byHashP99Ms.toFixed(4)}`,
    ],
    ['read by hash (reads/s)', String(cairnReads.byHashPerSec), String(naiveReads.byHashPerSec)],
  ];
  console.log(`${'measure'.padEnd(32)}${'cairn'.padStart(20)}${'naive classic-level'.padStart(24)}`);
  for (const [m, a, b] of rows) console.log(`${m.padEnd(32)}${a.padStart(20)}${b.padStart(24)}`);

  const summary = {
    bench: 'blocks',
    metrics: {
      write4KiBMBps: round(cairn4),
      write64KiBMBps: round(cairn64),
      readByNumberP50Ms: round(cairnReads.byNumberP50Ms),
      readByNumberP99Ms: round(cairnReads.byNumberP99Ms),
      readByNumberPerSec: cairnReads.byNumberPerSec,
      readByHashP50Ms: round(cairnReads.byHashP50Ms),
      readByHashP99Ms: round(cairnReads.byHashP99Ms),
      readByHashPerSec: cairnReads.byHashPerSec,
      readStoreBlocks: readStore,
    },
    baseline: {
      write4KiBMBps: round(naive4),
      write64KiBMBps: round(naive64),
      readByNumberP50Ms: round(naiveReads.byNumberP50Ms),
      readByNumberP99Ms: round(naiveReads.byNumberP99Ms),
      readByNumberPerSec: naiveReads.byNumberPerSec,
      readByHashP50Ms: round(naiveReads.byHashP50Ms),
      readByHashP99Ms: round(naiveReads.byHashP99Ms),
      readByHashPerSec: naiveReads.byHashPerSec,
    },
    ratios: {
      writeMBpsVsNaive: round(cairn64 / naive64, 3),
      write4KiBMBpsVsNaive: round(cairn4 / naive4, 3),
      readByNumberP50VsNaive: round(cairnReads.byNumberP50Ms / naiveReads.byNumberP50Ms, 3),
      readByHashP50VsNaive: round(cairnReads.byHashP50Ms / naiveReads.byHashP50Ms, 3),
    },
  };
  console.log(JSON.stringify(summary));
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  await run(process.argv.slice(2));
}
