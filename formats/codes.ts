// Every finding/verdict code this library can emit. Codes are stable API: callers map
// them to HTTP errors and UI text, so never rename one — add a new code instead.
export const FINDING_CODES = {
  // Generic
  corrupt_header: 'A header is truncated or internally inconsistent.',
  inspection_limit: 'Inspection would have read more than READ_BUDGET bytes.',
  multiple_formats: 'The content matches several formats at once (polyglot).',
  encrypted: 'The image is encrypted (waived when policy.allowEncrypted).',
  image_truncated: 'A table or data block the headers point to lies past the end of the file (a truncated upload).',
  // qcow2
  qcow2_unsupported_version: 'qcow2 version other than 2 or 3.',
  qcow2_backing_file: 'qcow2 names a backing file.',
  qcow2_data_file: 'qcow2 uses an external data file (CVE-2024-32498).',
  qcow2_unknown_features: 'qcow2 sets incompatible feature bits we do not know.',
  qcow2_corrupt: 'qcow2 corrupt bit is set.',
  qcow2_compression_type: 'qcow2 uses an unknown compression type.',
  qcow2_dirty: '(info) qcow2 dirty bit is set.',
  // qed
  qed_backing_file: 'QED names a backing file.',
  qed_unknown_features: 'QED sets unknown feature bits.',
  // vmdk
  vmdk_external_extent: 'VMDK data lives (partly) in other files (CVE-2022-47951).',
  vmdk_create_type: 'VMDK createType is not monolithicSparse/streamOptimized.',
  vmdk_descriptor_invalid: 'VMDK descriptor is missing or does not fully parse.',
  vmdk_parent: 'VMDK names a parent disk.',
  // vhd / vhdx
  vhd_differencing: 'VHD is a differencing disk or names a parent.',
  vhd_checksum: '(info) VHD footer checksum mismatch.',
  vhd_footer_missing: '(info) dynamic VHD lacks its trailing footer.',
  vhdx_parent: 'VHDX is a differencing disk (parent locator / HasParent).',
  vhdx_unknown_required: 'VHDX marks an unknown region or metadata item as required.',
  vhdx_log_replay: 'VHDX has a log that must be replayed first.',
  vhdx_unsupported_sector_size: 'VHDX has 4096-byte logical sectors, which qemu cannot open (it supports 512 only).',
  // vdi
  vdi_differencing: 'VDI is a differencing disk or links to a parent.',
  vdi_unsupported_type: 'VDI image type is not dynamic or fixed.',
  vdi_unsupported_version: 'VDI header version is not 1.x.',
  // luks / ploop / iso
  luks_unsupported_version: 'LUKS version other than 1.',
  ploop_unsupported_version: 'ploop header version other than 2.',
  ploop_in_use: '(info) ploop image was not closed cleanly.',
  iso_truncated: '(info) ISO volume is larger than the file.',
  // raw fallback
  qemu_only_format: 'The content is a format qemu probes (bochs, cloop) that PIR does not store.',
  raw_partial_sector: '(info) a raw disk image is not a whole number of 512-byte sectors (stored as is, as Glance does).',
  // partition tables
  gpt_invalid: 'GPT (or its protective MBR) is malformed.',
  gpt_backup_missing: '(info) GPT backup header is missing.',
  mbr_invalid: 'MBR partition table is malformed.',
  mbr_beyond_disk: '(info) an MBR partition extends past the image end.',
} as const;

/** Codes only `judge` produces (never findings). */
export const VERDICT_CODES = {
  format_mismatch: 'Detected format differs from the declared disk_format.',
  format_unknown: 'No disk_format declared and the content is not a recognised format.',
  empty_image: 'The image has no bytes at all, and is declared as a format that has a header.',
  unsupported_disk_format: 'The declared disk_format is not one PIR can verify.',
  virtual_size_unknown: 'The virtual size could not be determined.',
  virtual_size_too_large: 'Virtual size exceeds policy.maxVirtualSize.',
} as const;

export type FindingCode = keyof typeof FINDING_CODES;
export type VerdictCode = FindingCode | keyof typeof VERDICT_CODES;
