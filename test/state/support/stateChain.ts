// The deterministic chain the kill -9 children commit: block h of a directory is a pure function of
// (dirSeed, h), so the parent can recompute every height's root on an in-memory reference store.
import { Rng } from '../../../src/lib/rng.ts';
import type { NamedChangeSet, StateStoreOptions } from '../../../src/state/stateStore.ts';
import { randomBlock } from './harness.ts';

export const KILL9_STORE_OPTIONS: Partial<StateStoreOptions> = {
  snapshotIntervalBlocks: 16,
  retainBlocks: 32,
  checkpointIntervalBlocks: 5,
  walSegmentBytes: 256 * 1024,
};

export function chainBlock(dirSeed: number, h: number): NamedChangeSet[] {
  return randomBlock(new Rng((dirSeed ^ Math.imul(h, 0x9e3779b1)) >>> 0), 30);
}
