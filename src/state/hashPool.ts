/**
 * Optional LtHash parallelism: a block's element hashes (mix-outs of old rows, mix-ins of new rows)
 * are split between the calling thread and `workers` worker threads, each with its own hash-wasm
 * BLAKE3. The LtHash is a sum, so partial per-family sums added together are bit-identical to the
 * serial result (tests check it). Off by default: whether it pays depends on the machine (on two
 * cores the engine's own threads compete), so `npm run bench -- state` measures both in one run.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CairnError, describe } from '../lib/errors.ts';
import { LTHASH_LIMBS, type LtHash, type LtHasher } from './ltHash.ts';

export interface HashItem {
  family: number;
  key: Uint8Array;
  /** Bytes to mix out (the row's previous value), if any. */
  old?: Uint8Array | undefined;
  /** Bytes to mix in (the row's new value), if any. */
  neu?: Uint8Array | undefined;
}

/** Below this many element hashes a block is hashed inline (the hand-off costs more than it saves). */
export const PARALLEL_MIN_ELEMENTS = 512;

const WORKER_SOURCE = (hashWasmUrl: string) => `
import { parentPort } from 'node:worker_threads';
import { createBLAKE3 } from ${JSON.stringify(hashWasmUrl)};
const xof = await createBLAKE3(${LTHASH_LIMBS * 16});
parentPort.on('message', ({ buf, ops }) => {
  const sums = new Uint16Array(4 * ${LTHASH_LIMBS});
  for (let i = 0; i < ops.length; i += 4) {
    const base = ops[i] * ${LTHASH_LIMBS};
    const sign = ops[i + 1];
    xof.init();
    xof.update(buf.subarray(ops[i + 2], ops[i + 3]));
    const d = xof.digest('binary');
    for (let j = 0; j < ${LTHASH_LIMBS}; j++) {
      const limb = d[2 * j] | (d[2 * j + 1] << 8);
      sums[base + j] += sign > 0 ? limb : -limb;
    }
  }
  parentPort.postMessage(sums, [sums.buffer]);
});
`;

export class HashPool {
  private busy = false;

  private constructor(
    private readonly workers: Worker[],
    private readonly hasher: LtHasher,
  ) {}

  static async create(workers: number, hasher: LtHasher): Promise<HashPool> {
    const hashWasm = pathToFileURL(createRequire(import.meta.url).resolve('hash-wasm')).href;
    const url = new URL(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE(hashWasm))}`);
    const list = Array.from({ length: workers }, () => new Worker(url));
    for (const w of list) w.unref();
    return new HashPool(list, hasher);
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * Adds Σ(+H(k, neu) − H(k, old)) per family into `roots` (4 LtHashes). Empty keys or values are
   * skipped, as in the serial path.
   */
  async apply(items: readonly HashItem[], roots: LtHash[]): Promise<void> {
    if (this.busy) throw new CairnError('CONFLICT', 'hash pool used concurrently (the store has one writer)');
    this.busy = true;
    try {
      const shares = this.workers.length + 1;
      const per = Math.ceil(items.length / shares);
      const pending = this.workers.map((w, i) => this.send(w, items.slice((i + 1) * per, (i + 2) * per)));
      // The calling thread hashes the first share meanwhile.
      for (const it of items.slice(0, per)) {
        const r = roots[it.family]!;
        if (it.old) this.hasher.mixOut(r, it.key, it.old);
        if (it.neu) this.hasher.mixIn(r, it.key, it.neu);
      }
      for (const sums of await Promise.all(pending)) {
        for (let f = 0; f < 4; f++) roots[f]!.add(sums.subarray(f * LTHASH_LIMBS, (f + 1) * LTHASH_LIMBS));
      }
    } finally {
      this.busy = false;
    }
  }

  private send(worker: Worker, items: readonly HashItem[]): Promise<Uint16Array> {
    let bytes = 0;
    let count = 0;
    for (const it of items) {
      if (it.key.length === 0) continue;
      if (it.old && it.old.length > 0) {
        bytes += 8 + it.key.length + it.old.length;
        count++;
      }
      if (it.neu && it.neu.length > 0) {
        bytes += 8 + it.key.length + it.neu.length;
        count++;
      }
    }
    const buf = new Uint8Array(bytes);
    const dv = new DataView(buf.buffer);
    const ops = new Int32Array(count * 4);
    let off = 0;
    let o = 0;
    const put = (family: number, sign: number, key: Uint8Array, value: Uint8Array) => {
      const start = off;
      dv.setUint32(off, key.length, true);
      buf.set(key, off + 4);
      dv.setUint32(off + 4 + key.length, value.length, true);
      buf.set(value, off + 8 + key.length);
      off += 8 + key.length + value.length;
      ops[o++] = family;
      ops[o++] = sign;
      ops[o++] = start;
      ops[o++] = off;
    };
    for (const it of items) {
      if (it.key.length === 0) continue;
      if (it.old && it.old.length > 0) put(it.family, -1, it.key, it.old);
      if (it.neu && it.neu.length > 0) put(it.family, 1, it.key, it.neu);
    }
    return new Promise<Uint16Array>((resolve, reject) => {
      const onError = (err: unknown) => {
        worker.off('message', onMessage);
        reject(new CairnError('IO_FATAL', `LtHash worker failed: ${describe(err)}`, { cause: err }));
      };
      const onMessage = (sums: Uint16Array) => {
        worker.off('error', onError);
        resolve(sums);
      };
      worker.once('message', onMessage);
      worker.once('error', onError);
      worker.postMessage({ buf, ops }, [buf.buffer, ops.buffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
