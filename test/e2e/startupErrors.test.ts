// Every startup failure of `cairn devnet` prints one line `CODE: message` (with the file, and the
// offset where known), no stack trace, and exits non-zero by itself. Real child processes of the
// real CLI: a path under /proc (Node's recursive mkdir used to spin there forever at full CPU), a
// file as data directory (used to print a raw stack trace), a directory nothing can be created in,
// and a lane WAL damaged below its acknowledged records.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CAIRN_BIN = fileURLToPath(new URL('../../bin/cairn.js', import.meta.url));
/** Generous: the point is "exits by itself", not how fast (a loaded CI box starts tsx slowly). */
const GIVE_UP_MS = 60_000;

const scratch = mkdtempSync(path.join(tmpdir(), 'cairn-startup-errors-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  killed: boolean;
}

function runCairn(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CAIRN_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (chunk) => {
      stderr += String(chunk);
    });
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, GIVE_UP_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, killed });
    });
  });
}

function assertOneLineError(run: Run, code: RegExp, mentions: string): void {
  assert.equal(run.killed, false, `did not exit within ${GIVE_UP_MS} ms; stderr: ${run.stderr}`);
  assert.equal(run.signal, null);
  assert.notEqual(run.code, 0, 'exit code');
  const lines = run.stderr.trim().split('\n');
  assert.match(lines[0] ?? '', code, run.stderr);
  assert.ok(lines[0]!.includes(mentions), `${lines[0]} names ${mentions}`);
  assert.ok(!/^\s+at /m.test(run.stderr), `no stack trace: ${run.stderr}`);
}

const devnet = (dataDir: string, more: string[] = []) => [
  'devnet',
  '--data-dir',
  dataDir,
  '--lanes',
  '2',
  '--log-interval',
  '3600',
  ...more,
];

test('startup failures print CODE: message and exit non-zero', async () => {
  const file = path.join(scratch, 'a-file');
  writeFileSync(file, 'not a directory\n');
  // Root may write anywhere a mode bit forbids; sysfs refuses everyone.
  let unwritable = path.join(scratch, 'read-only');
  if (process.getuid?.() === 0) unwritable = '/sys/fs';
  else {
    const { mkdirSync, chmodSync } = await import('node:fs');
    mkdirSync(unwritable);
    chmodSync(unwritable, 0o555);
  }
  const [proc, asFile, readOnly] = await Promise.all([
    runCairn(devnet('/proc/cairn-x')),
    runCairn(devnet(file)),
    runCairn(devnet(unwritable)),
  ]);
  assertOneLineError(proc, /^IO_FATAL: /, '/proc/cairn-x');
  assertOneLineError(asFile, /^INVALID_ARGUMENT: /, file);
  assert.equal(asFile.code, 2, 'a caller error exits 2');
  assertOneLineError(readOnly, /^IO_FATAL: /, unwritable);
});

test('a lane WAL damaged below its acknowledged records: CODE: message naming the file, non-zero', async () => {
  const dataDir = path.join(scratch, 'corrupt');
  const first = await runCairn(devnet(dataDir, ['--blocks', '300', '--rate', '200', '--block-bytes', '256']));
  assert.equal(first.code, 0, first.stderr);
  // The first segment of one lane log: flip a byte inside its first record's payload, with intact
  // records after it (damage, not a torn tail).
  const laneDir = path.join(dataDir, 'consensus', 'blocks');
  const lane = readdirSync(laneDir).sort()[0]!;
  const segment = path.join(
    laneDir,
    lane,
    readdirSync(path.join(laneDir, lane))
      .filter((n) => n.endsWith('.wal'))
      .sort()[0]!,
  );
  assert.ok(statSync(segment).size > 4096);
  const fd = openSync(segment, 'r+');
  try {
    const byte = Buffer.alloc(1);
    const at = 200;
    readSync(fd, byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0x10;
    writeSync(fd, byte, 0, 1, at);
  } finally {
    closeSync(fd);
  }
  const second = await runCairn(devnet(dataDir, ['--blocks', '10']));
  assertOneLineError(second, /^(WAL_CORRUPT|CORRUPT|DECODE): /, lane);
});
