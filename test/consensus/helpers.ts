/** Consensus-specific test helpers. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsensusPersistence, type ConsensusPersistenceOptions } from '../../src/consensus/persistence.ts';
import type { FileHandle, FileSystem } from '../../src/io/fileSystem.ts';
import { CairnError } from '../../src/lib/errors.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';

export const ROOT = '/data/consensus';

export function simFs(seed = 1): SimulatedFileSystem {
  return new SimulatedFileSystem({ seed });
}

/** A small fixture (unsigned by default: fast) with `lanes` lanes. */
export function smallFixture(lanes = 4, seed = 11, sign = false, payloadBytes = 64): ConsensusFixture {
  return new ConsensusFixture({ lanes, seed, payloadBytes, sign });
}

export function openCp(
  fs: FileSystem,
  f: ConsensusFixture,
  extra: Partial<ConsensusPersistenceOptions> = {},
): Promise<ConsensusPersistence> {
  return ConsensusPersistence.open({
    fs,
    dir: ROOT,
    committee: f.committee,
    verifySignatures: false,
    segmentBytes: 16 * 1024,
    preallocate: false,
    ...extra,
  });
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `cairn-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Asserts that `fn` throws (or rejects with) a CairnError with `code` whose message matches `re`. */
export async function expectCairn(fn: () => unknown, code: string, re?: RegExp): Promise<CairnError> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof CairnError))
      throw new Error(`expected CairnError ${code}, got ${String(err)}`, { cause: err });
    if (err.code !== code)
      throw new Error(`expected ${code}, got ${err.code}: ${err.message}`, { cause: err });
    if (re && !re.test(err.message)) throw new Error(`message "${err.message}" does not match ${re}`);
    return err;
  }
  throw new Error(`expected CairnError ${code}, nothing was thrown`);
}

/**
 * Wraps a FileSystem so that `syncAsync` of files whose path contains `pathIncludes` waits until
 * `release()` — a slow disk for one lane, to show the others do not wait for it. Counts those syncs.
 */
export class GatedFileSystem implements FileSystem {
  private gate: Promise<void> | undefined;
  private open_: (() => void) | undefined;
  gatedSyncs = 0;

  constructor(
    readonly inner: FileSystem,
    private readonly pathIncludes: string,
  ) {}

  hold(): void {
    this.gate = new Promise((resolve) => {
      this.open_ = resolve;
    });
  }

  release(): void {
    this.open_?.();
    this.gate = undefined;
  }

  open(path: string, options?: Parameters<FileSystem['open']>[1]): FileHandle {
    const handle = this.inner.open(path, options);
    if (!path.includes(this.pathIncludes)) return handle;
    const self = this;
    return new Proxy(handle, {
      get(target, prop, receiver) {
        if (prop === 'syncAsync') {
          return async () => {
            self.gatedSyncs++;
            if (self.gate) await self.gate;
            return target.syncAsync();
          };
        }
        // The callback twin would bypass the gate: hidden, so the WAL falls back to syncAsync.
        if (prop === 'syncThen') return undefined;
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }
  stat(p: string) {
    return this.inner.stat(p);
  }
  exists(p: string) {
    return this.inner.exists(p);
  }
  readdir(p: string) {
    return this.inner.readdir(p);
  }
  mkdir(p: string) {
    this.inner.mkdir(p);
  }
  rename(a: string, b: string) {
    this.inner.rename(a, b);
  }
  unlinkAsync(p: string) {
    return this.inner.unlinkAsync(p);
  }
  link(a: string, b: string) {
    this.inner.link(a, b);
  }
  unlink(p: string) {
    this.inner.unlink(p);
  }
  rmdir(p: string) {
    this.inner.rmdir(p);
  }
  syncDir(p: string) {
    this.inner.syncDir(p);
  }
}

/** Lets pending promise callbacks and a few event-loop turns run. */
export async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
