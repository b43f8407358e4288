// `cairn state ...` end to end on a real directory: inspect and verify are read-only and refuse a
// missing store without creating it; verify exits 1 naming the family whose rows disagree;
// snapshot, rollback, export and import round-trip with identical roots.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { toHex } from '../../src/lib/bytes.ts';
import { Rng } from '../../src/lib/rng.ts';
import { encodeStorage, evmPhysicalKey } from '../../src/state/encoding.ts';
import { kvKey } from '../../src/state/records.ts';
import { StateStore } from '../../src/state/stateStore.ts';
import { randomBlock } from './support/harness.ts';

const root = mkdtempSync(path.join(tmpdir(), 'cairn-state-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));
const BIN = new URL('../../bin/cairn.js', import.meta.url).pathname;

function cairn(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, 'state', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('cairn state: inspect, verify, snapshot, rollback, export, import; verify names a damaged family', async () => {
  const dir = path.join(root, 'store');
  const roots: string[] = [];
  const store = await StateStore.open({ dataDir: dir, snapshotIntervalBlocks: 0 });
  for (let h = 1; h <= 6; h++) {
    await store.commitBlock(h, randomBlock(new Rng(h), 20));
    roots[h] = toHex(store.committedRoot());
  }
  await store.close();

  const missing = path.join(root, 'nothing-here');
  const none = cairn('inspect', '--data-dir', missing);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /NOT_FOUND/);
  assert.equal(existsSync(missing), false, 'inspection created nothing');

  const inspect = cairn('inspect', '--data-dir', dir);
  assert.equal(inspect.status, 0, inspect.stderr);
  const info = JSON.parse(inspect.stdout);
  assert.equal(info.height, 6);
  assert.equal(info.root, roots[6]);

  const verify = cairn('verify', '--data-dir', dir);
  assert.equal(verify.status, 0, verify.stderr);
  assert.equal(JSON.parse(verify.stdout).ok, true);

  const snap = cairn('snapshot', '--data-dir', dir);
  assert.equal(snap.status, 0, snap.stderr);
  assert.equal(JSON.parse(snap.stdout).height, 6);

  const out = path.join(root, 'state-6.cstx');
  const exp = cairn('export', '--data-dir', dir, '--out', out);
  assert.equal(exp.status, 0, exp.stderr);
  assert.equal(JSON.parse(exp.stdout).root, roots[6]);

  const rb = cairn('rollback', '--data-dir', dir, '--to', '4');
  assert.equal(rb.status, 0, rb.stderr);
  assert.equal(JSON.parse(rb.stdout).root, roots[4]);

  const other = path.join(root, 'imported');
  const imp = cairn('import', '--data-dir', other, '--in', out, '--expected-root', roots[6]!);
  assert.equal(imp.status, 0, imp.stderr);
  assert.equal(JSON.parse(imp.stdout).root, roots[6]);
  const bad = cairn(
    'import',
    '--data-dir',
    path.join(root, 'imported-bad'),
    '--in',
    out,
    '--expected-root',
    '00'.repeat(32),
  );
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /CONFLICT/);

  // Damage: a storage row nobody committed, written straight into the engine.
  const db = new ClassicLevel<Uint8Array, Uint8Array>(path.join(other, 'kv'), {
    keyEncoding: 'view',
    valueEncoding: 'view',
  });
  await db.open();
  const key = evmPhysicalKey(0x03, new Uint8Array(52).fill(0xee));
  await db.put(kvKey('storage', key), encodeStorage(1, new Uint8Array(32).fill(1)));
  await db.close();
  const damaged = cairn('verify', '--data-dir', other);
  assert.equal(damaged.status, 1);
  assert.match(damaged.stderr, /MISMATCH in family storage/);
  assert.doesNotMatch(damaged.stderr, /family (account|code|misc)/);
});
