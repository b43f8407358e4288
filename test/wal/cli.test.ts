import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import { afterEach, beforeEach, test } from 'node:test';
import { Command } from 'commander';
import { registerWalCommands } from '../../src/cli/walCommands.ts';
import { realFileSystem } from '../../src/io/realFileSystem.ts';
import { FRAME_HEADER_BYTES } from '../../src/wal/frame.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor, tempDir, WrappingFileSystem } from './helpers.ts';

let dir: string;
let cleanup: () => void;
/** Records of 40 payload bytes: 17 frames fill a segment exactly. */
const FRAME_BYTES = FRAME_HEADER_BYTES + 40;
const SEGMENT_BYTES = 32 + 17 * FRAME_BYTES;
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
  const wal = await Wal.open({ fs: realFileSystem, dir, segmentBytes: SEGMENT_BYTES });
  for (let i = 0; i < 50; i++) wal.append([payloadFor(i, 40)]);
  await wal.close();
}

test('wal inspect prints segments and range; --json is machine-readable', async () => {
  await build();
  const table = await run('wal', 'inspect', dir);
  assert.equal(table.exitCode, 0);
  assert.match(table.out, /records\s+\[0, 50\)\s+count 50/);
  assert.match(
    table.out,
    new RegExp(`00000000000000000000\\.wal\\s+0\\s+17\\s+${SEGMENT_BYTES}\\s+v3\\s+sealed`),
  );
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
  nodeFs.writeSync(fd, new Uint8Array([9, 9, 9]), 0, 3, 32 + 16 * FRAME_BYTES); // just past the data
  nodeFs.closeSync(fd);
  const torn = nodeFs.readFileSync(file);
  const r = await run('wal', 'verify', dir);
  assert.equal(r.exitCode, 0);
  assert.match(r.out, /warning: torn tail found \(not repaired: read-only\)/);
  assert.deepEqual(nodeFs.readFileSync(file), torn);
  assert.notDeepEqual(torn, before);
});

test('wal inspect reports the durable tip (the meta marker) apart from the written tip', async () => {
  const wal = await Wal.open({ fs: realFileSystem, dir, segmentBytes: SEGMENT_BYTES });
  for (let i = 0; i < 10; i++) wal.append([payloadFor(i, 40)]);
  await wal.close(); // clean: the marker says 10
  const killedFs = new WrappingFileSystem();
  const again = await Wal.open({ fs: killedFs, dir, segmentBytes: SEGMENT_BYTES });
  for (let i = 10; i < 15; i++) again.append([payloadFor(i, 40)]);
  await again.sync();
  killedFs.kill(); // no clean close: records 10..14 are written, nothing recorded them as durable
  const json = JSON.parse((await run('wal', 'inspect', '--json', dir)).out);
  assert.equal(json.nextIndex, 15);
  assert.equal(json.durableIndex, 10);
});

/** Flips one bit of record `index` (records of 40 payload bytes). */
function damageRecord(index: number, segmentRecords = 17): string {
  const seg = Math.floor(index / segmentRecords) * segmentRecords;
  const file = `${dir}/${String(seg).padStart(20, '0')}.wal`;
  const offset = 32 + (index - seg) * FRAME_BYTES + 20;
  const bytes = nodeFs.readFileSync(file);
  bytes[offset] = (bytes[offset] ?? 0) ^ 0x10;
  nodeFs.writeFileSync(file, bytes);
  return file;
}

test('wal salvage: dry run changes nothing; --apply cuts past the damage, keeps a copy, and the log opens', async () => {
  // A killed writer: the durable marker knows nothing past 0, so the damage is salvageable.
  const fs = new WrappingFileSystem();
  const wal = await Wal.open({ fs, dir, segmentBytes: SEGMENT_BYTES });
  for (let i = 0; i < 50; i++) wal.append([payloadFor(i, 40)]);
  await wal.sync();
  fs.kill();
  damageRecord(20); // a sealed segment: WAL_CORRUPT at open
  await assert.rejects(
    Wal.open({ fs: realFileSystem, dir, segmentBytes: SEGMENT_BYTES }),
    /WAL_CORRUPT|checksum/,
  );
  const before = nodeFs.readdirSync(dir).sort();
  const dry = await run('wal', 'salvage', dir);
  assert.equal(dry.exitCode, 0, dry.err);
  assert.match(dry.out, /first record cut: 20/);
  assert.match(dry.out, /dry run: nothing changed/);
  assert.deepEqual(nodeFs.readdirSync(dir).sort(), before);
  const applied = await run('wal', 'salvage', '--apply', dir);
  assert.equal(applied.exitCode, 0, applied.err);
  const aside = nodeFs.readdirSync(dir).find((n) => n.startsWith('salvaged-'));
  assert.ok(aside !== undefined, 'a copy of what was cut');
  assert.ok(nodeFs.readdirSync(`${dir}/${aside}`).length >= 2, 'the damaged tail and the later segment');
  const reopened = await Wal.open({ fs: realFileSystem, dir, segmentBytes: SEGMENT_BYTES });
  assert.equal(reopened.nextIndex, 20);
  reopened.verify();
  await reopened.close();
});

test('wal salvage refuses to cut records below the durable marker (acknowledged data)', async () => {
  await build(); // clean close: every record is known acknowledged
  damageRecord(45);
  const r = await run('wal', 'salvage', '--apply', dir);
  assert.equal(r.exitCode, 1);
  assert.match(r.err, /below the durable\s+marker 50/);
  assert.ok(!nodeFs.readdirSync(dir).some((n) => n.startsWith('salvaged-')));
});
