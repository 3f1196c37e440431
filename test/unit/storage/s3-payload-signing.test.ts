import assert from 'node:assert/strict';
import { test } from 'node:test';
import { signsPayloadByDefault } from '../../../infra/storage/s3-blob-store.js';

test('S3 bodies are signed by default only over plain HTTP to another host', () => {
  assert.equal(signsPayloadByDefault('https://s3.eu-west-3.amazonaws.com'), false, 'TLS protects the bytes');
  assert.equal(signsPayloadByDefault('http://127.0.0.1:9436'), false, 'loopback');
  assert.equal(signsPayloadByDefault('http://localhost:9000'), false);
  assert.equal(signsPayloadByDefault('http://[::1]:9000'), false);
  assert.equal(signsPayloadByDefault('http://10.0.0.5:9000'), true);
  assert.equal(signsPayloadByDefault('http://rgw.internal'), true);
});
