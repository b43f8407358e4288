import * as path from 'node:path';
import type { Command } from 'commander';
import { realFileSystem } from '../io/realFileSystem.ts';
import { describe, isCairnError } from '../lib/errors.ts';
import { applySalvage, checkSalvageable, planSalvage } from '../wal/salvage.ts';
import { Wal } from '../wal/wal.ts';

/**
 * `cairn wal inspect <dir>` and `cairn wal verify <dir>` open the log read-only: nothing on disk is
 * repaired or deleted, so they are safe on a log another process may reopen later.
 * `cairn wal salvage <dir>` plans (and with `--apply` performs) a cut at the first damaged record,
 * keeping a copy of everything it cuts; see docs/OPERATIONS.md for when to use it.
 */
export function registerWalCommands(program: Command): void {
  const wal = program.command('wal').description('Inspect and verify a segmented write-ahead log directory');

  wal
    .command('inspect <dir>')
    .description('List segments, index range and sizes')
    .option('--json', 'print one JSON object instead of a table')
    .action(async (dir: string, options: { json?: boolean }) => {
      const warnings: string[] = [];
      const log = await openReadOnly(dir, warnings);
      if (!log) return;
      try {
        const segments = log.segments();
        const summary = {
          dir,
          firstIndex: log.firstIndex,
          nextIndex: log.nextIndex,
          // Records below this are known durable (acknowledged): the meta's durable marker. Records
          // between it and nextIndex are on disk but nothing vouches that they were ever fsynced.
          durableIndex: log.durableIndex,
          count: log.count,
          segments: segments.map((s) => ({ ...s, file: path.basename(s.file) })),
          bytes: segments.reduce((sum, s) => sum + s.bytes, 0),
          warnings,
        };
        if (options.json) {
          console.log(JSON.stringify(summary));
          return;
        }
        console.log(`WAL ${dir}`);
        console.log(`  records   [${log.firstIndex}, ${log.nextIndex})  count ${log.count}`);
        console.log(`  durable   below ${log.durableIndex} (known acknowledged; the rest is written)`);
        console.log(`  segments  ${segments.length}  data bytes ${summary.bytes}`);
        console.log('');
        console.log(
          `  ${'file'.padEnd(26)} ${'first'.padStart(12)} ${'next'.padStart(12)} ${'bytes'.padStart(12)}  format  state`,
        );
        for (const s of summary.segments) {
          console.log(
            `  ${s.file.padEnd(26)} ${String(s.firstIndex).padStart(12)} ${String(s.nextIndex).padStart(12)} ` +
              `${String(s.bytes).padStart(12)}  ${`v${s.formatVersion}`.padEnd(6)}  ${s.sealed ? 'sealed' : 'tail'}`,
          );
        }
        for (const w of warnings) console.log(`  warning: ${w}`);
      } finally {
        await log.close();
      }
    });

  wal
    .command('verify <dir>')
    .description('Check every record (framing, checksum, index); exit 1 naming file and offset on corruption')
    .action(async (dir: string) => {
      const warnings: string[] = [];
      const log = await openReadOnly(dir, warnings);
      if (!log) return;
      try {
        const report = log.verify();
        for (const w of warnings) console.log(`warning: ${w}`);
        console.log(
          `ok: ${report.records} records in ${report.segments} segments (${report.bytes} bytes); ` +
            `log range [${report.firstIndex}, ${report.nextIndex})`,
        );
      } catch (err) {
        reportFailure(err);
      } finally {
        await log.close().catch(() => undefined);
      }
    });
  wal
    .command('salvage <dir>')
    .description(
      'Cut a damaged log at its first damaged record, if the damage is past every record known to be ' +
        'acknowledged; dry run unless --apply; what is cut is copied to <dir>/salvaged-<time>/ first',
    )
    .option('--apply', 'perform the cut (default: only print what would be cut)')
    .action((dir: string, options: { apply?: boolean }) => {
      try {
        const plan = planSalvage(realFileSystem, dir);
        const cut = plan.cut;
        if (cut === undefined) {
          console.log(`nothing to salvage: no damage found in ${dir}`);
          return;
        }
        console.log(`damage: ${cut.reason}`);
        console.log(`  file:   ${cut.file}`);
        console.log(`  offset: ${cut.offset}`);
        console.log(
          `  first record cut: ${cut.index} (the log keeps [${plan.firstIndex}, ${Math.max(cut.index, plan.firstIndex)}))`,
        );
        console.log(`  durable marker:   ${plan.durableNext} (records below it were acknowledged)`);
        if (cut.intactAfter) {
          console.log(
            `  intact record ${cut.intactAfter.index} found after the damage, at offset ${cut.intactAfter.offset}`,
          );
        }
        if (cut.syncedProof) console.log(`  fsynced before the damage: ${cut.syncedProof}`);
        if (cut.laterSegments.length > 0)
          console.log(`  later segments cut: ${cut.laterSegments.map((f) => path.basename(f)).join(', ')}`);
        console.log(`  bytes copied aside and cut: ${cut.bytesCut}`);
        checkSalvageable(plan);
        if (!options.apply) {
          console.log(
            'dry run: nothing changed; run again with --apply to cut (stop every process using the log first)',
          );
          return;
        }
        const aside = applySalvage(realFileSystem, plan, new Date().toISOString().replace(/[:.]/g, '-'));
        console.log(`salvaged: the cut bytes are in ${aside}`);
      } catch (err) {
        reportFailure(err);
      }
    });
}

async function openReadOnly(dir: string, warnings: string[]): Promise<Wal | undefined> {
  try {
    return await Wal.open({
      fs: realFileSystem,
      dir,
      readOnly: true,
      onWarning: (message, details) => {
        const where =
          details.file === undefined
            ? ''
            : ` (${details.file}${details.offset === undefined ? '' : ` at offset ${details.offset}`})`;
        warnings.push(`${message}${where}`);
      },
    });
  } catch (err) {
    reportFailure(err);
    return undefined;
  }
}

function reportFailure(err: unknown): void {
  process.exitCode = 1;
  if (isCairnError(err)) {
    const { file, offset } = err.details;
    console.error(`${err.code}: ${err.message}`);
    if (file !== undefined) console.error(`  file:   ${file}`);
    if (offset !== undefined) console.error(`  offset: ${offset}`);
    return;
  }
  console.error(`error: ${describe(err)}`);
}
