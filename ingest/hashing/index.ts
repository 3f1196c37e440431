export { HashPool, type HashPoolOptions, type Digests } from './pool.js';
export { writeHashedFile, hashFile, guardedChunks, SizeLimitError, SourceIdleError, type HashedFile, type WriteHashedFileOptions } from './write.js';
