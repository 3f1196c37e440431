/**
 * Preloaded into a PIR process (`node --import`, through NODE_OPTIONS) by the tests of S3
 * virtual-host addressing: names under `.localhost` resolve to 127.0.0.1, as RFC 6761 asks and
 * systemd-resolved does, but this machine's resolver (files, then DNS) does not. So
 * `<bucket>.localhost:<port>` reaches the local S3 server, which takes `localhost` as its
 * virtual-host domain (`-s3.domainName=localhost`, infra/local/seaweedfs.sh).
 */
import dns from 'node:dns';

const lookup = dns.lookup;
const loopbackForLocalhost = function (this: unknown, hostname: string, ...rest: unknown[]): unknown {
  const name = typeof hostname === 'string' && hostname.toLowerCase().endsWith('.localhost') ? '127.0.0.1' : hostname;
  return Reflect.apply(lookup, this, [name, ...rest]);
};
(dns as { lookup: unknown }).lookup = loopbackForLocalhost;
