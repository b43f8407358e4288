import * as path from 'node:path';
import type { Command } from 'commander';
import { realFileSystem } from '../io/realFileSystem.ts';
import { describe, isCairnError } from '../lib/errors.ts';
import { Wal } from '../wal/wal.ts';

/**
 * `cairn wal inspect <dir>` and `cairn wal verify <dir>`. Both open the log read-only: nothing on
 * disk is repaired or deleted, so they are safe on a log another process may reopen later.
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
        console.log(`  segments  ${segments.length}  data bytes ${summary.bytes}`);
        console.log('');
        console.log(
          `  ${'file'.padEnd(26)} ${'first'.padStart(12)} ${'next'.padStart(12)} ${'bytes'.padStart(12)}  state`,
        );
        for (const s of summary.segments) {
          console.log(
            `  ${s.file.padEnd(26)} ${String(s.firstIndex).padStart(12)} ${String(s.nextIndex).padStart(12)} ` +
              `${String(s.bytes).padStart(12)}  ${s.sealed ? 'sealed' : 'tail'}`,
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
