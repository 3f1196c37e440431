/**
 * openstacksdk (PyPI, pinned by infra/local/clients/openstacksdk-requirements.txt) against
 * `pir serve` with two projects: test/clients/openstacksdk_flow.py runs create → upload → stage →
 * import → wait → list filters → update → tags → members → download → delete, one test per step.
 */
import { join } from 'node:path';
import { clientFlowSuite, openstacksdkPython, repoRoot } from '../support/clients.js';

clientFlowSuite('openstacksdk', await openstacksdkPython(), (python) => ({
  command: python.path,
  args: [join(repoRoot, 'test', 'clients', 'openstacksdk_flow.py')],
}));
