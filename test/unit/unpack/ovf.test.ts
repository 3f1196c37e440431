import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UnpackRefusedError } from '../../../workers/unpack/errors.js';
import { allocationUnitBytes, osFromCimId, osFromVmwType, parseOvfDescriptor } from '../../../workers/unpack/ovf.js';
import { attr, parseXml, XmlError } from '../../../workers/unpack/xml.js';
import { makeOvf } from './helpers.js';

const enc = (s: string) => Buffer.from(s, 'utf8');

function xmlFails(text: string, kind: string): void {
  assert.throws(() => parseXml(text), (e: unknown) => e instanceof XmlError && e.kind === kind, text.slice(0, 80));
}

test('xml: namespaces, entities, CDATA, comments, attributes', () => {
  const root = parseXml(`<?xml version="1.0"?><!-- c --><a:r xmlns:a="urn:a" xmlns="urn:d" x='1 &amp; 2' a:y="&#x41;&#66;"><c>t&lt;&gt;&quot;&apos;<![CDATA[<raw>&amp;]]></c><?pi data?><d xmlns="urn:e"/></a:r>`);
  assert.equal(root.local, 'r');
  assert.equal(root.ns, 'urn:a');
  assert.equal(attr(root, 'x'), '1 & 2');
  assert.equal(attr(root, 'y', ['urn:a']), 'AB');
  assert.equal(root.children[0]!.ns, 'urn:d');
  assert.equal(root.children[0]!.text, `t<>"'<raw>&amp;`);
  assert.equal(root.children[1]!.ns, 'urn:e');
});

test('xml: DOCTYPE, entity declarations and unknown entities are refused', () => {
  xmlFails('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', 'doctype');
  xmlFails('<!DOCTYPE r><r/>', 'doctype');
  xmlFails('<r><!DOCTYPE x></r>', 'doctype');
  xmlFails('<r>&x;</r>', 'entity');
  xmlFails('<r a="&lol9;"/>', 'entity');
  xmlFails('<r>&#0;</r>', 'entity');
  xmlFails('<r>a & b</r>', 'entity');
  xmlFails('<r><!ENTITY x "y"></r>', 'syntax');
});

test('xml: malformed documents and limits', () => {
  xmlFails('<r>', 'syntax');
  xmlFails('<r></s>', 'syntax');
  xmlFails('<r/><r/>', 'syntax');
  xmlFails('text<r/>', 'syntax');
  xmlFails('<r a="1" a="2"/>', 'syntax');
  xmlFails('<p:r/>', 'syntax');
  xmlFails('<r a=1/>', 'syntax');
  xmlFails('<r>\u0001</r>', 'syntax');
  xmlFails('<?xml version="1.0" encoding="ISO-8859-1"?><r/>', 'encoding');
  xmlFails(`${'<a>'.repeat(100)}${'</a>'.repeat(100)}`, 'limit');
  assert.throws(() => parseXml(`<r>${'x'.repeat(100)}</r>`, { maxChars: 50, maxDepth: 8, maxElements: 10, maxAttributes: 4 }), XmlError);
  assert.throws(() => parseXml(`<r>${'<a/>'.repeat(20)}</r>`, { maxChars: 1000, maxDepth: 8, maxElements: 10, maxAttributes: 4 }), XmlError);
});

function refusedOvf(text: string | Buffer, code: string, pattern?: RegExp): void {
  assert.throws(
    () => parseOvfDescriptor(typeof text === 'string' ? enc(text) : text, 'x.ovf'),
    (e: unknown) => {
      assert.ok(e instanceof UnpackRefusedError, String(e));
      assert.equal(e.code, code, e.message);
      if (pattern) assert.match(e.message, pattern);
      return true;
    },
  );
}

test('ovf: DOCTYPE / entity expansion in the descriptor is refused with a clear message', () => {
  const billion = '<!DOCTYPE Envelope [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>';
  refusedOvf(makeOvf({ disks: [{ href: 'disk.vmdk' }], prolog: billion }), 'invalid_ovf', /DOCTYPE/);
  refusedOvf(makeOvf({ disks: [{ href: 'disk.vmdk' }], osId: 1, osDescription: '&xxe;' }), 'invalid_ovf', /entity/);
  refusedOvf(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('<Envelope/>', 'utf16le')]), 'invalid_ovf', /UTF-8/);
  refusedOvf('<NotEnvelope/>', 'invalid_ovf', /not an OVF/);
  refusedOvf(Buffer.alloc(1024 * 1024 + 1, 0x20), 'invalid_ovf', /more than/);
});

test('ovf: picks the disk the virtual system uses, reports the others', () => {
  const d = parseOvfDescriptor(
    enc(
      makeOvf({
        disks: [
          { href: 'unused.vmdk', detached: true },
          { href: 'boot%20disk.vmdk', compression: 'gzip', size: 123 },
          { href: 'data.vmdk' },
        ],
      }),
    ),
    'a.ovf',
  );
  assert.equal(d.disks[0]!.file.memberName, 'boot disk.vmdk');
  assert.equal(d.disks[0]!.file.compression, 'gzip');
  assert.equal(d.disks[0]!.file.declaredSize, 123);
  assert.deepEqual(
    d.disks.map((x) => x.file.href),
    ['boot%20disk.vmdk', 'data.vmdk'],
  );
  const extra = d.findings.find((f) => f.code === 'ovf_additional_disks');
  assert.ok(extra && extra.severity === 'info' && /data\.vmdk/.test(extra.message));
  // no hardware references: DiskSection order
  const fallback = parseOvfDescriptor(enc(makeOvf({ disks: [{ href: 'one.vmdk', detached: true }, { href: 'two.vmdk', detached: true }] })), 'a.ovf');
  assert.equal(fallback.disks[0]!.file.href, 'one.vmdk');
});

test('ovf: bad references are refused', () => {
  refusedOvf(makeOvf({ disks: [] }), 'ovf_disk_missing');
  refusedOvf(makeOvf({ disks: [{ href: 'http://evil.example/disk.vmdk' }] }), 'invalid_ovf', /outside the package/);
  refusedOvf(makeOvf({ disks: [{ href: 'file:///etc/shadow' }] }), 'invalid_ovf', /outside the package/);
  refusedOvf(makeOvf({ disks: [{ href: '/etc/shadow' }] }), 'invalid_ovf');
  refusedOvf(makeOvf({ disks: [{ href: '../../etc/shadow' }] }), 'unsafe_archive');
  refusedOvf(makeOvf({ disks: [{ href: '%2e%2e/x' }] }), 'unsafe_archive');
  refusedOvf(makeOvf({ disks: [{ href: 'd.vmdk', compression: 'bzip2' }] }), 'unsupported_archive', /gzip/);
  refusedOvf(makeOvf({ disks: [{ href: 'd.vmdk' }] }).replace('ovf:href=', 'ovf:chunkSize="1000" ovf:href='), 'unsupported_archive', /chunk/);
  refusedOvf(makeOvf({ disks: [{ href: 'd.vmdk' }] }).replace('ovf:/disk/vmdisk1', 'ovf:/disk/nope'), 'invalid_ovf', /nope/);
  refusedOvf(makeOvf({ disks: [{ href: 'd.vmdk' }] }).replace('ovf:fileRef="file1"', 'ovf:fileRef="file9"'), 'invalid_ovf', /file9/);
});

test('ovf: OS, CPU and memory map to Glance-compatible properties', () => {
  const d = parseOvfDescriptor(
    enc(makeOvf({ disks: [{ href: 'd.vmdk' }], osId: 94, vmwOsType: 'ubuntu64Guest', osDescription: 'Ubuntu Linux (64-bit)', cpus: 4, memory: { quantity: 8192 }, pasd: { InstructionSetExtensionName: 'DMTF:x86:VT-d', InstructionSet: 'x86:64', Ignored: 'x' } })),
    'a.ovf',
  );
  assert.deepEqual(d.properties, {
    os_type: 'linux',
    os_distro: 'ubuntu',
    ovf_os_id: '94',
    ovf_os_vmw_type: 'ubuntu64Guest',
    ovf_os_description: 'Ubuntu Linux (64-bit)',
    ovf_vcpus: '4',
    ovf_memory_mb: '8192',
    cim_pasd_InstructionSetExtensionName: 'DMTF:x86:VT-d',
    cim_pasd_InstructionSet: 'x86:64',
  });
  const win = parseOvfDescriptor(enc(makeOvf({ disks: [{ href: 'd.vmdk' }], osId: 1, vmwOsType: 'windows2019srv_64Guest', memory: { quantity: 4, units: 'byte * 2^30' } })), 'a.ovf');
  assert.equal(win.properties.os_type, 'windows');
  assert.equal(win.properties.os_distro, 'windows');
  assert.equal(win.properties.ovf_memory_mb, '4096');
  const cimOnly = parseOvfDescriptor(enc(makeOvf({ disks: [{ href: 'd.vmdk' }], osId: 80, memory: { quantity: 1536, units: 'MegaBytes' } })), 'a.ovf');
  assert.equal(cimOnly.properties.os_type, 'linux');
  assert.equal(cimOnly.properties.os_distro, 'rhel');
  assert.equal(cimOnly.properties.ovf_memory_mb, '1536');
  const bare = parseOvfDescriptor(enc(makeOvf({ disks: [{ href: 'd.vmdk' }] })), 'a.ovf');
  assert.deepEqual(bare.properties, {});
});

test('ovf: hardware items of non-default deployment configurations are ignored', () => {
  const base = makeOvf({ disks: [{ href: 'd.vmdk' }], cpus: 2 });
  const text = base
    .replace('<References>', '<DeploymentOptionSection><Info>sizes</Info><Configuration ovf:id="small"><Label>S</Label></Configuration><Configuration ovf:id="large" ovf:default="true"><Label>L</Label></Configuration></DeploymentOptionSection>\n  <References>')
    .replace(
      '</VirtualHardwareSection>',
      `<Item ovf:configuration="small"><rasd:InstanceID>20</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
       <Item ovf:configuration="large"><rasd:InstanceID>21</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:VirtualQuantity>16384</rasd:VirtualQuantity></Item>
       </VirtualHardwareSection>`,
    );
  const d = parseOvfDescriptor(enc(text), 'a.ovf');
  assert.equal(d.properties.ovf_memory_mb, '16384');
  assert.equal(d.properties.ovf_vcpus, '2');
});

test('units and OS tables', () => {
  assert.equal(allocationUnitBytes('byte * 2^20'), 2 ** 20);
  assert.equal(allocationUnitBytes('byte*10^6'), 1e6);
  assert.equal(allocationUnitBytes('byte * 2^10 * 1024'), 2 ** 20);
  assert.equal(allocationUnitBytes('MB'), 2 ** 20);
  assert.equal(allocationUnitBytes('GigaBytes'), 2 ** 30);
  assert.equal(allocationUnitBytes('hertz * 10^6'), null);
  assert.deepEqual(osFromCimId(107), { os_type: 'linux', os_distro: 'centos' });
  assert.deepEqual(osFromCimId(120), { os_type: 'windows', os_distro: 'windows' });
  assert.deepEqual(osFromCimId(42), { os_distro: 'freebsd' });
  assert.deepEqual(osFromCimId(1), {});
  assert.deepEqual(osFromVmwType('rhel8_64Guest'), { os_type: 'linux', os_distro: 'rhel' });
  assert.deepEqual(osFromVmwType('other4xLinux64Guest'), { os_type: 'linux' });
  assert.deepEqual(osFromVmwType('winNetStandardGuest'), { os_type: 'windows', os_distro: 'windows' });
  assert.deepEqual(osFromVmwType('otherGuest'), {});
});
