// Checks the deployment description here, without a cluster or a container engine:
//  - every Kubernetes object against its API schema (kubernetes-models),
//  - references between objects: selectors, ConfigMaps, Secrets, HPA targets, service names the platform uses,
//  - the compose file's wiring and the platform roles.
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse } from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const roles = new Set(['Api', 'Metering', 'Daemon']);
// Created out of band (from a vault); the manifests may reference only these keys.
const externalSecrets = { 'throughput-secrets': new Set(['pg-password', 'rabbitmq-password', 'rabbitmq-erlang-cookie', 'bootstrap-operator-key']) };
const errors = [];
const fail = (where, message) => errors.push(`${where}: ${message}`);

const groups = {
  'v1': 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'autoscaling/v2': 'kubernetes-models/autoscaling/v2',
  'rbac.authorization.k8s.io/v1': 'kubernetes-models/rbac.authorization.k8s.io/v1',
};

const objects = [];
for (const file of readdirSync(join(here, 'k8s')).filter(f => f.endsWith('.yaml')).sort()) {
  for (const doc of parseAllDocuments(readFileSync(join(here, 'k8s', file), 'utf8'))) {
    if (doc.errors.length) { fail(file, doc.errors.map(e => e.message).join('; ')); continue; }
    const o = doc.toJS();
    if (!o) continue;
    const where = `${file} ${o.kind}/${o.metadata?.name}`;
    const module = groups[o.apiVersion];
    if (!module) { fail(where, `no schema known for apiVersion ${o.apiVersion}`); continue; }
    const Model = (await import(module))[o.kind];
    if (!Model) { fail(where, `unknown kind ${o.kind} in ${o.apiVersion}`); continue; }
    try { new Model(o).validate(); } catch (e) { fail(where, e.message); }
    objects.push({ file, where, o });
  }
}

const find = (kind, name) => objects.find(x => x.o.kind === kind && x.o.metadata.name === name);
const workloads = objects.filter(x => ['Deployment', 'StatefulSet'].includes(x.o.kind));
const matches = (selector, labels) => Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);

for (const w of workloads) {
  const spec = w.o.spec;
  if (!matches(spec.selector.matchLabels, spec.template.metadata.labels)) fail(w.where, 'selector does not match the pod template labels');
  if (w.o.kind === 'StatefulSet' && !find('Service', spec.serviceName)) fail(w.where, `serviceName ${spec.serviceName} has no Service`);
  for (const c of spec.template.spec.containers) {
    for (const from of c.envFrom ?? []) if (from.configMapRef && !find('ConfigMap', from.configMapRef.name)) fail(w.where, `ConfigMap ${from.configMapRef.name} is missing`);
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (ref && !externalSecrets[ref.name]?.has(ref.key)) fail(w.where, `secret ${ref.name}/${ref.key} is not one of the documented external secrets`);
      if (e.name === 'Host__Roles') for (const r of e.value.split(',')) if (!roles.has(r.trim())) fail(w.where, `unknown role ${r}`);
    }
  }
  for (const v of spec.template.spec.volumes ?? []) if (v.configMap && !find('ConfigMap', v.configMap.name)) fail(w.where, `ConfigMap ${v.configMap.name} is missing`);
}
for (const s of objects.filter(x => x.o.kind === 'Service')) {
  if (!workloads.some(w => matches(s.o.spec.selector, w.o.spec.template.metadata.labels))) fail(s.where, 'selects no pods');
}
for (const h of objects.filter(x => x.o.kind === 'HorizontalPodAutoscaler')) {
  if (!find(h.o.spec.scaleTargetRef.kind, h.o.spec.scaleTargetRef.name)) fail(h.where, 'scale target is missing');
}
for (const p of objects.filter(x => x.o.kind === 'PodDisruptionBudget')) {
  if (!workloads.some(w => matches(p.o.spec.selector.matchLabels, w.o.spec.template.metadata.labels))) fail(p.where, 'covers no pods');
}
const config = find('ConfigMap', 'throughput-config')?.o.data ?? {};
for (const [key, service] of [['THROUGHPUT_PG_HOST', 'postgres'], ['THROUGHPUT_RABBIT_HOST', 'rabbitmq']]) {
  if (!find('Service', config[key])) fail('config.yaml', `${key}=${config[key]} names no Service (expected ${service})`);
}
const platformRoles = new Set(workloads.flatMap(w => w.o.spec.template.spec.containers.flatMap(c => (c.env ?? []).filter(e => e.name === 'Host__Roles').map(e => e.value))));
for (const r of roles) if (!platformRoles.has(r)) fail('platform.yaml', `no workload runs the ${r} role`);

// compose.yaml
const compose = parse(readFileSync(join(here, 'compose.yaml'), 'utf8'), { merge: true });
const services = compose.services ?? {};
for (const [name, s] of Object.entries(services)) {
  if (!s.image) fail(`compose ${name}`, 'no image');
  for (const dep of Object.keys(s.depends_on ?? {})) if (!services[dep]) fail(`compose ${name}`, `depends on unknown service ${dep}`);
  const env = s.environment ?? {};
  if (env.Host__Roles) {
    for (const r of String(env.Host__Roles).split(',')) if (!roles.has(r.trim())) fail(`compose ${name}`, `unknown role ${r}`);
    for (const host of [env.THROUGHPUT_PG_HOST, env.THROUGHPUT_RABBIT_HOST]) if (!services[host]) fail(`compose ${name}`, `${host} is not a service`);
  }
}
for (const r of roles) if (!Object.values(services).some(s => s.environment?.Host__Roles === r)) fail('compose', `no service runs the ${r} role`);

console.log(`deploy: ${objects.length} Kubernetes objects and ${Object.keys(services).length} compose services checked`);
if (errors.length) {
  for (const e of errors) console.error('  ' + e);
  console.error(`deploy: ${errors.length} problem(s)`);
  process.exit(1);
}
console.log('deploy: valid');
