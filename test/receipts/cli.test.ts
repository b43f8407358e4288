// `cairn receipts get|logs|verify` on a data directory written through the API.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { toHex } from '../../src/lib/bytes.ts';
import { ReceiptStore } from '../../src/receipts/receiptStore.ts';
import { ADDRESSES, expectedLogs, makeBlock } from './support/fixtures.ts';
import { withTempDir } from './support/harness.ts';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../bin/cairn.js', import.meta.url));

async function cairn(...args: string[]): Promise<{ code: number; json: Record<string, unknown> }> {
  try {
    const { stdout } = await run(process.execPath, [CLI, ...args]);
    return { code: 0, json: JSON.parse(stdout) };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, json: JSON.parse(e.stdout) };
  }
}

test('cairn receipts get / logs / verify', { timeout: 120_000 }, async () => {
  await withTempDir(async (dir) => {
    const blocks = Array.from({ length: 12 }, (_, n) => makeBlock(51, n, { maxReceipts: 6 }));
    const store = await ReceiptStore.open({ dir, blocksPerFile: 4 });
    for (const b of blocks) await store.putBlock(b);
    await store.close();
    const tx = blocks.find((b) => b.receipts.length > 0)!;
    const r = tx.receipts[0]!;
    const got = await cairn('receipts', 'get', `0x${toHex(r.txHash)}`, '--data-dir', dir);
    assert.equal(got.code, 0);
    assert.equal((got.json.receipt as { blockNumber: number }).blockNumber, tx.number);
    const miss = await cairn('receipts', 'get', `0x${'ab'.repeat(32)}`, '--data-dir', dir);
    assert.equal(miss.code, 1);
    assert.equal(miss.json.status, 'not-found');

    const addr = ADDRESSES[2]!;
    const logs = await cairn(
      'receipts',
      'logs',
      '--data-dir',
      dir,
      '--from',
      '1',
      '--to',
      '10',
      '--address',
      `0x${toHex(addr)}`,
    );
    assert.equal(logs.code, 0);
    assert.equal(logs.json.count, expectedLogs(blocks, { addresses: [addr] }, 1, 10).length);

    const ok = await cairn('receipts', 'verify', '--data-dir', dir);
    assert.equal(ok.code, 0, JSON.stringify(ok.json));
    assert.deepEqual(ok.json.problems, []);
    // A damaged older archive file: verify reports it (open refuses it as corrupt).
    const file = join(dir, 'archive', 'logs_0_3.parquet');
    const bytes = readFileSync(file);
    bytes[100]! ^= 0xff;
    writeFileSync(file, bytes);
    const bad = await cairn('receipts', 'verify', '--data-dir', dir);
    assert.equal(bad.code, 1);
    assert.match(JSON.stringify(bad.json), /logs_0_3\.parquet fails its checksum|CORRUPT/);
  });
});

/** Every path under `dir` with its bytes (directories as a marker): the tree to byte-compare. */
function snapshotTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(dir)) return out;
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) {
        out.set(p, '<dir>');
        walk(p);
      } else out.set(p, readFileSync(p).toString('base64'));
    }
  };
  walk(dir);
  return out;
}

test('cairn receipts get / logs / verify never create or repair anything (missing and crashed directories)', {
  timeout: 120_000,
}, async () => {
  await withTempDir(async (root) => {
    // A missing directory: a typed error, and nothing is created.
    const missing = join(root, 'nothing-here');
    for (const args of [['get', `0x${'ab'.repeat(32)}`], ['logs'], ['verify']]) {
      const res = await cairn('receipts', ...args, '--data-dir', missing);
      assert.equal(res.code, 1, JSON.stringify(res.json));
      assert.equal(existsSync(missing), false, `receipts ${args[0]} created ${missing}`);
    }

    // A crashed directory: copied while the writer is open (LevelDB log unflushed, LOCK present,
    // no hot-tier checkpoint for the last blocks), plus an unlisted leftover in archive/.
    const live = join(root, 'live');
    const blocks = Array.from({ length: 11 }, (_, n) => makeBlock(53, n, { maxReceipts: 6 }));
    const store = await ReceiptStore.open({ dir: live, blocksPerFile: 4 });
    for (const b of blocks) await store.putBlock(b);
    const crashed = join(root, 'crashed');
    cpSync(live, crashed, { recursive: true });
    await store.close();
    writeFileSync(join(crashed, 'archive', 'receipts_0_3.parquet.tmp'), 'partial');
    const before = snapshotTree(crashed);
    const tx = blocks.find((b) => b.receipts.length > 0)!;
    const got = await cairn('receipts', 'get', `0x${toHex(tx.receipts[0]!.txHash)}`, '--data-dir', crashed);
    assert.equal(got.code, 0, JSON.stringify(got.json));
    const logs = await cairn('receipts', 'logs', '--data-dir', crashed, '--from', '0', '--to', '10');
    assert.equal(logs.json.count, expectedLogs(blocks, {}, 0, 10).length);
    await cairn('receipts', 'verify', '--data-dir', crashed);
    assert.deepEqual(snapshotTree(crashed), before, 'the CLI changed the directory');
  });
});
