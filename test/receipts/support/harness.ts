// Shared setup for the receipt-store tests: a real store (DuckDB + classic-level on a temp dir) or
// a simulated one (simulated file system + MemoryKv + the model archive engine).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchiveEngine } from '../../../src/receipts/archiveEngine.ts';
import { ReceiptStore, type ReceiptStoreOptions } from '../../../src/receipts/receiptStore.ts';
import { MemoryKv } from '../../../src/testing/memoryKv.ts';
import { SimulatedFileSystem } from '../../../src/testing/simulatedFileSystem.ts';
import { MemoryArchive } from './memoryArchive.ts';

export async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-receipts-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface SimSetup {
  fs: SimulatedFileSystem;
  kv: MemoryKv;
  archive: ArchiveEngine;
  open(options?: Partial<ReceiptStoreOptions>): Promise<ReceiptStore>;
  /** A clean restart: the KV keeps everything (reopen after close). */
  restartKv(): void;
}

export function simSetup(seed = 1, wrap?: (a: ArchiveEngine) => ArchiveEngine): SimSetup {
  const fs = new SimulatedFileSystem({ seed });
  const setup: SimSetup = {
    fs,
    kv: new MemoryKv(),
    archive: new MemoryArchive(fs),
    open: (options = {}) =>
      ReceiptStore.open({
        dir: '/r',
        fs,
        kv: setup.kv,
        archive: wrap ? wrap(new MemoryArchive(fs)) : new MemoryArchive(fs),
        blocksPerFile: 4,
        walSegmentBytes: 16 * 1024,
        ...options,
      }),
    restartKv: () => {
      setup.kv = setup.kv.reopen();
    },
  };
  return setup;
}

/** An archive engine wrapper that counts calls and can fail or pause them. */
export class ProbeArchive implements ArchiveEngine {
  calls: Record<string, number> = {};
  failWrites = 0;
  gate: Promise<void> | undefined;
  writeGate: Promise<void> | undefined;

  constructor(private readonly inner: ArchiveEngine) {}

  private count(name: string): void {
    this.calls[name] = (this.calls[name] ?? 0) + 1;
  }
  async writeWindow(...a: Parameters<ArchiveEngine['writeWindow']>) {
    this.count('writeWindow');
    if (this.writeGate) await this.writeGate;
    if (this.failWrites > 0) {
      this.failWrites--;
      throw new Error('injected archive engine failure');
    }
    return this.inner.writeWindow(...a);
  }
  async queryLogs(...a: Parameters<ArchiveEngine['queryLogs']>) {
    this.count('queryLogs');
    if (this.gate) await this.gate;
    return this.inner.queryLogs(...a);
  }
  async readReceipt(...a: Parameters<ArchiveEngine['readReceipt']>) {
    this.count('readReceipt');
    return this.inner.readReceipt(...a);
  }
  async readTxHashes(...a: Parameters<ArchiveEngine['readTxHashes']>) {
    this.count('readTxHashes');
    return this.inner.readTxHashes(...a);
  }
  async readBlocks(...a: Parameters<ArchiveEngine['readBlocks']>) {
    this.count('readBlocks');
    return this.inner.readBlocks(...a);
  }
  close() {
    return this.inner.close();
  }
}
