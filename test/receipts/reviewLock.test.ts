/**
 * Review of abcf2a6 (receipt store directory lock): a writable open that fails after taking the
 * lock gives it back (the next open reports the same problem, not LOCKED), a closed store leaves no
 * pid file, and a read-only open neither takes the lock nor is refused by a live writer.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LOCK_PID_FILE } from '../../src/io/dirLock.ts';
import { isCairnError } from '../../src/lib/errors.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { makeBlock } from './support/fixtures.ts';
import { withTempDir } from './support/harness.ts';

test('a writable open that fails after taking the lock releases it: the next open fails the same way, not LOCKED', async () => {
  await withTempDir(async (dir) => {
    const store = await ReceiptStore.open({ dir, blocksPerFile: 8 });
    for (let n = 0; n < 3; n++) await store.putBlock(makeBlock(5, n));
    await store.close();
    assert.equal(existsSync(join(dir, LOCK_PID_FILE)), false, 'close removed the pid file');
    // Both manifest copies damaged: the open takes the lock, then fails reading the manifest.
    for (const copy of ['MANIFEST.a', 'MANIFEST.b'])
      writeFileSync(join(dir, 'archive', copy), 'not a manifest');
    const codes: string[] = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(ReceiptStore.open({ dir, blocksPerFile: 8 }), (e) => {
        codes.push((e as { code?: string }).code ?? String(e));
        return !isCairnError(e, 'LOCKED');
      });
    }
    console.log(`failed opens: ${codes.join(', ')}`);
    assert.equal(codes[0], codes[1], `the second open failed differently: ${codes.join(' then ')}`);
    assert.equal(existsSync(join(dir, LOCK_PID_FILE)), false, 'the failed open left its pid file');
  });
});

test('a read-only open beside a live writer takes no lock; the writer keeps its lock after the reader closes', async () => {
  await withTempDir(async (dir) => {
    const store = await ReceiptStore.open({ dir, blocksPerFile: 8 });
    try {
      await store.putBlock(makeBlock(5, 0));
      const reader = await ReceiptStore.open({ dir, blocksPerFile: 8, readOnly: true });
      await reader.close();
      assert.ok(existsSync(join(dir, LOCK_PID_FILE)), "the reader's close removed the writer's pid file");
      await assert.rejects(ReceiptStore.open({ dir, blocksPerFile: 8 }), (e) => isCairnError(e, 'LOCKED'));
      await store.putBlock(makeBlock(5, 1));
    } finally {
      await store.close();
    }
  });
});
