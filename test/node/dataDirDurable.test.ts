// Review finding: the data directory is created by the directory lock with a plain mkdir, and no
// one fsyncs its parent: a power cut soon after the first start may drop the whole directory entry
// (with every acknowledged write below it). Opening a node must make the entries of a directory it
// created durable, like every other create in Cairn.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { FileSystem } from '../../src/io/fileSystem.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { CairnNode } from '../../src/node/node.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';

/** The real file system, recording which directories were fsynced. */
function recordingFs(): { fs: FileSystem; syncedDirs: string[] } {
  const syncedDirs: string[] = [];
  const fs: FileSystem = {
    open: (p, o) => realFileSystem.open(p, o),
    stat: (p) => realFileSystem.stat(p),
    exists: (p) => realFileSystem.exists(p),
    readdir: (p) => realFileSystem.readdir(p),
    mkdir: (p) => realFileSystem.mkdir(p),
    rename: (a, b) => realFileSystem.rename(a, b),
    link: (a, b) => realFileSystem.link(a, b),
    unlink: (p) => realFileSystem.unlink(p),
    unlinkAsync: (p) => realFileSystem.unlinkAsync(p),
    rmdir: (p) => realFileSystem.rmdir(p),
    syncDir: (p) => {
      syncedDirs.push(path.resolve(p));
      realFileSystem.syncDir(p);
    },
  };
  return { fs, syncedDirs };
}

test('opening a node on a new data directory fsyncs the parents of every directory it created', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'cairn-node-datadir-'));
  try {
    const dataDir = path.join(root, 'a', 'b', 'node');
    const { fs, syncedDirs } = recordingFs();
    const fx = new ConsensusFixture({ lanes: 2, seed: 3, sign: false });
    const { node } = await CairnNode.open({ dataDir, committee: fx.committee, fs, verifySignatures: false });
    await node.close();
    for (const created of [path.join(root, 'a'), path.join(root, 'a', 'b'), dataDir]) {
      const parent = path.dirname(created);
      assert.ok(
        syncedDirs.includes(parent),
        `${created} was created but its parent ${parent} was never fsynced (synced: ${syncedDirs.join(', ')})`,
      );
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
