// Shared helpers for the state store tests: stores on the simulated file system with the in-memory
// engine host, deterministic changesets, and a reference model of the logical state.

import type { Rng } from '../../../src/lib/rng.ts';
import { type NamedChangeSet, StateStore, type StateStoreOptions } from '../../../src/state/stateStore.ts';
import { type CrashPolicy, SimulatedFileSystem } from '../../../src/testing/simulatedFileSystem.ts';
import { MemoryKvHost, type UnsyncedPolicy } from './memoryKvHost.ts';

export const DIR = '/state';

export interface SimEnv {
  fs: SimulatedFileSystem;
  host: MemoryKvHost;
}

export function simEnv(seed = 1): SimEnv {
  const fs = new SimulatedFileSystem({ seed });
  return { fs, host: new MemoryKvHost(fs) };
}

export function openSim(env: SimEnv, options: Partial<StateStoreOptions> = {}): Promise<StateStore> {
  return StateStore.open({
    dataDir: DIR,
    fs: env.fs,
    kvHost: env.host,
    lockDir: false,
    walSegmentBytes: 64 * 1024,
    snapshotIntervalBlocks: 0,
    checkpointIntervalBlocks: 4,
    ...options,
  });
}

export function addr(n: number): Uint8Array {
  const a = new Uint8Array(20);
  new DataView(a.buffer).setUint32(16, n, false);
  a[0] = 0xa0;
  return a;
}
export function slot(n: number): Uint8Array {
  const s = new Uint8Array(32);
  new DataView(s.buffer).setUint32(28, n, false);
  return s;
}
export function word(n: number): Uint8Array {
  const w = new Uint8Array(32);
  new DataView(w.buffer).setUint32(28, n, false);
  return w;
}
export function u64(n: number | bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), false);
  return b;
}
export const storageKey = (a: number, s: number) => new Uint8Array([0x03, ...addr(a), ...slot(s)]);
export const nonceKey = (a: number) => new Uint8Array([0x0a, ...addr(a)]);
export const codeHashKey = (a: number) => new Uint8Array([0x08, ...addr(a)]);
export const codeKey = (a: number) => new Uint8Array([0x07, ...addr(a)]);
const te = new TextEncoder();
export const bytes = (s: string) => te.encode(s);

export function evm(pairs: NamedChangeSet['pairs']): NamedChangeSet {
  return { name: 'evm', pairs };
}

/**
 * A random block over every family: storage add/update/delete (zero writes), nonce and code-hash
 * writes and deletes (EOA ↔ contract, account GC), code add/delete, evm misc and bank misc (including
 * empty values and deletes), with repeated keys inside a block. Keys come from small pools so
 * updates, deletes and re-creations are frequent.
 */
export function randomBlock(rng: Rng, size: number): NamedChangeSet[] {
  const evmPairs: NamedChangeSet['pairs'][number][] = [];
  const bank: NamedChangeSet['pairs'][number][] = [];
  for (let i = 0; i < size; i++) {
    const a = rng.int(0, 12);
    switch (rng.int(0, 7)) {
      case 0:
      case 1:
        evmPairs.push(
          rng.bool(0.2)
            ? { key: storageKey(a, rng.int(0, 6)), delete: true }
            : { key: storageKey(a, rng.int(0, 6)), value: rng.bool(0.1) ? word(0) : word(rng.int(1, 1000)) },
        );
        break;
      case 2:
        evmPairs.push(
          rng.bool(0.25)
            ? { key: nonceKey(a), delete: true }
            : { key: nonceKey(a), value: u64(rng.int(0, 5)) },
        );
        break;
      case 3:
        evmPairs.push(
          rng.bool(0.3)
            ? { key: codeHashKey(a), delete: true }
            : { key: codeHashKey(a), value: rng.bool(0.1) ? new Uint8Array(32) : word(rng.int(1, 50)) },
        );
        break;
      case 4:
        evmPairs.push(
          rng.bool(0.3)
            ? { key: codeKey(a), delete: true }
            : { key: codeKey(a), value: rng.bytes(rng.int(0, 40)) },
        );
        break;
      case 5:
        evmPairs.push(
          rng.bool(0.3)
            ? { key: new Uint8Array([0x09, ...addr(a)]), delete: true }
            : { key: new Uint8Array([0x09, ...addr(a)]), value: rng.bytes(rng.int(0, 4)) },
        );
        break;
      default:
        bank.push(
          rng.bool(0.3)
            ? { key: bytes(`acct${a}`), delete: true }
            : { key: bytes(`acct${a}`), value: rng.bool(0.2) ? null : rng.bytes(rng.int(1, 8)) },
        );
    }
  }
  const out: NamedChangeSet[] = [];
  if (evmPairs.length > 0) out.push({ name: 'evm', pairs: evmPairs });
  if (bank.length > 0) out.push({ name: 'bank', pairs: bank });
  return out;
}

/**
 * The process dies (the open store is abandoned, never closed): the file system and the engines are
 * replaced by what a restart sees. `fsPolicy` defaults to keeping every written byte (a process
 * crash; the OS survives); `engine` says which unsynced engine batches survive.
 */
export function crashEnv(
  env: SimEnv,
  rng: Rng,
  options: { fsPolicy?: CrashPolicy; engine?: UnsyncedPolicy } = {},
): SimEnv {
  const fs = env.fs.crashImage({ data: 'keep', dirOps: 'keep', ...options.fsPolicy, seed: rng.nextU32() });
  return { fs, host: env.host.crashImage(fs, rng, options.engine ?? 'all') };
}

/** A clean restart after close(). */
export function restartEnv(env: SimEnv): SimEnv {
  return { fs: env.fs, host: env.host.reopenImage(env.fs) };
}
