/**
 * In-memory engine host for the state store's simulated power-loss tests. Engine directories live on
 * the simulated file system (so renames, removals and their durability are simulated like every
 * other Cairn file); each holds an `ENGINE` file naming an in-memory MemoryKv, whose crash model is
 * LevelDB's. Checkpoints and clones are a `kv.dump` file written through the simulated FS.
 *
 * `crashImage(rng)` gives what a restart after a power cut sees: every engine's synced state plus
 * ANY SUBSET of its unsynced batches (an earlier batch lost, a later one kept), the model the state
 * store's protocol is built for. It reads MemoryKv's internals because MemoryKv.crashImage keeps
 * only a prefix until the fault model's subset mode lands there.
 */
import * as path from 'node:path';
import type { FileSystem } from '../../../src/io/fileSystem.ts';
import { readWholeFile, writeFully } from '../../../src/io/fileSystem.ts';
import type { OrderedKv } from '../../../src/kv/orderedKv.ts';
import type { Rng } from '../../../src/lib/rng.ts';
import type { CheckpointResult, StateKvHost } from '../../../src/state/kvHost.ts';
import { MemoryKv } from '../../../src/testing/memoryKv.ts';

const ENGINE_FILE = 'ENGINE';
const DUMP_FILE = 'kv.dump';

type Op = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };
interface MemoryKvInternals {
  data: Map<string, Uint8Array>;
  durable: Map<string, Uint8Array>;
  unsynced: Op[][];
}

/** Synced state plus a random subset of the unsynced batches, applied in order. */
export type UnsyncedPolicy = 'subset' | 'none' | 'all';

export function subsetCrashImage(kv: MemoryKv, rng: Rng, policy: UnsyncedPolicy = 'subset'): MemoryKv {
  const inner = kv as unknown as Partial<MemoryKvInternals>;
  if (!(inner.durable instanceof Map) || !Array.isArray(inner.unsynced)) {
    // MemoryKv's internals changed (the fault model's own subset crash images): use its model.
    return policy === 'all' ? kv.reopenImage() : kv.crashImage(rng);
  }
  const image = new Map(inner.durable);
  // subset: a quarter of the images keep none, a quarter all, half a random subset.
  const mode = policy === 'none' ? 0 : policy === 'all' ? 1 : rng.int(0, 4);
  for (const ops of inner.unsynced as Op[][]) {
    const keep = mode === 1 || (mode >= 2 && rng.bool());
    if (!keep) continue;
    for (const op of ops) {
      if (op.type === 'put') image.set(op.key, op.value);
      else image.delete(op.key);
    }
  }
  return MemoryKv.fromEntries(image);
}

export class MemoryKvHost implements StateKvHost {
  private nextId = 1;
  readonly engines = new Map<number, MemoryKv>();

  constructor(private readonly fs: FileSystem) {}

  /** The same engines after a power cut, on the crashed file system image. */
  crashImage(fs: FileSystem, rng: Rng, policy: UnsyncedPolicy = 'subset'): MemoryKvHost {
    const out = new MemoryKvHost(fs);
    out.nextId = this.nextId;
    for (const [id, kv] of this.engines) out.engines.set(id, subsetCrashImage(kv, rng, policy));
    return out;
  }

  /** After a clean process exit: everything written is kept (unsynced still only in the page cache). */
  reopenImage(fs: FileSystem): MemoryKvHost {
    const out = new MemoryKvHost(fs);
    out.nextId = this.nextId;
    for (const [id, kv] of this.engines) out.engines.set(id, kv.reopen());
    return out;
  }

  async create(dir: string): Promise<OrderedKv> {
    const kv = new MemoryKv();
    this.register(dir, kv);
    return kv;
  }

  async open(dir: string): Promise<OrderedKv> {
    const id = this.idOf(dir);
    const kv = this.engines.get(id);
    if (!kv) throw Object.assign(new Error(`no engine ${id} for ${dir}`), { code: 'ENOENT' });
    const reopened = kv.reopen();
    this.engines.set(id, reopened);
    return reopened;
  }

  async checkpoint(kv: OrderedKv, dir: string, to: string): Promise<CheckpointResult> {
    const entries = await kv.range({ limit: Number.MAX_SAFE_INTEGER });
    await kv.close();
    let size = 4;
    for (const e of entries) size += 8 + e.key.length + e.value.length;
    const out = new Uint8Array(size);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, entries.length, false);
    let off = 4;
    for (const e of entries) {
      dv.setUint32(off, e.key.length, false);
      out.set(e.key, off + 4);
      off += 4 + e.key.length;
      dv.setUint32(off, e.value.length, false);
      out.set(e.value, off + 4);
      off += 4 + e.value.length;
    }
    let error: unknown;
    try {
      const h = this.fs.open(path.join(to, DUMP_FILE), { create: true, exclusive: true });
      try {
        writeFully(h, [out], 0);
        h.sync();
      } finally {
        h.close();
      }
      this.fs.syncDir(to);
    } catch (err) {
      error = err;
    }
    const reopened = await this.open(dir);
    return error === undefined
      ? { kv: reopened, files: [DUMP_FILE] }
      : { kv: reopened, files: [DUMP_FILE], error };
  }

  async clone(from: string, files: readonly string[], to: string): Promise<void> {
    if (files.length !== 1 || files[0] !== DUMP_FILE)
      throw new Error(`unexpected checkpoint files ${files.join(',')}`);
    const bytes = readWholeFile(this.fs, path.join(from, DUMP_FILE));
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const count = dv.getUint32(0, false);
    const entries: [string, Uint8Array][] = [];
    let off = 4;
    for (let i = 0; i < count; i++) {
      const kl = dv.getUint32(off, false);
      const key = bytes.subarray(off + 4, off + 4 + kl);
      off += 4 + kl;
      const vl = dv.getUint32(off, false);
      entries.push([Buffer.from(key).toString('hex'), bytes.slice(off + 4, off + 4 + vl)]);
      off += 4 + vl;
    }
    this.register(to, MemoryKv.fromEntries(entries));
  }

  private register(dir: string, kv: MemoryKv): void {
    const id = this.nextId++;
    this.engines.set(id, kv);
    if (!this.fs.exists(dir)) this.fs.mkdir(dir);
    const h = this.fs.open(path.join(dir, ENGINE_FILE), { create: true });
    try {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, id, false);
      writeFully(h, [b], 0);
      h.sync();
    } finally {
      h.close();
    }
    this.fs.syncDir(dir);
    this.fs.syncDir(path.dirname(dir));
  }

  private idOf(dir: string): number {
    const b = readWholeFile(this.fs, path.join(dir, ENGINE_FILE));
    if (b.length !== 4) throw Object.assign(new Error(`torn ENGINE file in ${dir}`), { code: 'EIO' });
    return new DataView(b.buffer, b.byteOffset).getUint32(0, false);
  }
}
