// Deterministic receipt blocks for the receipt-store tests: a small pool of addresses and topic0
// values so filters hit, 0-5 receipts per block, 0-4 logs per receipt, 0-4 topics per log.
import { Rng } from '../../../src/lib/rng.ts';
import type { BlockReceiptsInput, Log, LogFilter, ReceiptInput } from '../../../src/receipts/types.ts';

export const ADDRESSES = Array.from({ length: 6 }, (_, i) =>
  Uint8Array.from({ length: 20 }, (_, j) => (i * 31 + j) & 255),
);
export const TOPICS = Array.from({ length: 5 }, (_, i) =>
  Uint8Array.from({ length: 32 }, (_, j) => (i * 17 + j + 1) & 255),
);

export function blockHash(n: number, salt = 0): Uint8Array {
  const h = new Uint8Array(32);
  new DataView(h.buffer).setFloat64(0, n);
  h[31] = salt;
  h[30] = 0xbb;
  return h;
}

export function txHash(n: number, i: number): Uint8Array {
  const h = new Uint8Array(32);
  new DataView(h.buffer).setFloat64(0, n);
  new DataView(h.buffer).setUint32(8, i);
  h[31] = 0xcc;
  return h;
}

/** Block `n` of the chain seeded by `seed` (same inputs, same block). */
export function makeBlock(
  seed: number,
  n: number,
  options: { maxReceipts?: number } = {},
): BlockReceiptsInput {
  const rng = new Rng((seed * 1_000_003 + n) >>> 0);
  const count = rng.int(0, (options.maxReceipts ?? 5) + 1);
  const receipts: ReceiptInput[] = [];
  let cumulative = 0;
  for (let i = 0; i < count; i++) {
    const logs = Array.from({ length: rng.int(0, 5) }, () => ({
      address: rng.pick(ADDRESSES),
      topics: Array.from({ length: rng.int(0, 5) }, () => rng.pick(TOPICS)),
      data: rng.bytes(rng.int(0, 70)),
    }));
    const gasUsed = rng.int(21_000, 200_000);
    cumulative += gasUsed;
    const creation = rng.bool(0.1);
    receipts.push({
      txHash: txHash(n, i),
      txIndex: i,
      type: rng.int(0, 3),
      status: rng.bool(0.9) ? 1 : 0,
      from: rng.pick(ADDRESSES),
      to: creation ? undefined : rng.pick(ADDRESSES),
      contractAddress: creation ? rng.bytes(20) : undefined,
      gasUsed,
      cumulativeGasUsed: cumulative,
      effectiveGasPrice: BigInt(rng.int(1, 1_000_000)) * 1_000_000_000n,
      logs,
    });
  }
  // Hand them over out of order: the store orders by txIndex.
  receipts.reverse();
  return { number: n, hash: blockHash(n), receipts };
}

/** The logs of `blocks` a filter must return, computed the simple way (the reference model). */
export function expectedLogs(
  blocks: readonly BlockReceiptsInput[],
  f: LogFilter,
  from: number,
  to: number,
): Log[] {
  const out: Log[] = [];
  const eq = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0;
  for (const b of blocks) {
    if (b.number < from || b.number > to) continue;
    let logIndex = 0;
    for (const r of [...b.receipts].sort((x, y) => x.txIndex - y.txIndex)) {
      for (const log of r.logs) {
        const idx = logIndex++;
        if (f.addresses && f.addresses.length > 0 && !f.addresses.some((a) => eq(a, log.address))) continue;
        const topics = f.topics ?? [];
        let ok = true;
        for (let i = 0; i < topics.length; i++) {
          const want = topics[i];
          if (!want || want.length === 0 || want.includes(null)) continue;
          const have = log.topics[i];
          if (!have || !want.some((t) => t !== null && eq(t, have))) ok = false;
        }
        if (!ok) continue;
        out.push({
          address: log.address,
          topics: [...log.topics],
          data: log.data,
          blockNumber: b.number,
          blockHash: b.hash,
          txHash: r.txHash,
          txIndex: r.txIndex,
          logIndex: idx,
          removed: false,
        });
      }
    }
  }
  return out;
}

/** Comparable form of logs (hex strings), for deepEqual across engines. */
export function logKeys(logs: readonly Log[]): string[] {
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
  return logs.map(
    (l) =>
      `${l.blockNumber}/${l.logIndex} tx${l.txIndex} ${hex(l.txHash).slice(0, 8)} ${hex(l.address)} [${l.topics.map(hex).join(',')}] ${hex(l.data)} ${hex(l.blockHash).slice(0, 8)}`,
  );
}

/** Blocks of ~61 KB of receipts (40 receipts, 4 logs each with 256 bytes of data). */
export function heavyBlock(rng: Rng, n: number): BlockReceiptsInput {
  return {
    number: n,
    hash: blockHash(n),
    receipts: Array.from({ length: 40 }, (_, i) => ({
      txHash: txHash(n, i),
      txIndex: i,
      type: 2,
      status: 1,
      from: rng.bytes(20),
      to: rng.bytes(20),
      contractAddress: undefined,
      gasUsed: 21_000,
      cumulativeGasUsed: 21_000 * (i + 1),
      effectiveGasPrice: 1_000_000_000n,
      logs: Array.from({ length: 4 }, () => ({
        address: rng.bytes(20),
        topics: [rng.bytes(32), rng.bytes(32)],
        data: rng.bytes(256),
      })),
    })),
  };
}
