/**
 * openstacksdk (PyPI, pinned by infra/local/clients/openstacksdk-requirements.txt) against
 * `pir serve` with two projects: test/clients/openstacksdk_flow.py runs create → upload → stage →
 * import → wait → list filters → update → tags → members → download → delete, one test per step;
 * then Glance's metadata definitions API (/v2/metadefs) through the SDK's metadef calls.
 */
import { join } from 'node:path';
import { clientFlowSuite, openstacksdkPython, repoRoot } from '../support/clients.js';

clientFlowSuite('openstacksdk', await openstacksdkPython(), (python) => ({
  command: python.path,
  args: [join(repoRoot, 'test', 'clients', 'openstacksdk_flow.py')],
}), ['metadef_create', 'metadef_read', 'metadef_refused', 'metadef_change', 'metadef_delete']);
