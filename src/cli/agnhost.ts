import { WeftError } from '../shared/errors.js';

// Placeholder until the command lands; see the open issues.
export async function run(_args: string[]): Promise<number> {
  throw new WeftError('WEFT_ERR_NOT_IMPLEMENTED', 'weft agnhost is not implemented yet');
}
