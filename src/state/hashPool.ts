/**
 * LtHash parallelism: a block's element hashes (mix-outs of old rows, mix-ins of new rows) are shared
 * between the calling thread and `workers` worker threads. The LtHash is a sum, so partial
 * per-family sums added together are bit-identical to the serial result (tests check it).
 *
 * The inputs are packed once into shared memory and every thread claims chunks of them from one
 * atomic cursor until none are left, so the split follows whichever thread has the CPU (on a
 * loaded two-core machine a fixed half-and-half split waits for the slower side).
 *
 * Each worker instantiates the same compiled BLAKE3 module as the writer thread (blake3Wasm.ts; a
 * `WebAssembly.Module` can be handed to a worker) and accumulates its share in place, two 16-bit
 * limbs per 32-bit word, like `LtHash.addWords`. Without that module the workers use hash-wasm's
 * public hasher. If a worker fails, its share is hashed on the calling thread and the pool stops
 * using workers (synchronous fallback), so a dead worker never changes a root or fails a block.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe } from '../lib/errors.ts';
import { BLAKE3_IO_BYTES } from './blake3Wasm.ts';
import { type HashItem, LTHASH_LIMBS, LtHash, type LtHasher } from './ltHash.ts';
import { KERNEL_ACC_BASE, KERNEL_MAX_INPUT } from './ltKernel.ts';

export type { HashItem };

/** Below this many element hashes a batch is hashed inline (the hand-off costs more than it saves). */
export const PARALLEL_MIN_ELEMENTS = 512;

const WORDS = LTHASH_LIMBS / 2;
/** Element hashes claimed at a time (~0.2 ms of work: small enough to balance, large enough to be cheap). */
const CHUNK_OPS = 32;

/**
 * The worker: receives one packed buffer of element inputs and an op list (family, sign, start,
 * end), returns 4 × 512 words of per-family sums (mod 2^16 per limb). SWAR as in ltHash.ts.
 */
const WORKER_SOURCE = (hashWasmUrl: string) => `
import { parentPort, workerData } from 'node:worker_threads';
const WORDS = ${WORDS};
const IO = ${BLAKE3_IO_BYTES};
let hashInto;
if (workerData.module) {
  const { exports: ex } = await WebAssembly.instantiate(workerData.module, {});
  const at = ex.Hash_GetBuffer();
  let io = new Uint8Array(ex.memory.buffer, at, IO);
  let out = new Uint32Array(ex.memory.buffer, at, WORDS);
  hashInto = (input) => {
    if (io.byteLength === 0) { io = new Uint8Array(ex.memory.buffer, at, IO); out = new Uint32Array(ex.memory.buffer, at, WORDS); }
    if (input.length <= IO) { io.set(input); ex.Hash_Calculate(input.length, 0, ${LTHASH_LIMBS * 2}); }
    else {
      ex.Hash_Init(0);
      for (let i = 0; i < input.length; i += IO) { const part = input.subarray(i, i + IO); io.set(part); ex.Hash_Update(part.length); }
      ex.Hash_Final(${LTHASH_LIMBS * 2});
    }
    if (out.byteLength === 0) { io = new Uint8Array(ex.memory.buffer, at, IO); out = new Uint32Array(ex.memory.buffer, at, WORDS); }
    return out;
  };
} else {
  const { createBLAKE3 } = await import(${JSON.stringify(hashWasmUrl)});
  const xof = await createBLAKE3(${LTHASH_LIMBS * 16});
  hashInto = (input) => {
    xof.init();
    xof.update(input);
    const d = xof.digest('binary');
    return new Uint32Array(d.buffer, d.byteOffset, WORDS);
  };
}
let kernel;
if (workerData.kernel) {
  const { exports: kx } = await WebAssembly.instantiate(workerData.kernel, {});
  kernel = { ex: kx, input: new Uint8Array(kx.memory.buffer, 0, ${KERNEL_MAX_INPUT + 64}), slots: new Uint32Array(kx.memory.buffer, ${KERNEL_ACC_BASE}, 4 * WORDS) };
}
parentPort.postMessage('ready');
parentPort.on('message', ({ buf, ops, count, cursor }) => {
  const sums = new Uint32Array(4 * WORDS);
  if (kernel) kernel.slots.fill(0);
  for (;;) {
    const first = Atomics.add(cursor, 0, ${CHUNK_OPS});
    if (first >= count) break;
    const last = Math.min(count, first + ${CHUNK_OPS});
    for (let n = first; n < last; n++) {
      const i = 4 * n;
      const start = ops[i + 2];
      const len = ops[i + 3] - start;
      if (kernel && len <= ${KERNEL_MAX_INPUT}) {
        kernel.input.set(buf.subarray(start, start + len));
        kernel.input.fill(0, len, (len + 63) & ~63);
        kernel.ex.mix(len, ${KERNEL_ACC_BASE} + ops[i] * ${LTHASH_LIMBS * 2}, ops[i + 1] > 0 ? 1 : 0);
        continue;
      }
      const base = ops[i] * WORDS;
      const b = hashInto(buf.subarray(start, start + len));
      if (ops[i + 1] > 0) {
        for (let j = 0; j < WORDS; j++) {
          const x = sums[base + j];
          const y = b[j];
          sums[base + j] = ((x & 0x7fff7fff) + (y & 0x7fff7fff)) ^ ((x ^ y) & 0x80008000);
        }
      } else {
        for (let j = 0; j < WORDS; j++) {
          const x = sums[base + j];
          const y = b[j];
          sums[base + j] = ((x | 0x80008000) - (y & 0x7fff7fff)) ^ ((x ^ ~y) & 0x80008000);
        }
      }
    }
  }
  if (kernel) {
    const k = kernel.slots;
    for (let j = 0; j < 4 * WORDS; j++) {
      const x = sums[j];
      const y = k[j];
      sums[j] = ((x & 0x7fff7fff) + (y & 0x7fff7fff)) ^ ((x ^ y) & 0x80008000);
    }
  }
  parentPort.postMessage(sums, [sums.buffer]);
});
`;

interface Work {
  buf: Uint8Array;
  ops: Int32Array;
  count: number;
  /** Next unclaimed op, shared by every thread. */
  cursor: Int32Array;
}

export class HashPool {
  private busy = false;
  private failed: string | undefined;
  /** Workers that exited (a message to them would never be answered). */
  private readonly exited = new Set<Worker>();
  /**
   * Workers that finished starting up. Only these get work: a block never waits for a worker's
   * startup (tens of ms), the calling thread hashes alone until one is ready.
   */
  private readonly ready = new Set<Worker>();

  private constructor(
    private readonly workers: Worker[],
    private readonly hasher: LtHasher,
    private readonly onFallback: (reason: string) => void,
  ) {
    for (const w of workers) {
      w.unref();
      // A worker that dies between blocks is noticed at its next share; never an unhandled error.
      w.on('error', () => undefined);
      w.once('message', () => this.ready.add(w));
      w.once('exit', (code: number) => {
        this.exited.add(w);
        if (!this.ready.has(w) && !this.closed)
          this.fallBack(`LtHash worker exited while starting (code ${code})`);
      });
    }
  }

  /**
   * `module`: the compiled BLAKE3 module to hash with in place (undefined: hash-wasm's public API).
   * `onFallback` is told once when a worker fails and the pool goes synchronous.
   */
  static create(
    workers: number,
    hasher: LtHasher,
    module: WebAssembly.Module | undefined,
    onFallback: (reason: string) => void = () => undefined,
    kernel?: WebAssembly.Module,
  ): HashPool {
    const hashWasm = pathToFileURL(createRequire(import.meta.url).resolve('hash-wasm')).href;
    const url = new URL(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE(hashWasm))}`);
    const list = Array.from({ length: workers }, () => new Worker(url, { workerData: { module, kernel } }));
    return new HashPool(list, hasher, onFallback);
  }

  get size(): number {
    return this.failed === undefined ? this.workers.length : 0;
  }

  /** Workers started and able to take work now. */
  get readyWorkers(): number {
    if (this.failed !== undefined) return 0;
    return this.workers.filter((w) => this.ready.has(w) && !this.exited.has(w)).length;
  }

  /**
   * Adds Σ(+H(k, neu) − H(k, old)) per family into `roots` (4 LtHashes). Empty keys or values are
   * skipped, as in the serial path.
   */
  async apply(items: readonly HashItem[], roots: LtHash[]): Promise<void> {
    if (this.busy) throw new Error('hash pool used concurrently (the store has one writer)');
    this.busy = true;
    try {
      if (this.failed !== undefined) {
        this.hashInline(items, roots);
        return;
      }
      const active = this.workers.filter((w) => this.ready.has(w) && !this.exited.has(w));
      if (active.length === 0) {
        this.hashInline(items, roots);
        return;
      }
      const work = this.pack(items);
      const pending = active.map((w) => this.send(w, work));
      // This thread claims chunks too, into its own partial sums: if a worker fails, nobody knows
      // which chunks it had claimed, so everything is redone inline and the partials are dropped.
      const mine = [new LtHash(), new LtHash(), new LtHash(), new LtHash()];
      this.hasher.mixClaimed(mine, work, work.count, work.cursor, CHUNK_OPS);
      const results = await Promise.allSettled(pending);
      const failure = results.find((r) => r.status === 'rejected');
      if (failure) {
        this.fallBack(failure.reason);
        this.hashInline(items, roots);
        return;
      }
      for (let f = 0; f < 4; f++) roots[f]!.addWords(mine[f]!.words32());
      for (const r of results) {
        const sums = (r as PromiseFulfilledResult<Uint32Array>).value;
        for (let f = 0; f < 4; f++) roots[f]!.addWords(sums.subarray(f * WORDS, (f + 1) * WORDS));
      }
    } finally {
      this.busy = false;
    }
  }

  private hashInline(items: readonly HashItem[], roots: LtHash[]): void {
    this.hasher.mixItems(roots, items);
  }

  private fallBack(reason: unknown): void {
    if (this.failed !== undefined) return;
    this.failed = describe(reason);
    this.onFallback(this.failed);
    for (const w of this.workers) void w.terminate().catch(() => undefined);
  }

  /** Shared memory, reused across calls (a call finishes before the next starts). */
  private shared: { buf: Uint8Array; ops: Int32Array } | undefined;

  /** Every element input, serialized into shared memory, with its (family, sign, start, end). */
  private pack(items: readonly HashItem[]): Work {
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
    let shared = this.shared;
    if (!shared || shared.buf.length < bytes || shared.ops.length < 4 * count) {
      const b = Math.max(bytes, 2 * (shared?.buf.length ?? 0), 64 * 1024);
      const o = Math.max(4 * count, 2 * (shared?.ops.length ?? 0), 4096);
      shared = {
        buf: new Uint8Array(new SharedArrayBuffer(b)),
        ops: new Int32Array(new SharedArrayBuffer(4 * o)),
      };
      this.shared = shared;
    }
    const { buf, ops } = shared;
    let off = 0;
    let o = 0;
    const put = (family: number, sign: number, key: Uint8Array, value: Uint8Array) => {
      const start = off;
      const k = key.length;
      const v = value.length;
      buf[off] = k;
      buf[off + 1] = k >>> 8;
      buf[off + 2] = k >>> 16;
      buf[off + 3] = k >>> 24;
      buf.set(key, off + 4);
      const at = off + 4 + k;
      buf[at] = v;
      buf[at + 1] = v >>> 8;
      buf[at + 2] = v >>> 16;
      buf[at + 3] = v >>> 24;
      buf.set(value, at + 4);
      off = at + 4 + v;
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
    return { buf, ops, count, cursor: new Int32Array(new SharedArrayBuffer(4)) };
  }

  private send(worker: Worker, work: Work): Promise<Uint32Array> {
    return new Promise<Uint32Array>((resolve, reject) => {
      if (this.exited.has(worker)) {
        reject(new Error('LtHash worker exited'));
        return;
      }
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      const onError = (err: unknown) => {
        cleanup();
        reject(new Error(`LtHash worker failed: ${describe(err)}`, { cause: err }));
      };
      const onExit = (code: number) => {
        cleanup();
        reject(new Error(`LtHash worker exited (code ${code})`));
      };
      const onMessage = (sums: Uint32Array) => {
        cleanup();
        resolve(sums);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      try {
        worker.postMessage(work);
      } catch (err) {
        cleanup();
        reject(err);
      }
    });
  }

  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
