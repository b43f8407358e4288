import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOCK_STORE_KINDS, BlockStore } from '../../../src/blocks/blockStore.ts';
import { openBlockStore } from '../../../src/blocks/openBlockStore.ts';
import { RecordStore } from '../../../src/records/recordStore.ts';
import { MemoryKv } from '../../../src/testing/memoryKv.ts';
import { SimulatedFileSystem } from '../../../src/testing/simulatedFileSystem.ts';
import { MemoryLog } from './memoryLog.ts';

/** A way to open, restart and dispose a block store, so one suite runs on several storage stacks. */
export interface Backend {
  name: string;
  open(): Promise<BlockStore>;
  /** Clean close then reopen over the same data. */
  restart(store: BlockStore): Promise<BlockStore>;
  dispose(): Promise<void>;
}

/** MemoryLog + MemoryKv: the fastest stack, for logic tests. */
export function memoryBackend(): Backend {
  let log = new MemoryLog();
  let kv = new MemoryKv();
  const openOver = async (): Promise<BlockStore> =>
    BlockStore.open(await RecordStore.open({ log, kv, name: 'memory', ...BLOCK_STORE_KINDS }));
  return {
    name: 'memory',
    open: openOver,
    async restart(store) {
      await store.close();
      log = log.crashImage(Number.MAX_SAFE_INTEGER);
      kv = kv.reopenImage();
      return openOver();
    },
    async dispose() {},
  };
}

/** The product value log (Wal) on the simulated file system, index in MemoryKv. */
export function simulatedBackend(seed = 1): Backend {
  let fs = new SimulatedFileSystem({ seed });
  let kv = new MemoryKv();
  const openOver = (): Promise<BlockStore> =>
    openBlockStore({ dir: '/store', fs, kv, segmentBytes: 64 * 1024 });
  return {
    name: 'wal on simulated fs',
    open: openOver,
    async restart(store) {
      await store.close();
      fs = fs.crashImage({ data: 'drop', dirOps: 'drop' });
      kv = kv.reopenImage();
      return openOver();
    },
    async dispose() {},
  };
}

/** The production stack: Wal on the real disk plus classic-level, in a temp directory. */
export function diskBackend(): Backend {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-blocks-'));
  const openOver = (): Promise<BlockStore> => openBlockStore({ dir, segmentBytes: 256 * 1024 });
  return {
    name: 'wal + classic-level on disk',
    open: openOver,
    async restart(store) {
      await store.close();
      return openOver();
    },
    async dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every backend the shared suites run on. */
export function allBackends(): (() => Backend)[] {
  return [memoryBackend, () => simulatedBackend(), diskBackend];
}
