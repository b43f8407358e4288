import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import { afterEach, beforeEach, test } from 'node:test';
import { Command } from 'commander';
import { registerWalCommands } from '../../src/cli/walCommands.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor, tempDir } from './helpers.ts';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

async function run(...args: string[]): Promise<{ out: string; err: string; exitCode: number }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  const savedExit = process.exitCode;
  process.exitCode = 0;
  console.log = (...a: unknown[]) => out.push(a.join(' '));
  console.error = (...a: unknown[]) => err.push(a.join(' '));
  try {
    const program = new Command().exitOverride();
    registerWalCommands(program);
    await program.parseAsync(['node', 'cairn', ...args]);
    return { out: out.join('\n'), err: err.join('\n'), exitCode: Number(process.exitCode ?? 0) };
  } finally {
    console.log = log;
    console.error = error;
    process.exitCode = savedExit;
  }
}

async function build(): Promise<void> {
  const wal = await Wal.open({ fs: realFileSystem, dir, segmentBytes: 1024 });
  for (let i = 0; i < 50; i++) wal.append([payloadFor(i, 40)]);
  await wal.close();
}

test('wal inspect prints segments and range; --json is machine-readable', async () => {
  await build();
  const table = await run('wal', 'inspect', dir);
  assert.equal(table.exitCode, 0);
  assert.match(table.out, /records\s+\[0, 50\)\s+count 50/);
  assert.match(table.out, /00000000000000000000\.wal\s+0\s+17\s+984\s+sealed/);
  const json = JSON.parse((await run('wal', 'inspect', '--json', dir)).out);
  assert.equal(json.nextIndex, 50);
  assert.equal(json.segments.length, 3);
  assert.equal(json.segments[2].sealed, false);
});

test('wal verify succeeds on a good log and does not modify it', async () => {
  await build();
  const before = nodeFs.readdirSync(dir).map((n) => nodeFs.readFileSync(`${dir}/${n}`));
  const r = await run('wal', 'verify', dir);
  assert.equal(r.exitCode, 0);
  assert.match(r.out, /ok: 50 records in 3 segments/);
  assert.deepEqual(
    nodeFs.readdirSync(dir).map((n) => nodeFs.readFileSync(`${dir}/${n}`)),
    before,
  );
});

test('wal verify exits 1 and names file and offset on corruption', async () => {
  await build();
  const file = `${dir}/00000000000000000017.wal`;
  const fd = nodeFs.openSync(file, 'r+');
  nodeFs.writeSync(fd, new Uint8Array([0xff]), 0, 1, 60);
  nodeFs.closeSync(fd);
  const r = await run('wal', 'verify', dir);
  assert.equal(r.exitCode, 1);
  assert.match(r.err, /WAL_CORRUPT/);
  assert.match(r.err, new RegExp(`file:\\s+${file}`));
  assert.match(r.err, /offset: 32/);
});

test('wal verify reports a torn tail as a warning without repairing it', async () => {
  await build();
  const file = `${dir}/00000000000000000034.wal`;
  const before = nodeFs.readFileSync(file);
  const fd = nodeFs.openSync(file, 'r+');
  nodeFs.writeSync(fd, new Uint8Array([9, 9, 9]), 0, 3, 928);
  nodeFs.closeSync(fd);
  const torn = nodeFs.readFileSync(file);
  const r = await run('wal', 'verify', dir);
  assert.equal(r.exitCode, 0);
  assert.match(r.out, /warning: torn tail found \(not repaired: read-only\)/);
  assert.deepEqual(nodeFs.readFileSync(file), torn);
  assert.notDeepEqual(torn, before);
});
