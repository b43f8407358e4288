import { CairnError } from '../lib/errors.ts';

/**
 * One line for an operator: `CODE: message`, plus the file and byte offset when the error names
 * them and the message does not. Anything that is not a CairnError is a bug: `INTERNAL: ...`.
 */
export function formatCliError(err: unknown): string {
  if (!(err instanceof CairnError)) {
    return `INTERNAL: ${err instanceof Error ? err.message : String(err)} (set CAIRN_DEBUG=1 for the stack)`;
  }
  const where: string[] = [];
  const { file, offset } = err.details;
  if (typeof file === 'string' && !err.message.includes(file)) where.push(`file ${file}`);
  if (typeof offset === 'number' && !err.message.includes(`offset ${offset}`)) where.push(`offset ${offset}`);
  return `${err.code}: ${err.message}${where.length > 0 ? ` (${where.join(', ')})` : ''}`;
}
