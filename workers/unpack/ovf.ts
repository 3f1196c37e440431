/**
 * OVF descriptor interpretation: which disk to take, and which image properties to set.
 *
 * Disk choice: the VirtualSystem (the first one; others are reported) lists its disks as hardware
 * items whose HostResource is "ovf:/disk/<diskId>" (DiskSection/Disk → ovf:fileRef →
 * References/File ovf:href) or "ovf:/file/<fileId>". Those disks, in item order, are the
 * candidates; when the VirtualSystem references none, the DiskSection order is used. The first
 * candidate is extracted; the others are reported in an 'ovf_additional_disks' finding.
 * (Glance's OVF task refuses packages with several disks; we import the first, typically the boot disk.)
 *
 * Image properties (all values ≤ 255 characters, control characters removed):
 *
 * | key                      | source                                                       | notes |
 * |--------------------------|--------------------------------------------------------------|-------|
 * | `cim_pasd_<Name>`        | any CIM_ProcessorAllocationSettingData element `<Name>` whose name is in `CIM_PASD_PROPERTIES` | exactly what Glance's ovf_process task sets (its ovf-metadata.json sample list: ProcessorArchitecture, InstructionSet, InstructionSetExtensionName); the last occurrence wins, as in Glance |
 * | `os_type`                | OperatingSystemSection vmw:osType, else ovf:id (CIM OSType)   | Glance/Nova common property: "linux" or "windows" only |
 * | `os_distro`              | same                                                          | Glance common property, values from its documented list (ubuntu, debian, rhel, centos, fedora, opensuse, sled, mandriva, freebsd, netbsd, openbsd, windows, msdos, netware…) |
 * | `ovf_os_id`              | OperatingSystemSection ovf:id                                 | raw CIM_OperatingSystem OSType number |
 * | `ovf_os_vmw_type`        | OperatingSystemSection vmw:osType                             | raw VMware guest id, e.g. "ubuntu64Guest" |
 * | `ovf_os_description`     | OperatingSystemSection/Description                            | free text from the uploader |
 * | `ovf_vcpus`              | VirtualHardwareSection items of ResourceType 3: sum of VirtualQuantity | informational |
 * | `ovf_memory_mb`          | items of ResourceType 4: VirtualQuantity × AllocationUnits, in MiB (rounded up) | informational; a candidate for min_ram |
 *
 * CPU and memory deliberately do not go into Nova-effective keys: `hw_cpu_sockets/cores/threads`
 * are topology preferences (not a vCPU count) and `min_ram` is a core Glance field, not an extra
 * property; an appliance's configured size is a hint, not a requirement. Glance itself maps
 * neither (its ovf_process only copies the cim_pasd_* elements above).
 * Hardware items carrying ovf:configuration only count for the default DeploymentOptionSection
 * configuration.
 */
import { formatBytes, sanitizeForMessage, UnpackRefusedError } from './errors.js';
import { normalizeMemberName } from './tar.js';
import { attr, childrenNamed, decodeXmlBytes, descendants, firstChild, parseXml, XmlError, type XmlElement } from './xml.js';

export interface Finding {
  code: string;
  severity: 'info' | 'refuse';
  message: string;
}

export const CIM_PASD_NS = 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ProcessorAllocationSettingData';
/** Glance's sample ovf-metadata.json "cim_pasd" list. */
export const CIM_PASD_PROPERTIES: readonly string[] = ['ProcessorArchitecture', 'InstructionSet', 'InstructionSetExtensionName'];
const OVF_NS = ['http://schemas.dmtf.org/ovf/envelope/1', 'http://schemas.dmtf.org/ovf/envelope/2', 'http://www.vmware.com/schema/ovf/1/envelope'];
const VMW_NS = ['http://www.vmware.com/schema/ovf'];

/** Largest OVF descriptor accepted. */
export const MAX_OVF_BYTES = 1024 * 1024;

export interface OvfFile {
  id: string;
  href: string;
  /** Normalized tar member name the href designates. */
  memberName: string;
  compression: 'gzip' | null;
  /** ovf:size: bytes of the file as stored in the package, when declared. */
  declaredSize: number | null;
}

export interface OvfDisk {
  diskId: string;
  file: OvfFile;
  format: string | null;
}

export interface OvfDescriptor {
  /** Candidate disks, best first; `disks[0]` is the one to extract. Never empty. */
  disks: OvfDisk[];
  properties: Record<string, string>;
  findings: Finding[];
}

function invalid(message: string): UnpackRefusedError {
  return new UnpackRefusedError('invalid_ovf', `The OVF descriptor is not acceptable: ${message}`);
}

function cleanValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  const v = value.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').replace(/\s+/g, ' ').trim();
  return v.length > 255 ? v.slice(0, 255) : v;
}

function childText(element: XmlElement, local: string): string | undefined {
  const c = firstChild(element, local);
  return c ? c.text.trim() : undefined;
}

export function parseOvfDescriptor(bytes: Uint8Array, descriptorName: string): OvfDescriptor {
  if (bytes.length > MAX_OVF_BYTES) {
    throw invalid(`"${sanitizeForMessage(descriptorName, 100)}" is ${formatBytes(bytes.length)}, more than the ${formatBytes(MAX_OVF_BYTES)} accepted for a descriptor.`);
  }
  let root: XmlElement;
  try {
    root = parseXml(decodeXmlBytes(bytes));
  } catch (error) {
    if (error instanceof XmlError) {
      if (error.kind === 'doctype' || error.kind === 'entity') {
        throw invalid(`${error.message}. DTDs and custom entities are refused for safety; remove the DOCTYPE/entity declarations (OVF does not need them) and upload again.`);
      }
      throw invalid(`its XML is malformed or exceeds our limits (${error.message}). Re-export the appliance and upload it again.`);
    }
    throw error;
  }
  if (root.local !== 'Envelope') throw invalid(`its root element is <${sanitizeForMessage(root.name, 60)}>, not an OVF <Envelope>.`);
  const findings: Finding[] = [];

  // References/File
  const files = new Map<string, XmlElement>();
  for (const refs of childrenNamed(root, 'References')) {
    for (const f of childrenNamed(refs, 'File')) {
      const id = attr(f, 'id', OVF_NS);
      if (!id) throw invalid('a References/File element has no ovf:id.');
      if (files.has(id)) throw invalid(`two References/File elements have the id "${sanitizeForMessage(id, 80)}".`);
      files.set(id, f);
    }
  }
  // DiskSection/Disk (DiskSection may sit in the Envelope or, in OVF 2, in a VirtualSystem)
  const disks = new Map<string, XmlElement>();
  const diskOrder: string[] = [];
  for (const section of descendants(root, 'DiskSection')) {
    for (const d of childrenNamed(section, 'Disk')) {
      const id = attr(d, 'diskId', OVF_NS);
      if (!id) throw invalid('a DiskSection/Disk element has no ovf:diskId.');
      if (disks.has(id)) throw invalid(`two Disk elements have the id "${sanitizeForMessage(id, 80)}".`);
      disks.set(id, d);
      diskOrder.push(id);
    }
  }

  const systems = descendants(root, 'VirtualSystem');
  const system = systems[0];
  if (systems.length > 1) {
    findings.push({
      code: 'ovf_multiple_virtual_systems',
      severity: 'info',
      message: `The OVF describes ${systems.length} virtual systems; only the first ("${cleanValue(attr(system!, 'id', OVF_NS) ?? '')}") was used.`,
    });
  }
  const items = system ? hardwareItems(root, system) : [];

  // Candidate disks: those the VirtualSystem's hardware uses, in item order.
  const used: { kind: 'disk' | 'file'; id: string }[] = [];
  for (const item of items) {
    const host = childText(item, 'HostResource');
    if (!host) continue;
    const type = childText(item, 'ResourceType');
    const m = /^(?:ovf:)?\/(disk|file)\/(.+)$/.exec(host);
    if (!m) continue;
    if (m[1] === 'file' && type !== '17') continue; // ISO images on CD/DVD drives are not the disk
    const ref = { kind: m[1] as 'disk' | 'file', id: m[2]! };
    if (!used.some((u) => u.kind === ref.kind && u.id === ref.id)) used.push(ref);
  }
  const candidates: OvfDisk[] = [];
  const blank: string[] = [];
  const addDisk = (diskId: string) => {
    const d = disks.get(diskId);
    if (!d) throw invalid(`the virtual system uses disk "${sanitizeForMessage(diskId, 80)}", which no DiskSection defines.`);
    const fileRef = attr(d, 'fileRef', OVF_NS);
    if (!fileRef) {
      blank.push(diskId);
      return;
    }
    candidates.push({ diskId, file: resolveFile(files, fileRef), format: attr(d, 'format', OVF_NS) ?? null });
  };
  if (used.length > 0) {
    for (const u of used) {
      if (u.kind === 'disk') addDisk(u.id);
      else candidates.push({ diskId: u.id, file: resolveFile(files, u.id), format: null });
    }
  } else {
    for (const id of diskOrder) addDisk(id);
  }
  if (blank.length > 0) {
    findings.push({ code: 'ovf_blank_disks', severity: 'info', message: `Disk(s) ${blank.map((b) => JSON.stringify(cleanValue(b))).join(', ')} have no file (created empty at deployment) and were ignored.` });
  }
  if (candidates.length === 0) {
    throw new UnpackRefusedError('ovf_disk_missing', 'The OVF descriptor references no disk file (no DiskSection/Disk with an ovf:fileRef to a References/File). Export the appliance with its disk and upload the .ova again.');
  }
  if (candidates.length > 1) {
    findings.push({
      code: 'ovf_additional_disks',
      severity: 'info',
      message: `The OVF has ${candidates.length} disks; only the first, "${cleanValue(candidates[0]!.file.href)}", was imported. Not imported: ${candidates
        .slice(1)
        .map((c) => JSON.stringify(cleanValue(c.file.href)))
        .join(', ')}. Upload other disks as separate images if you need them.`,
    });
  }

  const properties: Record<string, string> = {};
  for (const el of descendantsAll(root)) {
    if (el.ns === CIM_PASD_NS && CIM_PASD_PROPERTIES.includes(el.local)) properties[`cim_pasd_${el.local}`] = cleanValue(el.text);
  }
  if (system) {
    Object.assign(properties, osProperties(system));
    Object.assign(properties, hardwareProperties(items, findings));
  }
  return { disks: candidates, properties, findings };
}

function descendantsAll(element: XmlElement, out: XmlElement[] = []): XmlElement[] {
  for (const c of element.children) {
    out.push(c);
    descendantsAll(c, out);
  }
  return out;
}

function resolveFile(files: Map<string, XmlElement>, fileId: string): OvfFile {
  const f = files.get(fileId);
  if (!f) throw invalid(`a disk references file "${sanitizeForMessage(fileId, 80)}", which References does not list.`);
  const href = attr(f, 'href', OVF_NS);
  if (!href) throw invalid(`References/File "${sanitizeForMessage(fileId, 80)}" has no ovf:href.`);
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(href) || href.startsWith('/') || href.startsWith('\\')) {
    throw invalid(`the disk file "${sanitizeForMessage(href, 120)}" is outside the package (an absolute path or URL). Only disks inside the .ova are imported.`);
  }
  if (attr(f, 'chunkSize', OVF_NS) !== undefined) {
    throw new UnpackRefusedError('unsupported_archive', `The disk file "${sanitizeForMessage(href, 120)}" is split into chunks (ovf:chunkSize), which is not supported. Re-export the appliance without chunking.`);
  }
  const compressionAttr = attr(f, 'compression', OVF_NS);
  let compression: 'gzip' | null = null;
  if (compressionAttr === 'gzip') compression = 'gzip';
  else if (compressionAttr !== undefined && compressionAttr !== 'identity') {
    throw new UnpackRefusedError('unsupported_archive', `The disk file "${sanitizeForMessage(href, 120)}" uses ovf:compression="${sanitizeForMessage(compressionAttr, 40)}"; only "gzip" and "identity" are supported.`);
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(href);
  } catch {
    throw invalid(`the file reference "${sanitizeForMessage(href, 120)}" has an invalid %-escape.`);
  }
  const memberName = normalizeMemberName(decoded);
  const sizeText = attr(f, 'size', OVF_NS);
  const declaredSize = sizeText !== undefined && /^\d{1,16}$/.test(sizeText) ? Number(sizeText) : null;
  return { id: fileId, href, memberName, compression, declaredSize };
}

/** Hardware items of the (first) VirtualHardwareSection, filtered to the default deployment configuration. */
function hardwareItems(root: XmlElement, system: XmlElement): XmlElement[] {
  const section = firstChild(system, 'VirtualHardwareSection');
  if (!section) return [];
  let defaultConfig: string | undefined;
  const options = firstChild(root, 'DeploymentOptionSection');
  if (options) {
    const configs = childrenNamed(options, 'Configuration');
    const chosen = configs.find((c) => attr(c, 'default', OVF_NS) === 'true') ?? configs[0];
    defaultConfig = chosen ? attr(chosen, 'id', OVF_NS) : undefined;
  }
  return section.children.filter((c) => {
    if (c.local !== 'Item' && c.local !== 'StorageItem' && c.local !== 'EthernetPortItem') return false;
    const configuration = attr(c, 'configuration', OVF_NS);
    if (configuration === undefined || defaultConfig === undefined) return true;
    return configuration.split(/\s+/).includes(defaultConfig);
  });
}

/**
 * Bytes per unit of a DSP0004 programmatic unit ("byte * 2^20") or a common name ("MegaBytes", "MB").
 * Null when unknown. Binary multiples for names, as VMware and VirtualBox mean them.
 */
export function allocationUnitBytes(units: string): number | null {
  const u = units.toLowerCase().replace(/\s+/g, '');
  const named: Record<string, number> = {
    byte: 1,
    bytes: 1,
    kb: 2 ** 10,
    kilobyte: 2 ** 10,
    kilobytes: 2 ** 10,
    kib: 2 ** 10,
    mb: 2 ** 20,
    megabyte: 2 ** 20,
    megabytes: 2 ** 20,
    mib: 2 ** 20,
    gb: 2 ** 30,
    gigabyte: 2 ** 30,
    gigabytes: 2 ** 30,
    gib: 2 ** 30,
  };
  if (u in named) return named[u]!;
  const m = /^bytes?((?:\*\d{1,4}(?:\^\d{1,2})?)*)$/.exec(u);
  if (!m) return null;
  let factor = 1;
  for (const term of m[1]!.split('*').filter(Boolean)) {
    const [base, exp] = term.split('^');
    factor *= Number(base) ** (exp === undefined ? 1 : Number(exp));
  }
  return Number.isFinite(factor) && factor >= 1 ? factor : null;
}

function hardwareProperties(items: XmlElement[], findings: Finding[]): Record<string, string> {
  const out: Record<string, string> = {};
  let cpus = 0;
  let memoryBytes = 0;
  let sawMemory = false;
  for (const item of items) {
    const type = childText(item, 'ResourceType');
    const quantity = childText(item, 'VirtualQuantity');
    if ((type !== '3' && type !== '4') || quantity === undefined) continue;
    if (!/^\d{1,12}$/.test(quantity)) {
      findings.push({ code: 'ovf_bad_quantity', severity: 'info', message: `Ignored a ${type === '3' ? 'CPU' : 'memory'} item with VirtualQuantity "${cleanValue(quantity).slice(0, 40)}".` });
      continue;
    }
    if (type === '3') {
      cpus += Number(quantity);
    } else {
      const unitsText = childText(item, 'AllocationUnits') ?? 'byte * 2^20';
      const unit = allocationUnitBytes(unitsText);
      if (unit === null) {
        findings.push({ code: 'ovf_bad_units', severity: 'info', message: `Ignored a memory item with unknown AllocationUnits "${cleanValue(unitsText).slice(0, 60)}".` });
        continue;
      }
      memoryBytes += Number(quantity) * unit;
      sawMemory = true;
    }
  }
  if (cpus > 0 && cpus <= 65536) out.ovf_vcpus = String(cpus);
  if (sawMemory && memoryBytes > 0) {
    const mib = Math.ceil(memoryBytes / 2 ** 20);
    if (Number.isSafeInteger(mib) && mib <= 2 ** 32) out.ovf_memory_mb = String(mib);
  }
  return out;
}

interface OsGuess {
  os_type?: 'linux' | 'windows';
  os_distro?: string;
}

const WINDOWS_CIM = new Set([15, 16, 17, 18, 19, 58, 63, 67, 69, 70, 71, 72, 73, 74, 75, 76, 77, 103, 105, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120]);
const LINUX_CIM = new Set([36, 79, 80, 82, 83, 84, 85, 87, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 106, 107, 108, 109]);
const DISTRO_CIM: Record<number, string> = {
  14: 'msdos',
  21: 'netware',
  42: 'freebsd',
  43: 'netbsd',
  65: 'openbsd',
  78: 'freebsd',
  79: 'rhel',
  80: 'rhel',
  89: 'mandriva',
  90: 'mandriva',
  93: 'ubuntu',
  94: 'ubuntu',
  95: 'debian',
  96: 'debian',
  106: 'centos',
  107: 'centos',
};

/** CIM_OperatingSystem.OSType value (OperatingSystemSection ovf:id) → Glance os_type / os_distro. */
export function osFromCimId(id: number): OsGuess {
  const out: OsGuess = {};
  if (WINDOWS_CIM.has(id)) {
    out.os_type = 'windows';
    out.os_distro = 'windows';
  } else if (LINUX_CIM.has(id)) out.os_type = 'linux';
  if (DISTRO_CIM[id]) out.os_distro = DISTRO_CIM[id];
  return out;
}

/** VMware guest id (vmw:osType, e.g. "rhel8_64Guest", "windows2019srv_64Guest") → Glance os_type / os_distro. */
export function osFromVmwType(osType: string): OsGuess {
  const t = osType.toLowerCase().replace(/^arm-/, '');
  if (/^win/.test(t)) return { os_type: 'windows', os_distro: 'windows' };
  const distros: [RegExp, string][] = [
    [/^ubuntu/, 'ubuntu'],
    [/^debian/, 'debian'],
    [/^rhel/, 'rhel'],
    [/^centos/, 'centos'],
    [/^fedora/, 'fedora'],
    [/^opensuse/, 'opensuse'],
    [/^sled/, 'sled'],
    [/^mandriva/, 'mandriva'],
    [/^mandrake/, 'mandrake'],
  ];
  for (const [re, distro] of distros) if (re.test(t)) return { os_type: 'linux', os_distro: distro };
  if (/^freebsd/.test(t)) return { os_distro: 'freebsd' };
  if (/linux|^sles|^suse|^asianux|^coreos|^photon|^amazonlinux|^oraclelinux|^turbolinux|^rocky|^alma|^miracle|^pardus|^flatcar|^kylin|^fusionos/.test(t)) return { os_type: 'linux' };
  return {};
}

function osProperties(system: XmlElement): Record<string, string> {
  const out: Record<string, string> = {};
  const section = firstChild(system, 'OperatingSystemSection');
  if (!section) return out;
  const id = attr(section, 'id', OVF_NS);
  const vmw = attr(section, 'osType', VMW_NS);
  const description = childText(section, 'Description');
  let guess: OsGuess = {};
  if (id !== undefined && /^\d{1,4}$/.test(id.trim())) {
    out.ovf_os_id = id.trim();
    guess = osFromCimId(Number(id.trim()));
  }
  if (vmw) {
    out.ovf_os_vmw_type = cleanValue(vmw);
    const fromVmw = osFromVmwType(vmw);
    guess = { ...guess, ...fromVmw }; // the VMware id is more specific than the CIM number
  }
  if (description) out.ovf_os_description = cleanValue(description);
  if (guess.os_type) out.os_type = guess.os_type;
  if (guess.os_distro) out.os_distro = guess.os_distro;
  return out;
}
