import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { fromHex, toHex } from '../lib/bytes.ts';
import { CairnError, describe, isCairnError } from '../lib/errors.ts';
import { KV_DIR, StateStore, WAL_DIR } from '../state/stateStore.ts';

/**
 * `cairn state inspect | verify | snapshot | rollback | export | import --data-dir <dir>`.
 *  - inspect, verify: read-only. Nothing is created, repaired or swept; a missing store is an error.
 *    (The engine is read from a private copy outside the data directory.) verify recomputes every family
 *    root by a full scan and exits 1 naming each family that disagrees.
 *  - snapshot, rollback, export: open the store for writing (recovering it like a node would), act,
 *    close. export needs a retained height (a snapshot at or below it plus the WAL above it).
 *  - import: replaces the store's whole state by an export stream; --expected-root refuses to
 *    finalize on a different root.
 */
export function registerStateCommands(program: Command): void {
  const state = program.command('state').description('inspect and operate a state store directory');

  state
    .command('inspect')
    .description('height, roots, per-family rows and bytes, snapshots, WAL range, pending intents (JSON)')
    .requiredOption('--data-dir <dir>', 'state store directory')
    .action(async (opts: { dataDir: string }) => {
      await run(async () => {
        const store = await openExisting(opts.dataDir, true);
        try {
          const roots = store.familyRoots();
          const stats = store.familyStats();
          console.log(
            JSON.stringify(
              {
                dataDir: opts.dataDir,
                ...store.describe(),
                families: Object.fromEntries(
                  Object.entries(roots).map(([f, r]) => [
                    f,
                    { root: toHex(r), ...stats[f as keyof typeof stats] },
                  ]),
                ),
                warnings: store.warnings,
              },
              null,
              2,
            ),
          );
        } finally {
          await store.close();
        }
      });
    });

  state
    .command('verify')
    .description('recompute every family root and its stats by a full scan; exit 1 on any mismatch')
    .requiredOption('--data-dir <dir>', 'state store directory')
    .action(async (opts: { dataDir: string }) => {
      await run(async () => {
        const store = await openExisting(opts.dataDir, true);
        try {
          const report = await store.verify();
          console.log(JSON.stringify(report, null, 2));
          if (!report.ok) {
            for (const f of report.families.filter((x) => !x.ok)) {
              console.error(`MISMATCH in family ${f.family}: ${f.problems.join('; ')}`);
            }
            process.exitCode = 1;
          }
        } finally {
          await store.close();
        }
      });
    });

  state
    .command('snapshot')
    .description('take a snapshot of the committed state now')
    .requiredOption('--data-dir <dir>', 'state store directory')
    .action(async (opts: { dataDir: string }) => {
      await run(async () => {
        const store = await openExisting(opts.dataDir, false);
        try {
          const r = await store.snapshot();
          console.log(JSON.stringify({ ...r, root: toHex(store.committedRoot()) }));
        } finally {
          await store.close();
        }
      });
    });

  state
    .command('rollback')
    .description(
      'rewind the store to a retained height (durable intent; finished at the next open if interrupted)',
    )
    .requiredOption('--data-dir <dir>', 'state store directory')
    .requiredOption('--to <height>', 'target height')
    .action(async (opts: { dataDir: string; to: string }) => {
      await run(async () => {
        const target = parseHeight(opts.to, '--to');
        const store = await openExisting(opts.dataDir, false);
        try {
          const from = store.version;
          await store.rollback(target);
          console.log(JSON.stringify({ from, to: store.version, root: toHex(store.committedRoot()) }));
        } finally {
          await store.close();
        }
      });
    });

  state
    .command('export')
    .description('stream the committed state at a height to a file (Cairn state export format)')
    .requiredOption('--data-dir <dir>', 'state store directory')
    .requiredOption('--out <file>', 'output file (must not exist)')
    .option('--height <height>', 'height to export (default: the tip)', '0')
    .action(async (opts: { dataDir: string; out: string; height: string }) => {
      await run(async () => {
        const height = parseHeight(opts.height, '--height', true);
        if (existsSync(opts.out))
          throw new CairnError('INVALID_ARGUMENT', `${opts.out} exists; refusing to overwrite`);
        const store = await openExisting(opts.dataDir, false);
        const out = createWriteStream(opts.out, { flags: 'wx' });
        try {
          const r = await store.exportState(
            height,
            (chunk) =>
              new Promise<void>((resolve, reject) => {
                out.write(chunk, (err) => (err ? reject(err) : resolve()));
              }),
            (p) => console.error(`exported ${p.rows} rows, ${p.bytes} bytes`),
          );
          await new Promise<void>((resolve, reject) =>
            out.end((err?: Error | null) => (err ? reject(err) : resolve())),
          );
          console.log(
            JSON.stringify({ height: r.height, rows: r.rows, root: toHex(r.root), file: opts.out }),
          );
        } finally {
          out.destroy();
          await store.close();
        }
      });
    });

  state
    .command('import')
    .description(
      'replace the whole state by an export file (wipes the store, its snapshots and its WAL first)',
    )
    .requiredOption('--data-dir <dir>', 'state store directory (created if missing)')
    .requiredOption('--in <file>', 'export file')
    .option('--expected-root <hex>', 'refuse to finalize unless the imported root equals this 32-byte root')
    .action(async (opts: { dataDir: string; in: string; expectedRoot?: string }) => {
      await run(async () => {
        const expectedRoot = opts.expectedRoot ? fromHex(opts.expectedRoot) : undefined;
        if (expectedRoot && expectedRoot.length !== 32) {
          throw new CairnError(
            'INVALID_ARGUMENT',
            `--expected-root must be 32 bytes, got ${expectedRoot.length}`,
          );
        }
        const store = await StateStore.open({ dataDir: opts.dataDir });
        try {
          const source = createReadStream(opts.in, { highWaterMark: 1 << 20 }) as AsyncIterable<Uint8Array>;
          const r = await store.importState(source, {
            ...(expectedRoot ? { expectedRoot } : {}),
            onProgress: (p) => console.error(`imported ${p.rows} rows, ${p.bytes} bytes`),
          });
          console.log(JSON.stringify({ height: r.height, rows: r.rows, root: toHex(r.root) }));
        } finally {
          await store.close().catch(() => undefined);
        }
      });
    });
}

async function openExisting(dataDir: string, readOnly: boolean): Promise<StateStore> {
  if (!existsSync(path.join(dataDir, KV_DIR)) && !existsSync(path.join(dataDir, WAL_DIR))) {
    throw new CairnError(
      'NOT_FOUND',
      `no state store at ${dataDir} (expected ${KV_DIR}/ and ${WAL_DIR}/ in it)`,
      {
        details: { file: dataDir },
      },
    );
  }
  return StateStore.open({
    dataDir,
    readOnly,
    // Inspection leaves the directory as it is and takes no lock: it reads a private engine copy in
    // the OS temp directory (TMPDIR; on the data's file system, tables are hard links, not copies) and
    // refuses with LOCKED if a live writer keeps changing the engine while it is copied.
    lockDir: !readOnly,
    onWarning: (m, d) => console.error(`warning: ${m} ${JSON.stringify(d)}`),
  });
}

function parseHeight(text: string, flag: string, allowZero = false): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < (allowZero ? 0 : 1)) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `${flag} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got "${text}"`,
    );
  }
  return n;
}

async function run(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    process.exitCode = 1;
    if (isCairnError(err)) console.error(`${err.code}: ${err.message}`);
    else console.error(`error: ${describe(err)}`);
  }
}
