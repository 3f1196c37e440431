// qcow2 metadata must not share clusters: a data cluster that is also an L2 table or the L1
// table shows the guest (and whoever boots it) PIR-trusted metadata as disk content, and lets a
// guest write rewrite where its own clusters are. qemu only notices on write (its metadata
// overlap check marks the image corrupt mid-run); `qemu-img check` reports it as corruption. So
// PIR refuses such an image at upload, for the structures it already reads (qcow2-tables.ts).

/** One metadata structure, in bytes of the file: [start, end). */
interface Region {
  name: string;
  start: bigint;
  end: bigint;
}

/**
 * The metadata clusters of one image: the fixed tables as ranges (few, possibly long), the L2
 * tables and refcount blocks as single clusters (many, looked up by offset).
 */
export class Qcow2MetadataMap {
  private readonly regions: Region[] = [];
  private readonly clusters = new Map<bigint, string>();

  constructor(private readonly clusterSize: bigint) {}

  /**
   * Adds a table spanning `[offset, offset + length)`, widened to whole clusters as qemu allocates
   * them; returns the name of a structure it overlaps, if any.
   */
  addTable(name: string, offset: bigint, length: bigint): string | undefined {
    const start = offset - (offset % this.clusterSize);
    const end = alignUpBig(offset + (length > 0n ? length : 1n), this.clusterSize);
    const clash = this.regions.find((r) => start < r.end && r.start < end);
    if (clash) return clash.name;
    this.regions.push({ name, start, end });
    return undefined;
  }

  /** Adds one cluster-sized structure (an L2 table or refcount block); returns what it overlaps, if anything. */
  addCluster(name: string, offset: bigint): string | undefined {
    const clash = this.owner(offset);
    if (clash) return clash;
    this.clusters.set(offset, name);
    return undefined;
  }

  /** The metadata structure holding the cluster that starts at (or contains) `offset`, if any. */
  owner(offset: bigint): string | undefined {
    const cluster = offset - (offset % this.clusterSize);
    return this.clusters.get(cluster) ?? this.regions.find((r) => cluster >= r.start && cluster < r.end)?.name;
  }
}

function alignUpBig(n: bigint, to: bigint): bigint {
  return ((n + to - 1n) / to) * to;
}
