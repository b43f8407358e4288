// Damage to the engine's own files (issue #9 §1, items 12 and 14): the block store's LevelDB index
// is derived data, so a zeroed page, a garbled page or a flipped bit in a table (.ldb), the
// MANIFEST, CURRENT or the log must end in one of two answers: every stored block read back
// correctly (re-indexed from the value log), or a typed Cairn error that names the damage. A wrong
// answer ('absent' inside the stored range, a different block), a raw engine error, an error
// misreported as LOCKED is a finding. Each trial runs in a child process (a native abort is counted
// and printed: it cannot be typed from JavaScript). After a refusal or an abort, `cairn blocks
// reindex` (reindexBlockStore) must bring every block back: the operator's way out.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openBlockStore } from '../../src/blocks/openBlockStore.ts';
import { reindexBlockStore } from '../../src/blocks/reindex.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { bundleTsChild, siblingPath, spawnNodeChild } from '../support/childProcess.ts';
import {
  describeDamage,
  flipBit,
  garblePage,
  levelDbFiles,
  pageCount,
  zeroPage,
} from '../support/fileDamage.ts';
import { makeChain } from './support/chain.ts';

const COHORTS = 60;
/** Cohorts written after the reopen and never closed: they stay in LevelDB's log file. */
const LOG_COHORTS = 4;
const DAMAGES = ['zero-page', 'garble-page', 'flip-bit'] as const;
/** Trials per (file, damage): tables hold the answers, so most trials go there. */
const TRIALS = { table: 6, manifest: 2, current: 2, log: 2 } as const;

interface Report {
  stage: 'open' | 'ranges' | 'read';
  ok?: boolean;
  wrong?: string;
  typed?: boolean;
  code?: string;
  message?: string;
}

function classify(report: Report | undefined, signal: string | null, exitCode: number | null): string {
  if (report === undefined) return `abort (signal ${signal}, code ${exitCode})`;
  if (report.ok) return 'ok';
  if (report.wrong !== undefined) return `wrong answer: ${report.wrong}`;
  if (!report.typed) return `raw error at ${report.stage}: ${report.code}`;
  if (report.code === 'LOCKED') return `misreported as LOCKED at ${report.stage}`;
  return `typed ${report.code}`;
}

test('damaged LevelDB index files (tables, MANIFEST, CURRENT, log): right answers or typed errors only', {
  timeout: 240_000,
}, async () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const rng = new Rng(seed);
  const root = mkdtempSync(join(tmpdir(), 'cairn-engine-damage-'));
  try {
    // A pristine store, closed cleanly and reopened once so the LevelDB log became a table.
    const pristine = join(root, 'pristine');
    const chain = makeChain({ seed, cohorts: COHORTS + LOG_COHORTS, payloadBytes: 256 });
    const store = await openBlockStore({ dir: pristine, segmentBytes: 64 * 1024 });
    for (let i = 0; i < COHORTS; i++) {
      store.writeQC(chain.qcs[i]!);
      const r = chain.range(i);
      for (let n = r.first; n < r.next; n++) store.writeBlock(n, chain.block(n));
    }
    await store.flush();
    await store.close();
    // Reopened (the LevelDB log became a table), then more cohorts that stay in the engine's log.
    const reopened = await openBlockStore({ dir: pristine, segmentBytes: 64 * 1024 });
    for (let i = COHORTS; i < COHORTS + LOG_COHORTS; i++) {
      reopened.writeQC(chain.qcs[i]!);
      const r = chain.range(i);
      for (let n = r.first; n < r.next; n++) reopened.writeBlock(n, chain.block(n));
      await reopened.flush();
    }
    const stored = reopened.ranges().blocks.next;
    await reopened.close();
    const childCommand = (await bundleTsChild(siblingPath(import.meta.url, './support/damageChild.ts')))
      .command;

    const tally = new Map<string, number>();
    const findings: string[] = [];
    const aborts: string[] = [];
    let repaired = 0;
    let trial = 0;
    for (const { kind, file } of levelDbFiles(join(pristine, 'index'))) {
      if (statSync(file).size === 0) continue;
      for (const damage of DAMAGES) {
        for (let t = 0; t < TRIALS[kind]; t++) {
          // Named like a node's block store (<data-dir>/blocks): the path is part of engine messages.
          const dir = join(root, `trial-${trial++}`, 'blocks');
          cpSync(pristine, dir, { recursive: true });
          const target = join(dir, 'index', file.slice(file.lastIndexOf('/') + 1));
          const size = statSync(target).size;
          const applied =
            damage === 'zero-page'
              ? zeroPage(target, rng.int(0, pageCount(target)))
              : damage === 'garble-page'
                ? garblePage(target, rng.int(0, pageCount(target)), rng.nextU32())
                : flipBit(target, rng.int(0, size), rng.int(0, 8));
          const child = spawnNodeChild(childCommand, [
            dir,
            String(seed),
            String(COHORTS + LOG_COHORTS),
            String(stored),
          ]);
          const exit = await child.exited;
          const report = child.messages[0] as Report | undefined;
          const outcome = classify(report, exit.signal, exit.code);
          const key = `${kind} ${damage}: ${outcome.split(':')[0]}`;
          tally.set(key, (tally.get(key) ?? 0) + 1);
          // A native abort cannot be turned into a typed error from JavaScript (classic-level does
          // not expose LevelDB's verify_checksums, and its build keeps assertions): the child dies,
          // a supervisor restarts it into the same abort, and `cairn blocks reindex` is the way
          // out. Counted and printed, not a wrong answer.
          if (outcome.startsWith('abort')) aborts.push(`${describeDamage(applied)} → ${outcome}`);
          else if (outcome !== 'ok' && !outcome.startsWith('typed '))
            findings.push(`${describeDamage(applied)} → ${outcome}`);
          if (outcome !== 'ok' && repaired < 4) {
            // The way out: rebuild the index from the value log, then every block reads back.
            repaired++;
            await reindexBlockStore({ dir });
            const again = spawnNodeChild(childCommand, [
              dir,
              String(seed),
              String(COHORTS + LOG_COHORTS),
              String(stored),
            ]);
            const exitAgain = await again.exited;
            const after = classify(again.messages[0] as Report | undefined, exitAgain.signal, exitAgain.code);
            if (after !== 'ok') findings.push(`${describeDamage(applied)} → after reindex: ${after}`);
          }
          rmSync(join(dir, '..'), { recursive: true, force: true });
        }
      }
    }
    console.log('engine damage outcomes', Object.fromEntries([...tally].sort()));
    for (const f of findings) console.log('finding:', f);
    for (const a of aborts) console.log('native abort (known limit):', a);
    console.log(`${trial} trials, ${aborts.length} native aborts, ${repaired} repaired by reindex`);
    assert.ok(repaired > 0, 'no trial exercised the reindex way out');
    assert.deepEqual(
      findings,
      [],
      `${findings.length} of ${trial} damaged indexes answered wrongly or untyped`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
