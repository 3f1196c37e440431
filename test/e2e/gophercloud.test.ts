/**
 * gophercloud (Go module proxy, pinned by test/clients/gophercloud/go.mod) against `pir serve`
 * with two projects: the driver built by `services.sh install clients` runs create → upload →
 * stage → import → wait → list filters → update → tags → members → download → delete, one test
 * per step.
 */
import { clientFlowSuite, gophercloudDriver } from '../support/clients.js';

clientFlowSuite('gophercloud', await gophercloudDriver(), (driver) => ({ command: driver.path, args: [] }));
