// Checks the deployment description here, without a cluster or a container engine:
//  - every Kubernetes object against its API schema (kubernetes-models),
//  - references between objects: selectors, ConfigMaps, Secrets, HPA targets, service names the platform uses,
//  - the compose file's wiring and the platform roles,
//  - in both, the cluster settings: every platform host lists every RabbitMQ node, the metering hosts' instance
//    indexes cover 0..Metering__Instances-1 once each, partition queues are quorum queues on a multi-node broker.
// Then it breaks a copy of the description in memory in each of those ways and makes sure each is caught.
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse } from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const roles = new Set(['Api', 'Metering', 'Daemon']);
// Created out of band (from a vault); the manifests may reference only these keys.
const externalSecrets = { 'throughput-secrets': new Set(['pg-password', 'pg-autoctl-password', 'rabbitmq-password', 'rabbitmq-admin-password', 'rabbitmq-operator-password', 'rabbitmq-erlang-cookie', 'bootstrap-operator-key']) };
const podIndex = "metadata.labels['apps.kubernetes.io/pod-index']";
const amqpPort = 5672;

const groups = {
  'v1': 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'batch/v1': 'kubernetes-models/batch/v1',
  'autoscaling/v2': 'kubernetes-models/autoscaling/v2',
  'rbac.authorization.k8s.io/v1': 'kubernetes-models/rbac.authorization.k8s.io/v1',
};

function load() {
  const k8s = [];
  for (const file of readdirSync(join(here, 'k8s')).filter(f => f.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(here, 'k8s', file), 'utf8'))) {
      if (doc.errors.length) k8s.push({ file, parseError: doc.errors.map(e => e.message).join('; ') });
      else if (doc.contents) k8s.push({ file, o: doc.toJS() });
    }
  }
  return {
    k8s,
    compose: parse(readFileSync(join(here, 'compose.yaml'), 'utf8'), { merge: true }),
    composeRabbitConf: readFileSync(join(here, 'rabbitmq.conf'), 'utf8'),
  };
}

// rabbitmq.conf's sysctl format: key = value, one a line.
const confValues = text => Object.fromEntries((text ?? '').split('\n').map(l => l.trim()).filter(l => l && !l.startsWith('#'))
  .map(l => l.split('=').map(p => p.trim())).filter(p => p.length === 2));

// THROUGHPUT_RABBIT_NODES as the host reads it: host[:port], comma-separated, port 5672 when left out.
const nodeList = text => String(text ?? '').split(',').map(n => n.trim()).filter(Boolean)
  .map(n => { const [host, port] = n.split(':'); return { host, port: Number(port ?? amqpPort) }; });

const truthy = v => String(v ?? '').toLowerCase() === 'true';
const runsMetering = env => String(env.Host__Roles ?? 'Api,Metering,Daemon').split(',').map(r => r.trim()).includes('Metering');

/**
 * What a cluster's platform hosts must agree on, the same for compose and Kubernetes. hosts: one entry per platform
 * container definition: where, env (name to literal value, or { fieldPath }), replicas, instances (the metering
 * instance indexes it produces, one per replica), reachesNode (does a THROUGHPUT_RABBIT_NODES entry name this node).
 */
function clusterProblems(fail, brokerNodes, hosts) {
  for (const h of hosts) {
    const listed = nodeList(h.env.THROUGHPUT_RABBIT_NODES);
    if (brokerNodes.length > 1 && listed.length === 0) { fail(h.where, `THROUGHPUT_RABBIT_NODES is not set, but RabbitMQ has ${brokerNodes.length} nodes`); continue; }
    for (const node of brokerNodes) if (!listed.some(l => h.reachesNode(l, node))) fail(h.where, `THROUGHPUT_RABBIT_NODES does not list RabbitMQ node ${node.name}`);
    for (const l of listed) if (!brokerNodes.some(node => h.reachesNode(l, node))) fail(h.where, `THROUGHPUT_RABBIT_NODES lists ${l.host}:${l.port}, which is no RabbitMQ node`);
  }
  const metering = hosts.filter(h => runsMetering(h.env));
  if (metering.length === 0) return;
  for (const key of ['Metering__Instances', 'Metering__Partitions', 'Metering__QuorumQueues', 'Metering__StandbyAfter']) {
    const values = new Set(metering.map(h => JSON.stringify(h.env[key])));
    if (values.size > 1) fail('metering', `${key} differs between metering hosts (${[...values].join(', ')})`);
  }
  const instances = Number(metering[0].env.Metering__Instances ?? 1);
  const partitions = Number(metering[0].env.Metering__Partitions ?? 4);
  if (!(instances >= 1)) fail('metering', `Metering__Instances=${metering[0].env.Metering__Instances} is not a count`);
  if (partitions < instances) fail('metering', `Metering__Partitions=${partitions} is fewer than Metering__Instances=${instances}: a host would own no partition`);
  const indexes = metering.flatMap(h => h.instances.map(i => ({ i, where: h.where })));
  for (let i = 0; i < instances; i++) {
    const owners = indexes.filter(x => x.i === i);
    if (owners.length === 0) fail('metering', `no metering host has Metering__Instance=${i} (of Metering__Instances=${instances}): its partitions wait ${metering[0].env.Metering__StandbyAfter ?? '10 s'} for a standby`);
    if (owners.length > 1) fail('metering', `Metering__Instance=${i} is given to ${owners.length} hosts (${[...new Set(owners.map(o => o.where))].join(', ')})`);
  }
  for (const x of indexes) if (!(Number.isInteger(x.i) && x.i >= 0 && x.i < instances)) fail(x.where, `Metering__Instance=${x.i} is outside 0..${instances - 1}: the host refuses to start`);
  if (brokerNodes.length > 1) for (const h of metering) if (!truthy(h.env.Metering__QuorumQueues)) fail(h.where, `Metering__QuorumQueues is not true, but RabbitMQ has ${brokerNodes.length} nodes: a partition queue would live on one node only`);
}

async function problems(d) {
  const errors = [];
  const fail = (where, message) => errors.push(`${where}: ${message}`);

  const objects = [];
  for (const { file, o, parseError } of d.k8s) {
    if (parseError) { fail(file, parseError); continue; }
    const where = `${file} ${o.kind}/${o.metadata?.name}`;
    const module = groups[o.apiVersion];
    if (!module) { fail(where, `no schema known for apiVersion ${o.apiVersion}`); continue; }
    const Model = (await import(module))[o.kind];
    if (!Model) { fail(where, `unknown kind ${o.kind} in ${o.apiVersion}`); continue; }
    try { new Model(o).validate(); } catch (e) { fail(where, e.message); }
    objects.push({ file, where, o });
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
  if (!find('Service', config.THROUGHPUT_RABBIT_HOST)) fail('config.yaml', `THROUGHPUT_RABBIT_HOST=${config.THROUGHPUT_RABBIT_HOST} names no Service (expected rabbitmq)`);
  // PostgreSQL: one Service (THROUGHPUT_PG_HOST), or every node of a pg_auto_failover StatefulSet by its own name (THROUGHPUT_PG_HOSTS).
  const pgNodes = workloads.filter(w => w.o.kind === 'StatefulSet' && w.o.spec.template.spec.containers.some(c => c.args?.slice(0, 2).join(' ') === 'create postgres'))
    .flatMap(w => Array.from({ length: w.o.spec.replicas ?? 1 }, (_, i) => `${w.o.metadata.name}-${i}.${w.o.spec.serviceName}.${w.o.metadata.namespace}.svc.cluster.local:5432`));
  if (config.THROUGHPUT_PG_HOSTS) {
    const listed = String(config.THROUGHPUT_PG_HOSTS).split(',').map(h => h.trim());
    for (const node of pgNodes) if (!listed.includes(node)) fail('config.yaml', `THROUGHPUT_PG_HOSTS does not list PostgreSQL node ${node}`);
    for (const host of listed) if (!pgNodes.includes(host)) fail('config.yaml', `THROUGHPUT_PG_HOSTS lists ${host}, which is no PostgreSQL node`);
  } else if (!find('Service', config.THROUGHPUT_PG_HOST)) fail('config.yaml', `THROUGHPUT_PG_HOST=${config.THROUGHPUT_PG_HOST} names no Service, and THROUGHPUT_PG_HOSTS is not set`);
  const platformRoles = new Set(workloads.flatMap(w => w.o.spec.template.spec.containers.flatMap(c => (c.env ?? []).filter(e => e.name === 'Host__Roles').map(e => e.value))));
  for (const r of roles) if (!platformRoles.has(r)) fail('platform.yaml', `no workload runs the ${r} role`);

  // The RabbitMQ nodes are the pods of the StatefulSets running the rabbitmq image, each reachable as
  // <pod>.<headless service>[.<namespace>[.svc[.cluster.local]]].
  const k8sNodes = [];
  for (const w of workloads.filter(w => w.o.kind === 'StatefulSet' && w.o.spec.template.spec.containers.some(c => c.image?.startsWith('rabbitmq')))) {
    const { name, namespace = 'default' } = w.o.metadata;
    const service = w.o.spec.serviceName;
    if (find('Service', service)?.o.spec.clusterIP !== 'None') fail(w.where, `serviceName ${service} is not headless (clusterIP: None), so its pods have no DNS names of their own`);
    for (let i = 0; i < (w.o.spec.replicas ?? 1); i++) k8sNodes.push({ name: `${name}-${i}.${service}.${namespace}.svc.cluster.local:${amqpPort}`, pod: `${name}-${i}`, service, namespace });
    const mounted = (w.o.spec.template.spec.volumes ?? []).map(v => find('ConfigMap', v.configMap?.name)?.o.data?.['rabbitmq.conf']).find(Boolean);
    const conf = confValues(mounted);
    if (conf['cluster_formation.peer_discovery_backend'] === 'k8s') {
      if (conf['cluster_formation.k8s.service_name'] !== service) fail(w.where, `peer discovery watches ${conf['cluster_formation.k8s.service_name']}, not the StatefulSet's service ${service}`);
      const suffix = `.${service}.${namespace}.svc.cluster.local`;
      if (conf['cluster_formation.k8s.hostname_suffix'] !== suffix) fail(w.where, `cluster_formation.k8s.hostname_suffix must be ${suffix}, the node names' domain`);
    }
  }
  const k8sReaches = (listed, node) => {
    const [pod, service, ...rest] = listed.host.split('.');
    return listed.port === amqpPort && pod === node.pod && service === node.service && rest.every((label, i) => label === [node.namespace, 'svc', 'cluster', 'local'][i]);
  };
  const configMapEnv = c => Object.assign({}, ...(c.envFrom ?? []).map(f => find('ConfigMap', f.configMapRef?.name)?.o.data ?? {}));
  const k8sHosts = [];
  for (const w of workloads) {
    const replicas = w.o.spec.replicas ?? 1;
    for (const c of w.o.spec.template.spec.containers.filter(c => c.image?.startsWith('throughput/platform'))) {
      const env = configMapEnv(c);
      for (const e of c.env ?? []) env[e.name] = e.valueFrom?.fieldRef ? { fieldPath: e.valueFrom.fieldRef.fieldPath } : e.valueFrom ? { secret: true } : e.value;
      const index = env.Metering__Instance;
      const instances = index?.fieldPath === podIndex && w.o.kind === 'StatefulSet'
        ? Array.from({ length: replicas }, (_, i) => i)
        : Array(replicas).fill(index === undefined ? 0 : typeof index === 'string' ? Number(index) : NaN);
      const scaled = objects.find(h => h.o.kind === 'HorizontalPodAutoscaler' && h.o.spec.scaleTargetRef.name === w.o.metadata.name);
      const host = { where: w.where, env, replicas, instances, reachesNode: k8sReaches };
      if (runsMetering(env)) {
        if (typeof index === 'object' && index.fieldPath !== podIndex) fail(w.where, `Metering__Instance comes from ${index.fieldPath}, not the pod index`);
        if (scaled) fail(w.where, `${scaled.where} scales it, but Metering__Instances is fixed: scale metering by changing replicas and Metering__Instances together`);
        if (typeof env.Host__Name === 'string' && replicas > 1) fail(w.where, `all ${replicas} replicas get Host__Name=${env.Host__Name}`);
      }
      k8sHosts.push(host);
    }
  }
  clusterProblems((where, message) => fail(`k8s ${where}`, message), k8sNodes, k8sHosts);

  // compose.yaml
  const services = d.compose.services ?? {};
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

  // A node is reached by its service name on the compose network; its node name is rabbit@<hostname>.
  const rabbitServices = Object.entries(services).filter(([, s]) => String(s.image).startsWith('rabbitmq'));
  const composeNodes = rabbitServices.map(([name]) => ({ name: `${name}:${amqpPort}`, service: name }));
  const classicNodes = Object.entries(confValues(d.composeRabbitConf)).filter(([k]) => k.startsWith('cluster_formation.classic_config.nodes.')).map(([, v]) => v);
  for (const [name, s] of rabbitServices) {
    if ((s.deploy?.replicas ?? 1) > 1) fail(`compose ${name}`, 'replicas of one service are not addressable as cluster nodes; one service per node');
    if (rabbitServices.length > 1 && !classicNodes.includes(`rabbit@${s.hostname}`)) fail(`compose ${name}`, `rabbitmq.conf does not list its node rabbit@${s.hostname} (hostname: must be set and listed)`);
  }
  for (const node of classicNodes) if (!rabbitServices.some(([, s]) => node === `rabbit@${s.hostname}`)) fail('compose rabbitmq.conf', `lists ${node}, which no service is`);
  const composeHosts = Object.entries(services).filter(([, s]) => String(s.image).startsWith('throughput/platform')).map(([name, s]) => {
    const env = s.environment ?? {};
    const replicas = s.deploy?.replicas ?? 1;
    for (const [dep] of rabbitServices) if (!s.depends_on?.[dep]) fail(`compose ${name}`, `does not wait for ${dep}: partition queues declared before it joins get no replica there`);
    return { where: name, env, replicas, instances: Array(replicas).fill(Number(env.Metering__Instance ?? 0)), reachesNode: (l, node) => l.host === node.service && l.port === amqpPort };
  });
  const meteringNames = composeHosts.filter(h => runsMetering(h.env)).flatMap(h => Array(h.replicas).fill(h.env.Host__Name));
  if (meteringNames.some(n => !n) || new Set(meteringNames).size < meteringNames.length) fail('compose metering', `Host__Name must be set and distinct per metering host (${meteringNames.join(', ')}): it names the host's connection in the broker`);
  clusterProblems((where, message) => fail(`compose ${where}`, message), composeNodes, composeHosts);

  return { errors: [...new Set(errors)], objects: objects.length, services: Object.keys(services).length };
}

// Ways to get the cluster settings wrong; each must be caught, or the checks above are weaker than they claim.
const object = (d, kind, name) => d.k8s.find(x => x.o?.kind === kind && x.o.metadata.name === name).o;
const setEnv = (d, service, values) => { const s = d.compose.services[service]; s.environment = { ...s.environment, ...values }; };
const breakages = {
  'a node left out of THROUGHPUT_RABBIT_NODES (k8s)': d => {
    const { data } = object(d, 'ConfigMap', 'throughput-config');
    data.THROUGHPUT_RABBIT_NODES = data.THROUGHPUT_RABBIT_NODES.split(',').slice(1).join(',');
  },
  'a PostgreSQL node left out of THROUGHPUT_PG_HOSTS (k8s)': d => {
    const { data } = object(d, 'ConfigMap', 'throughput-config');
    data.THROUGHPUT_PG_HOSTS = data.THROUGHPUT_PG_HOSTS.split(',').slice(1).join(',');
  },
  'a fourth RabbitMQ node nobody lists (k8s)': d => { object(d, 'StatefulSet', 'rabbitmq').spec.replicas += 1; },
  'metering replicas other than Metering__Instances (k8s)': d => { object(d, 'StatefulSet', 'throughput-metering').spec.replicas += 1; },
  'metering as a Deployment, one Metering__Instance for all (k8s)': d => {
    const metering = object(d, 'StatefulSet', 'throughput-metering');
    metering.kind = 'Deployment';
    delete metering.spec.serviceName;
    delete metering.spec.podManagementPolicy;
    const [container] = metering.spec.template.spec.containers;
    container.env = container.env.filter(e => e.name !== 'Metering__Instance');
  },
  'classic partition queues on a cluster (k8s)': d => { object(d, 'ConfigMap', 'throughput-config').data.Metering__QuorumQueues = 'false'; },
  'a node left out of THROUGHPUT_RABBIT_NODES (compose)': d => setEnv(d, 'api', { THROUGHPUT_RABBIT_NODES: 'rabbitmq-1:5672,rabbitmq-2:5672' }),
  'two metering hosts with one Metering__Instance (compose)': d => setEnv(d, 'metering-1', { Metering__Instance: '0' }),
  'Metering__Instances differing between hosts (compose)': d => setEnv(d, 'metering-1', { Metering__Instances: '3' }),
  'classic partition queues on a cluster (compose)': d => ['metering-0', 'metering-1'].forEach(m => setEnv(d, m, { Metering__QuorumQueues: 'false' })),
};

const description = load();
const { errors, objects, services } = await problems(description);
let caught = 0;
for (const [what, breakIt] of Object.entries(breakages)) {
  const broken = structuredClone(description);
  breakIt(broken);
  if ((await problems(broken)).errors.some(e => !errors.includes(e))) caught++;
  else errors.push(`self-check: ${what} was not caught`);
}

console.log(`deploy: ${objects} Kubernetes objects and ${services} compose services checked; ${caught} of ${Object.keys(breakages).length} deliberate breakages caught`);
if (errors.length) {
  for (const e of errors) console.error('  ' + e);
  console.error(`deploy: ${errors.length} problem(s)`);
  process.exit(1);
}
console.log('deploy: valid');
