import { createKeccak, type IHasher } from 'hash-wasm';
import type { LogInput } from './types.ts';

let hasher: IHasher | undefined;

/** Loads the Keccak-256 hasher once (hash-wasm compiles its WebAssembly asynchronously). */
export async function loadBloomHasher(): Promise<void> {
  hasher ??= await createKeccak(256);
}

/**
 * The 2048-bit logs bloom of Ethereum's yellow paper: for the address and each topic of each log,
 * three 11-bit indices from the first six bytes of its Keccak-256 set one bit each. It is a pure
 * function of the logs, so the store recomputes it on read instead of storing 256 bytes per receipt.
 */
export function logsBloom(logs: readonly LogInput[]): Uint8Array {
  if (hasher === undefined) throw new Error('loadBloomHasher() must run before logsBloom()');
  const bloom = new Uint8Array(256);
  const add = (value: Uint8Array): void => {
    hasher!.init();
    hasher!.update(value);
    const h = hasher!.digest('binary');
    for (let i = 0; i < 6; i += 2) {
      const bit = ((h[i]! << 8) | h[i + 1]!) & 2047;
      bloom[255 - (bit >> 3)]! |= 1 << (bit & 7);
    }
  };
  for (const log of logs) {
    add(log.address);
    for (const t of log.topics) add(t);
  }
  return bloom;
}
