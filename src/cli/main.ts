import { Command } from 'commander';
import { registerBlocksCommands } from './blocksCommands.ts';
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

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
