/** Messages between HashPool (main thread) and hash-worker. Kept tiny: one per MiB per digest. */

export type HashAlgorithm = 'md5' | 'sha512';

export type WorkerRequest =
  /** open stream `s` with algorithm `a` */
  | { t: 'o'; j: number; s: number; a: HashAlgorithm }
  /** update stream `s` with `n` bytes of shared buffer `b` from offset `o` */
  | { t: 'u'; j: number; s: number; b: SharedArrayBuffer; o: number; n: number }
  /** finish stream `s`: reply with its hex digest */
  | { t: 'd'; j: number; s: number }
  /** drop stream `s` */
  | { t: 'x'; j: number; s: number };

/** Job ids (one or several) mean "done"; `d` carries a digest, `e` an error message. */
export type WorkerReply = number | number[] | { j: number; d: string } | { j: number; e: string };
