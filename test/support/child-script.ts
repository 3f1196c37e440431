import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Node arguments that run the test script `relative` (no extension) next to the calling module,
 * whether the tests run compiled (dist/, .js) or from TypeScript under tsx (.ts).
 */
export function scriptArgs(relative: string, importMetaUrl: string): string[] {
  const ext = extname(fileURLToPath(importMetaUrl));
  const path = fileURLToPath(new URL(`${relative}${ext}`, importMetaUrl));
  return ext === '.ts' ? ['--import', 'tsx', path] : [path];
}
