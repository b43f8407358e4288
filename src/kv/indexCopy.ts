import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ClassicLevelKv } from './classicLevelKv.ts';
import type { KvBatch, KvEntry, KvRange, OrderedKv } from './orderedKv.ts';

/**
 * A private scratch copy of a LevelDB directory, for inspection tools. Opening LevelDB in place
 * is never read-only: it replays its log into a new table, writes a new MANIFEST and CURRENT and
 * deletes obsolete files. The copy takes the table files (`.ldb`/`.sst`, immutable once written)
 * as hard links and copies everything else except `LOCK`, so nothing the engine does to the copy
 * can reach the original. A missing source gives an empty copy. The copy is deleted on close.
 */
export async function openIndexCopy(source: string): Promise<OrderedKv> {
  const scratch = mkdtempSync(path.join(tmpdir(), 'cairn-index-copy-'));
  const target = path.join(scratch, 'index');
  try {
    if (existsSync(source)) {
      copyTree(source, target);
    }
    const kv = await ClassicLevelKv.open(target);
    return new DisposableKv(kv, () => rmSync(scratch, { recursive: true, force: true }));
  } catch (err) {
    rmSync(scratch, { recursive: true, force: true });
    throw err;
  }
}

function copyTree(source: string, target: string): void {
  mkdirSync(target);
  for (const name of readdirSync(source)) {
    if (name === 'LOCK') continue;
    const from = path.join(source, name);
    const to = path.join(target, name);
    if (/\.(ldb|sst)$/.test(name)) {
      try {
        linkSync(from, to);
        continue;
      } catch {
        // another file system: fall back to a copy
      }
    }
    copyFileSync(from, to);
  }
}

class DisposableKv implements OrderedKv {
  private closing: Promise<void> | undefined;

  constructor(
    private readonly inner: OrderedKv,
    private readonly dispose: () => void,
  ) {}

  get(key: Uint8Array): Uint8Array | undefined {
    return this.inner.get(key);
  }

  getMany(keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return this.inner.getMany(keys);
  }

  batch(): KvBatch {
    return this.inner.batch();
  }

  range(range: KvRange): Promise<KvEntry[]> {
    return this.inner.range(range);
  }

  close(): Promise<void> {
    this.closing ??= this.inner.close().finally(() => this.dispose());
    return this.closing;
  }
}
