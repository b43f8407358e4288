/**
 * Direct use of hash-wasm's own BLAKE3 WebAssembly module, for the LtHash hot path.
 *
 * hash-wasm's public hasher copies every digest out of WASM memory into a fresh array
 * (`digest('binary')` slices): for 2048-byte element hashes that is one 2 KiB allocation per row,
 * which the profile showed as digest + garbage-collector time comparable to the hashing itself.
 * The same module exports `Hash_Calculate(length, initParam, digestBytes)` over a 16 KiB I/O buffer
 * in its memory, so with the instance in hand a row is: write the input into that buffer, one call,
 * read the limbs in place.
 *
 * hash-wasm keeps the instance private, so the module bytes are taken from its bundle (the
 * `name/data/hash` triple it embeds for "blake3"). The version is pinned in package.json; this file
 * checks the exports it needs and compares an XOF output against the public API before it is used,
 * and `loadBlake3Module` returns undefined on any mismatch so callers fall back to the public API.
 */
import { createRequire } from 'node:module';
import { createBLAKE3 } from 'hash-wasm';
import { readWholeFile } from '../io/fileSystem.ts';
import { realFileSystem } from '../io/realFileSystem.ts';

/** Size of the module's I/O buffer (`MAIN_BUFFER_SIZE` in hash-wasm's C sources). */
export const BLAKE3_IO_BYTES = 16 * 1024;

interface Blake3Exports {
  memory: WebAssembly.Memory;
  Hash_GetBuffer(): number;
  Hash_Init(keyLength: number): void;
  Hash_Update(length: number): void;
  Hash_Final(digestBytes: number): void;
  Hash_Calculate(length: number, initParam: number, digestBytes: number): void;
}

/**
 * One BLAKE3 instance with its I/O buffer exposed. Not shareable between threads (each thread
 * instantiates the compiled module itself).
 */
export class Blake3Direct {
  private io!: Uint8Array;
  private ioWords!: Uint32Array;
  private ioBuffer!: ArrayBuffer;

  private constructor(private readonly ex: Blake3Exports) {
    this.remap();
  }

  static async instantiate(module: WebAssembly.Module): Promise<Blake3Direct> {
    const instance = await WebAssembly.instantiate(module, {});
    const ex = instance.exports as unknown as Blake3Exports;
    for (const name of [
      'Hash_GetBuffer',
      'Hash_Init',
      'Hash_Update',
      'Hash_Final',
      'Hash_Calculate',
    ] as const) {
      if (typeof ex[name] !== 'function') throw new Error(`hash-wasm BLAKE3 module lacks ${name}`);
    }
    if (!(ex.memory instanceof WebAssembly.Memory)) throw new Error('hash-wasm BLAKE3 module lacks memory');
    return new Blake3Direct(ex);
  }

  /** The module's memory is fixed-size today; if it ever grew, the old views would be detached. */
  private remap(): void {
    const buf = this.ex.memory.buffer;
    const at = this.ex.Hash_GetBuffer();
    if (at % 4 !== 0) throw new Error(`hash-wasm BLAKE3 buffer at unaligned offset ${at}`);
    this.ioBuffer = buf;
    this.io = new Uint8Array(buf, at, BLAKE3_IO_BYTES);
    this.ioWords = new Uint32Array(buf, at, BLAKE3_IO_BYTES / 4);
  }

  /** The I/O buffer: write the input here before `hashInPlace`. */
  input(): Uint8Array {
    if (this.ioBuffer.byteLength === 0) this.remap();
    return this.io;
  }

  /**
   * BLAKE3-XOF of the first `length` bytes of the I/O buffer, `outBytes` (≤ 16 KiB) of output left
   * at the start of the buffer, returned as 32-bit words (valid until the next call).
   */
  hashInPlace(length: number, outBytes: number): Uint32Array {
    this.ex.Hash_Calculate(length, 0, outBytes);
    if (this.ioBuffer.byteLength === 0) this.remap();
    return this.ioWords;
  }

  /** Streaming form for inputs larger than the I/O buffer. */
  hashChunks(chunks: readonly Uint8Array[], outBytes: number): Uint32Array {
    this.ex.Hash_Init(0);
    for (const chunk of chunks) {
      for (let at = 0; at < chunk.length; at += BLAKE3_IO_BYTES) {
        const part = chunk.subarray(at, at + BLAKE3_IO_BYTES);
        this.input().set(part);
        this.ex.Hash_Update(part.length);
      }
    }
    this.ex.Hash_Final(outBytes);
    if (this.ioBuffer.byteLength === 0) this.remap();
    return this.ioWords;
  }
}

const BUNDLE_ENTRY = /var name\$(\w*) = "blake3";\s*var data\$\1 = "([A-Za-z0-9+/=]+)";/;

let compiled: Promise<WebAssembly.Module | undefined> | undefined;

/**
 * The compiled BLAKE3 module (shareable with worker threads), or undefined when it cannot be
 * obtained or does not agree with hash-wasm's public API on a 2 KiB XOF output.
 */
export function loadBlake3Module(): Promise<WebAssembly.Module | undefined> {
  compiled ??= (async () => {
    try {
      // Installed code, not store data: always the real file system, even under a simulated one.
      const entry = createRequire(import.meta.url).resolve('hash-wasm');
      const bundle = Buffer.from(readWholeFile(realFileSystem, entry)).toString('utf8');
      const m = BUNDLE_ENTRY.exec(bundle);
      if (!m) return undefined;
      const module = await WebAssembly.compile(Buffer.from(m[2]!, 'base64'));
      const direct = await Blake3Direct.instantiate(module);
      const probe = new Uint8Array(300);
      for (let i = 0; i < probe.length; i++) probe[i] = (i * 131 + 7) & 0xff;
      direct.input().set(probe);
      const words = direct.hashInPlace(probe.length, 2048);
      const mine = new Uint8Array(words.buffer, words.byteOffset, 2048).slice();
      const reference = await createBLAKE3(2048 * 8);
      reference.init();
      reference.update(probe);
      const theirs = reference.digest('binary');
      for (let i = 0; i < 2048; i++) if (mine[i] !== theirs[i]) return undefined;
      return module;
    } catch {
      return undefined;
    }
  })();
  return compiled;
}
