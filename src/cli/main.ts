import { Command } from 'commander';
import { CairnError } from '../lib/errors.ts';
import { registerBlocksCommands } from './blocksCommands.ts';
import { formatCliError } from './cliError.ts';
import { registerDevnetCommand } from './devnetCommand.ts';
import { registerReceiptsCommands } from './receiptsCommands.ts';
import { registerStateCommands } from './stateCommands.ts';
import { registerWalCommands } from './walCommands.ts';

export function buildProgram(): Command {
  const program = new Command();
  program.name('cairn').description('Crash-safe storage for BFT blockchain nodes').version('0.1.0');
  registerDevnetCommand(program);
  registerWalCommands(program);
  registerBlocksCommands(program);
  registerReceiptsCommands(program);
  registerStateCommands(program);
  return program;
}

/**
 * Runs the CLI. A failure prints one line, `CODE: message` (with the file and byte offset when the
 * error names them and the message does not), and sets a non-zero exit code: 1 for a failed store
 * or I/O, 2 for a caller error (bad argument, not a directory), 3 for a transient one (LOCKED).
 * The stack is printed only with CAIRN_DEBUG=1. Never a raw stack trace for an expected failure.
 */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    process.stderr.write(`${formatCliError(err)}\n`);
    if (process.env.CAIRN_DEBUG === '1' && err instanceof Error && err.stack) {
      process.stderr.write(`${err.stack}\n`);
    }
    process.exitCode = exitCodeOf(err);
    process.disconnect?.();
  }
}

function exitCodeOf(err: unknown): number {
  if (!(err instanceof CairnError)) return 1;
  return err.kind === 'caller' ? 2 : err.kind === 'transient' ? 3 : 1;
}
