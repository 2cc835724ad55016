// The devcluster API server in a process of its own, for bench/lb.ts (parts 2-4): the agent
// lists and watches it, the benchmark writes Services and EndpointSlices to it. Its own process
// so that serving watches never shares an event loop with the benchmark's map polling.
//
//   lb-apiserver.ts <dataDir> <serviceCIDR>
// prints one JSON line {"lbBenchApiServer": {url, caCertPem, adminToken}} once listening, and
// closes on SIGTERM or when stdin ends (the benchmark went away).
import { startApiServer } from '../src/devcluster/apiserver/index.js';

const [dataDir, serviceCIDR] = process.argv.slice(2);
if (!dataDir || !serviceCIDR) throw new Error('usage: lb-apiserver.ts <dataDir> <serviceCIDR>');

const api = await startApiServer({
  listen: [{ host: '127.0.0.1', port: 0 }],
  dataDir,
  serviceCIDR,
  // Only the default/kubernetes Service's endpoint carries these; nothing connects to it.
  advertiseAddress: '127.0.0.1',
  advertisePort: 6443,
});
process.stdout.write(
  `${JSON.stringify({ lbBenchApiServer: { url: api.url, caCertPem: api.caCertPem, adminToken: api.adminToken } })}\n`,
);
let closing = false;
const close = () => {
  if (closing) return;
  closing = true;
  void api.close().finally(() => process.exit(0));
};
process.on('SIGTERM', close);
process.on('SIGINT', close);
process.stdin.on('end', close);
process.stdin.resume();
