/**
 * The production stack cannot run here (no Docker engine), so what can be checked is checked:
 * docker-compose.yml parses and references only files that exist, every PIR service's
 * environment passes PIR's own config validation, and every Prometheus and Grafana query names
 * a metric PIR really exports.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { distributedUrls, loadConfig } from '../../../infra/config.js';
import { registry } from '../../../infra/telemetry/metrics.js';
import { tracingWanted } from '../../../infra/telemetry/tracing-wanted.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

interface Service { image?: string; build?: string; command?: string[]; environment?: Record<string, string>; volumes?: string[]; deploy?: { replicas?: number }; depends_on?: unknown }
const compose = YAML.parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service> };
const services = compose.services;
const pirServices = Object.entries(services).filter(([, s]) => s.build !== undefined);

/** Compose's ${VAR:?message} and ${VAR:-default}, with the values an operator would give. */
function interpolate(value: unknown, vars: Record<string, string>): string {
  return String(value).replace(/\$\{([A-Z0-9_]+)(?::?[?-]([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => vars[name] ?? fallback ?? '');
}

describe('docker-compose.yml and infra/deploy', () => {
  it('has the whole stack: MongoDB, Kafka (KRaft), Redis, Collector, Jaeger, Prometheus, Grafana, 2 api, 2 worker', () => {
    assert.match(services.mongo!.image!, /^mongo:/);
    assert.match(services.kafka!.image!, /^apache\/kafka:/);
    assert.equal(services.kafka!.environment!.KAFKA_PROCESS_ROLES, 'broker,controller');
    assert.match(services.redis!.image!, /^redis:/);
    assert.match(services['otel-collector']!.image!, /opentelemetry-collector/);
    assert.match(services.jaeger!.image!, /^jaegertracing\//);
    assert.match(services.prometheus!.image!, /^prom\/prometheus:/);
    assert.match(services.grafana!.image!, /^grafana\/grafana:/);
    const count = (role: string) => pirServices.filter(([, s]) => s.command?.[0] === role).reduce((n, [, s]) => n + (s.deploy?.replicas ?? 1), 0);
    assert.equal(count('api'), 2);
    assert.equal(count('worker'), 2);
  });

  it('references only files that exist (bind mounts, the Dockerfile and what it copies)', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const volume of s.volumes ?? []) {
        const host = volume.split(':')[0]!;
        if (host.startsWith('./')) assert.ok(existsSync(join(ROOT, host)), `${name}: ${host} exists`);
      }
      if (s.build !== undefined) assert.ok(existsSync(join(ROOT, s.build, 'Dockerfile')), `${name}: Dockerfile`);
      for (const dep of Object.keys((Array.isArray(s.depends_on) ? Object.fromEntries(s.depends_on.map((d: string) => [d, 1])) : s.depends_on) ?? {})) {
        assert.ok(services[dep], `${name} depends on ${dep}, a service of the file`);
      }
    }
    const dockerfile = read('Dockerfile');
    for (const line of dockerfile.split('\n').filter((l) => /^COPY (?!--from)/.test(l))) {
      const sources = line.replace(/^COPY\s+/, '').split(/\s+/).slice(0, -1);
      for (const source of sources) assert.ok(existsSync(join(ROOT, source)), `Dockerfile: ${source} exists`);
    }
    assert.match(dockerfile, /^USER node$/m, 'runs as a non-root user');
    assert.match(dockerfile, /^HEALTHCHECK .*\/healthz/m);
    assert.equal((dockerfile.match(/^FROM /gm) ?? []).length, 2, 'multi-stage');
  });

  it("every PIR service's environment passes PIR's config validation (distributed, metrics port, tracing on)", () => {
    assert.ok(pirServices.length >= 3);
    for (const [name, s] of pirServices) {
      const env = Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(v, { PIR_ADMIN_TOKEN: 'an-operator-chosen-admin-token-of-44-characters' })]));
      const config = loadConfig(env);
      assert.ok(distributedUrls(config), `${name}: distributed`);
      assert.equal(config.metricsPort, 9464, `${name}: metrics port`);
      assert.equal(tracingWanted(env), true, `${name}: tracing on`);
      assert.ok(services[new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT!).hostname], `${name}: the collector is a service`);
    }
  });

  it('every Prometheus and Grafana query names a metric PIR exports', async () => {
    const exported = new Set<string>();
    for (const m of await registry.getMetricsAsJSON()) {
      exported.add(m.name);
      if (String(m.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(m.name + suffix);
    }
    const rules = YAML.parse(read('infra/deploy/pir-rules.yml')) as { groups: { rules: { expr: string }[] }[] };
    const dashboard = JSON.parse(read('infra/deploy/grafana/dashboards/pir.json')) as { panels: { targets: { expr: string }[] }[] };
    const queries = [...rules.groups.flatMap((g) => g.rules.map((r) => r.expr)), ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr))];
    assert.ok(queries.length >= 10);
    for (const query of queries) {
      const names = query.match(/\bpir_[a-z0-9_]+/g) ?? [];
      assert.ok(names.length > 0, `${query} names a PIR metric`);
      for (const n of names) assert.ok(exported.has(n), `${n} (in ${query}) is exported`);
    }
    // Prometheus scrapes the PIR services on their metrics port; its rule file is mounted.
    const prometheus = YAML.parse(read('infra/deploy/prometheus.yml')) as { scrape_configs: { static_configs?: { targets: string[] }[]; dns_sd_configs?: { names: string[]; port: number }[] }[]; rule_files: string[] };
    const targets = prometheus.scrape_configs.flatMap((c) => [...(c.static_configs ?? []).flatMap((s) => s.targets), ...(c.dns_sd_configs ?? []).flatMap((d) => d.names.map((n) => `${n}:${d.port}`))]);
    assert.deepEqual(new Set(targets.map((t) => t.split(':')[0])), new Set(pirServices.map(([n]) => n)));
    for (const t of targets) assert.equal(t.split(':')[1], '9464');
    const mounts = services.prometheus!.volumes!.map((v) => v.split(':')[1]);
    for (const file of prometheus.rule_files) assert.ok(mounts.includes(file), `${file} is mounted`);
  });
});
