import { Command } from 'commander';

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program.name('cairn').description('Crash-safe storage for BFT blockchain nodes').version('0.1.0');
  await program.parseAsync(argv);
}
