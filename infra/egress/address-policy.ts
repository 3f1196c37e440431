/**
 * Which destinations PIR may connect to on a user's behalf (web-download today, webhooks
 * later). Addresses are classified with ipaddr.js (the parser Fastify's proxy-addr uses): only
 * ordinary global unicast addresses pass; the allow-list exempts the operator's own networks.
 */
import ipaddr from 'ipaddr.js';

/** Addresses of cloud metadata and host services that are not in a special range themselves. */
const METADATA_ADDRESSES = new Map<string, string>([
  ['169.254.169.254', 'the cloud metadata service'],
  ['169.254.170.2', 'the container metadata service'],
  ['100.100.100.200', 'the Alibaba Cloud metadata service'],
  ['192.0.0.192', 'the Oracle Cloud metadata service'],
  ['168.63.129.16', 'the Azure host service'],
  ['fd00:ec2::254', 'the AWS metadata service'],
]);

/** Why each ipaddr.js range is refused, in words a user can act on. */
const RANGE_WORDS: Record<string, string> = {
  unspecified: 'an unspecified address',
  broadcast: 'the broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT address (100.64.0.0/10)',
  private: 'a private address (RFC 1918)',
  uniqueLocal: 'a private address (fc00::/7)',
  reserved: 'a reserved address',
  ipv4Mapped: 'an IPv4-mapped address',
  rfc6145: 'an IPv4-translated address',
  rfc6052: 'a NAT64 address',
  '6to4': 'a 6to4 address',
  teredo: 'a Teredo address',
  deprecatedSiteLocal: 'a site-local address',
  discard: 'a discard-only address',
};

/**
 * Null when `address` (a literal IPv4 or IPv6 address) is an ordinary public address; else why
 * it is refused. IPv4 inside IPv6 (mapped, compatible) is judged as the IPv4 address it carries.
 */
export function refusedAddress(address: string): string | null {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(address);
  } catch {
    return 'not an IP address';
  }
  if (ip.kind() === 'ipv6') {
    const v6 = ip as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return refusedAddress(v6.toIPv4Address().toString());
    // ::a.b.c.d (IPv4-compatible, deprecated) is left "unicast" by ipaddr.js: judge the IPv4 part.
    const parts = v6.parts;
    if (parts.slice(0, 6).every((p) => p === 0) && (parts[6] !== 0 || parts[7] > 1)) {
      return refusedAddress(ipaddr.fromByteArray(v6.toByteArray().slice(12)).toString());
    }
  }
  const metadata = METADATA_ADDRESSES.get(ip.toNormalizedString()) ?? METADATA_ADDRESSES.get(ip.toString());
  if (metadata) return metadata;
  const range = ip.range();
  if (range === 'unicast') return null;
  return RANGE_WORDS[range] ?? `a special-purpose address (${range})`;
}

/** One PIR_EGRESS_ALLOWLIST entry: a CIDR (or single address), a host name, or host:port. */
export type AllowEntry =
  | { kind: 'cidr'; text: string; range: [ipaddr.IPv4 | ipaddr.IPv6, number] }
  | { kind: 'host'; text: string; host: string; port: number | null };

/** Parses the allow-list; throws an Error naming the bad entry. */
export function parseAllowList(text: string): AllowEntry[] {
  const entries: AllowEntry[] = [];
  for (const raw of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (raw.includes('/')) {
      try {
        entries.push({ kind: 'cidr', text: raw, range: ipaddr.parseCIDR(raw) });
      } catch {
        throw new Error(`"${raw}" is not a CIDR range (examples: 10.0.0.0/8, fd00::/8)`);
      }
      continue;
    }
    if (ipaddr.isValid(raw) && (ipaddr.IPv4.isValidFourPartDecimal(raw) || ipaddr.IPv6.isValid(raw))) {
      const ip = ipaddr.parse(raw);
      entries.push({ kind: 'cidr', text: raw, range: [ip, ip.kind() === 'ipv4' ? 32 : 128] });
      continue;
    }
    const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(raw);
    const port = match?.[2] === undefined ? null : Number(match[2]);
    if (!match || (port !== null && (port < 1 || port > 65535))) {
      throw new Error(`"${raw}" is not a CIDR, a host name or host:port`);
    }
    entries.push({ kind: 'host', text: raw, host: normalizeHost(match[1]), port });
  }
  return entries;
}

/** Lower case, no brackets, no trailing dot: how URL host names are compared. */
export function normalizeHost(host: string): string {
  return host.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
}

/** Whether a host-name or host:port entry exempts this URL host and port. */
export function allowedByName(entries: AllowEntry[], host: string, port: number): boolean {
  const h = normalizeHost(host);
  return entries.some((e) => e.kind === 'host' && e.host === h && (e.port === null || e.port === port));
}

/** Whether a CIDR entry exempts this resolved address. */
export function allowedByAddress(entries: AllowEntry[], address: string): boolean {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.process(address); // IPv4-mapped IPv6 → IPv4, so 10.0.0.0/8 covers ::ffff:10.0.0.1
  } catch {
    return false;
  }
  return entries.some((e) => e.kind === 'cidr' && e.range[0].kind() === ip.kind() && ip.match(e.range));
}
