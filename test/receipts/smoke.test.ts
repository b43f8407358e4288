import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { ADDRESSES, expectedLogs, logKeys, makeBlock, TOPICS } from './support/fixtures.ts';

test('smoke: write, rotate, read from hot and archive, reopen', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-receipts-'));
  try {
    const blocks = Array.from({ length: 25 }, (_, n) => makeBlock(1, n));
    let store = await ReceiptStore.open({ dir, blocksPerFile: 8, hotRetentionBlocks: 10 });
    await Promise.all(blocks.map((b) => store.putBlock(b)));
    console.log(store.ranges());
    const f = {
      fromBlock: 0,
      toBlock: 24,
      addresses: [ADDRESSES[1]!],
      topics: [null, [TOPICS[2]!, TOPICS[3]!]],
    };
    assert.deepEqual(logKeys(await store.getLogs(f)), logKeys(expectedLogs(blocks, f, 0, 24)));
    const r = await store.getReceipt(blocks[3]!.receipts[0]!.txHash);
    assert.equal(r?.blockNumber, 3);
    await store.close();
    store = await ReceiptStore.open({ dir, blocksPerFile: 8, hotRetentionBlocks: 10 });
    assert.deepEqual(logKeys(await store.getLogs(f)), logKeys(expectedLogs(blocks, f, 0, 24)));
    const all = { fromBlock: 0, toBlock: 24 };
    assert.deepEqual(logKeys(await store.getLogs(all)), logKeys(expectedLogs(blocks, all, 0, 24)));
    console.log(await store.verify());
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
