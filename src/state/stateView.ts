/**
 * Views: an isolated, read-only picture of committed state at one height, on a private engine
 * built from the snapshot at or below that height plus the WAL records above it (in
 * `<dataDir>/views`, removed when the view closes and swept at open). Commits continue meanwhile.
 */
import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import { removeTree } from '../io/removeTree.ts';
import type { OrderedKv } from '../kv/orderedKv.ts';
import { CairnError } from '../lib/errors.ts';
import { decodeMetaFrom, writeBlockBatch } from './blockBatch.ts';
import { FAMILIES, type Family } from './encoding.ts';
import { materializeEngine } from './engineRebuild.ts';
import { ensureDir } from './files.ts';
import { LtHash, type LtHasher } from './ltHash.ts';
import { readHeightModified, readLogical } from './reader.ts';
import { CHECKPOINT_KEY, familyTag, kvKey, type MetaRecord } from './records.ts';
import { reachableBase } from './rollback.ts';
import { walRecords } from './stateWal.ts';
import type { StoreCore } from './storeCore.ts';
import { VIEWS_DIR } from './storeTypes.ts';

/** Rows per engine range read when scanning a family. */
const SCAN_CHUNK = 4096;

/** A read-only view of committed state at one height, on a private engine clone. */
export class StateView {
  private closed = false;

  constructor(
    private kv: OrderedKv,
    private readonly dir: string,
    private readonly fs: FileSystem,
    private readonly hasher: LtHasher,
    private readonly meta: MetaRecord,
  ) {}

  get version(): number {
    return this.meta.height;
  }
  private readonly readRow = (family: Family, key: Uint8Array): Uint8Array | undefined => {
    if (this.closed) throw new CairnError('CLOSED', 'state view is closed');
    return this.kv.get(kvKey(family, key));
  };
  get(module: string, key: Uint8Array): Uint8Array | undefined {
    return readLogical(this.readRow, module, key);
  }
  blockHeightModified(module: string, key: Uint8Array): number | undefined {
    return readHeightModified(this.readRow, module, key);
  }
  committedRoot(): Uint8Array {
    return this.hasher.checksum(LtHash.sum(this.meta.roots));
  }
  familyRoots(): Record<Family, Uint8Array> {
    const out = {} as Record<Family, Uint8Array>;
    FAMILIES.forEach((f, i) => {
      out[f] = this.hasher.checksum(this.meta.roots[i]!);
    });
    return out;
  }
  /** Physical rows in engine order (family, then key). */
  async *rows(): AsyncGenerator<{ family: Family; key: Uint8Array; value: Uint8Array }> {
    for (const family of FAMILIES) {
      for await (const r of scanFamily(this.kv, family)) yield { family, ...r };
    }
  }
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.kv.close();
    removeTree(this.fs, this.dir);
  }
}

/** All rows of one family, physical keys (tag stripped), in bounded chunks. */
export async function* scanFamily(
  kv: OrderedKv,
  family: Family,
): AsyncGenerator<{ key: Uint8Array; value: Uint8Array }> {
  const tag = familyTag(family);
  let gt: Uint8Array | undefined;
  const lt = new Uint8Array([tag + 1]);
  for (;;) {
    const chunk = await kv.range({
      ...(gt ? { gt } : { gte: new Uint8Array([tag]) }),
      lt,
      limit: SCAN_CHUNK,
    });
    for (const e of chunk) yield { key: e.key.subarray(1), value: e.value };
    if (chunk.length < SCAN_CHUNK) return;
    gt = chunk[chunk.length - 1]!.key;
  }
}

/** An isolated read-only view of committed state at `height` (0 = the committed tip). */
export async function openView(core: StoreCore, height = 0): Promise<StateView> {
  await core.settleBackground();
  return core.enqueue(async () => {
    core.checkWritable(); // a view clones into <dataDir>/views: not for read-only opens
    const at = height === 0 ? core.committed.height : height;
    if (!Number.isSafeInteger(at) || at < 0 || at > core.committed.height) {
      throw new CairnError(
        'OUT_OF_RANGE',
        `view height ${height} is above the committed height ${core.committed.height}`,
        {
          details: { height, tip: core.committed.height },
        },
      );
    }
    const base = reachableBase(core, at, 'a view');
    ensureDir(core.fs, path.join(core.dataDir, VIEWS_DIR));
    const dir = path.join(core.dataDir, VIEWS_DIR, `view-${process.pid}-${++core.viewSeq}`);
    removeTree(core.fs, dir);
    let kv: OrderedKv | undefined;
    try {
      kv = await materializeEngine(core, base, dir);
      let meta = decodeMetaFrom(kv, CHECKPOINT_KEY, 'checkpoint')!;
      for (const rec of walRecords(core, base, at)) {
        await writeBlockBatch(kv, rec.rows, rec.after, false);
        meta = rec.after;
      }
      return new StateView(kv, dir, core.fs, core.hasher, meta);
    } catch (err) {
      await kv?.close().catch(() => undefined);
      removeTree(core.fs, dir);
      throw err;
    }
  });
}
