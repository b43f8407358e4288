// A model archive engine for the simulated power-loss tests: it writes each window as our own
// block-entry encoding through Cairn's FileSystem (so the simulated disk can lose or keep it), and
// answers queries by decoding whole files. Production uses DuckDB + Parquet (duckdbArchive.ts).
import type { FileSystem } from '../../../src/io/fileSystem.ts';
import { writeFully } from '../../../src/io/fileSystem.ts';
import type { ArchiveEngine } from '../../../src/receipts/archiveEngine.ts';
import { decodeBlockEntry, encodeBlockEntry } from '../../../src/receipts/codec.ts';
import { logMatches, type NormalizedFilter } from '../../../src/receipts/logFilter.ts';
import type { BlockEntry, Log, StoredReceipt } from '../../../src/receipts/types.ts';

export class MemoryArchive implements ArchiveEngine {
  constructor(private readonly fs: FileSystem) {}

  async writeWindow(blocks: readonly BlockEntry[], receiptsPath: string, logsPath: string) {
    const parts: Uint8Array[] = [];
    let receiptRows = 0;
    let logRows = 0;
    for (const b of blocks) {
      const e = encodeBlockEntry(b).payload;
      const len = new Uint8Array(4);
      new DataView(len.buffer).setUint32(0, e.length, true);
      parts.push(len, e);
      receiptRows += b.receipts.length;
      for (const r of b.receipts) logRows += r.logs.length;
    }
    for (const p of [receiptsPath, logsPath]) {
      const h = this.fs.open(p, { create: true, exclusive: true });
      try {
        writeFully(h, p === receiptsPath ? parts : [Uint8Array.of(1)], 0);
      } finally {
        h.close();
      }
    }
    return { receiptRows, logRows };
  }

  private read(receiptsPath: string): BlockEntry[] {
    const h = this.fs.open(receiptsPath, { readOnly: true });
    try {
      const size = h.size();
      const buf = new Uint8Array(size);
      h.read(buf, 0, size, 0);
      const out: BlockEntry[] = [];
      for (let p = 0; p < size; ) {
        const len = new DataView(buf.buffer).getUint32(p, true);
        out.push(decodeBlockEntry(buf.subarray(p + 4, p + 4 + len)));
        p += 4 + len;
      }
      return out;
    } finally {
      h.close();
    }
  }

  async queryLogs(logsPaths: readonly string[], f: NormalizedFilter, limit: number): Promise<Log[]> {
    const out: Log[] = [];
    for (const lp of logsPaths) {
      for (const b of this.read(lp.replace(/logs_/, 'receipts_'))) {
        if (b.number < f.fromBlock || b.number > f.toBlock) continue;
        for (const r of b.receipts) {
          r.logs.forEach((log, i) => {
            if (!logMatches(f, log) || out.length >= limit) return;
            out.push({
              address: log.address,
              topics: [...log.topics],
              data: log.data,
              blockNumber: b.number,
              blockHash: b.hash,
              txHash: r.txHash,
              txIndex: r.txIndex,
              logIndex: r.firstLogIndex + i,
              removed: false,
            });
          });
        }
      }
    }
    return out;
  }

  async readReceipt(receiptsPath: string, _logsPath: string, block: number, txIndex: number) {
    for (const b of this.read(receiptsPath)) {
      if (b.number !== block) continue;
      const r: StoredReceipt | undefined = b.receipts.find((x) => x.txIndex === txIndex);
      return r ? { blockHash: b.hash, receipt: r } : undefined;
    }
    return undefined;
  }

  async readTxHashes(receiptsPath: string): Promise<Uint8Array[]> {
    return this.read(receiptsPath).flatMap((b) => b.receipts.map((r) => r.txHash));
  }

  async readBlocks(receiptsPath: string): Promise<BlockEntry[]> {
    return this.read(receiptsPath);
  }

  async close(): Promise<void> {}
}
