// A two-node cluster and an external client, made of network namespaces, for the NodePort
// kernel tests. Nothing of it has an address on the host; destroy() removes every namespace,
// process and pinned object it made, also after a failure.
//
//   client 10.251.0.10 ─┐                       ┌─ node1 10.251.0.1 ── cbr0 10.251.1.1/24 ── pod-a .10, pod-b .11
//                       ├── lan (bridge br0) ───┤
//                       │                       └─ node2 10.251.0.2 ── cbr0 10.251.2.1/24 ── pod-c 10.251.2.10
//   client eth1 10.251.3.10 ──────────────────── node1 eth1 10.251.3.1   (a second uplink of node1)
//
// Each node routes the other's pod CIDR through the LAN and forwards (ip_forward=1); the
// client only knows the LAN, plus routes to node1 for the ExternalIP/LoadBalancer range
// (10.251.100.0/24) and a ClusterIP range (10.251.200.0/24): it can reach a pod only through
// a frontend, and accepts an answer only from the address it sent to.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { checkEnvironment } from '../../../src/datapath/environment.js';
import { projectRoot } from '../../../src/shared/self.js';
import type { PeerRequest } from './nodeport-peer.js';
import { RequestChannel } from './request-channel.js';

const PEER = resolve(projectRoot, 'test/kernel/support/nodeport-peer.ts');

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A peer process (nodeport-peer.ts) in one namespace, and its request channel. */
export class Peer extends RequestChannel<PeerRequest> {
  constructor(child: ChildProcess, ready: () => void, failed: (err: Error) => void) {
    super(child, {
      what: 'peer',
      ready: () => ready(),
      failed,
      error: (code, message) => Object.assign(new Error(`${code}: ${message}`), { code }),
    });
  }
}

export interface TopologyNode {
  name: 'node1' | 'node2';
  netns: string;
  /** /run/netns/<netns>, for inNetns and attachNodePort. */
  netnsPath: string;
  address: string;
  uplink: 'eth0';
  podCidr: string;
  pinRoot: string;
}

export interface TopologyPod {
  name: string;
  node: TopologyNode['name'];
  netns: string;
  address: string;
}

export const CLIENT_ADDRESS = '10.251.0.10';
/** The client's and node1's ends of the second, direct link (node1's device eth1). */
export const CLIENT_SECOND_ADDRESS = '10.251.3.10';
export const NODE1_SECOND_ADDRESS = '10.251.3.1';
/** Routed by the client to node1: ExternalIP and LoadBalancer ingress addresses live here. */
export const EXTERNAL_RANGE = '10.251.100.0/24';
/** Routed by the client to node1 too: a ClusterIP must not be balanced on the uplink. */
export const CLUSTER_IP_RANGE = '10.251.200.0/24';

export class NodePortTopology {
  readonly tag: string;
  readonly lan: string;
  readonly client: string;
  readonly nodes: Record<TopologyNode['name'], TopologyNode>;
  readonly pods: TopologyPod[];
  private readonly namespaces: string[] = [];
  private readonly peers: Peer[] = [];

  private constructor(tag: string) {
    this.tag = tag;
    this.lan = `${tag}-lan`;
    this.client = `${tag}-client`;
    const node = (name: TopologyNode['name'], n: number): TopologyNode => ({
      name,
      netns: `${tag}-${name}`,
      netnsPath: `/run/netns/${tag}-${name}`,
      address: `10.251.0.${n}`,
      uplink: 'eth0',
      podCidr: `10.251.${n}.0/24`,
      pinRoot: `/sys/fs/bpf/${tag}/${name}`,
    });
    this.nodes = { node1: node('node1', 1), node2: node('node2', 2) };
    this.pods = [
      { name: 'pod-a', node: 'node1', netns: `${tag}-pod-a`, address: '10.251.1.10' },
      { name: 'pod-b', node: 'node1', netns: `${tag}-pod-b`, address: '10.251.1.11' },
      { name: 'pod-c', node: 'node2', netns: `${tag}-pod-c`, address: '10.251.2.10' },
    ];
  }

  /** Builds every namespace, link, address and route; on failure removes what it made. */
  static create(tag: string): NodePortTopology {
    if (!tag.startsWith('weft-kt-np-')) throw new Error(`topology tag ${tag} must start with weft-kt-np-`);
    checkEnvironment();
    const t = new NodePortTopology(tag);
    try {
      t.build();
    } catch (err) {
      t.removeAll();
      throw err;
    }
    return t;
  }

  private addNetns(name: string): void {
    ip('netns', 'add', name);
    this.namespaces.push(name);
    ip('-n', name, 'link', 'set', 'lo', 'up');
  }

  private build(): void {
    this.addNetns(this.lan);
    ip('-n', this.lan, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', this.lan, 'link', 'set', 'br0', 'up');
    const attachToLan = (ns: string, port: string, address: string) => {
      this.addNetns(ns);
      ip('-n', this.lan, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip('-n', this.lan, 'link', 'set', port, 'master', 'br0', 'up');
      ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
    };
    attachToLan(this.client, 'c0', CLIENT_ADDRESS);
    ip('-n', this.client, 'route', 'add', EXTERNAL_RANGE, 'via', this.nodes.node1.address);
    ip('-n', this.client, 'route', 'add', CLUSTER_IP_RANGE, 'via', this.nodes.node1.address);

    for (const node of Object.values(this.nodes)) {
      attachToLan(node.netns, `n${node.name.slice(-1)}`, node.address);
      execFileSync('ip', ['netns', 'exec', node.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      const gateway = node.podCidr.replace(/0\/24$/, '1');
      ip('-n', node.netns, 'link', 'add', 'cbr0', 'type', 'bridge');
      ip('-n', node.netns, 'addr', 'add', `${gateway}/24`, 'dev', 'cbr0');
      ip('-n', node.netns, 'link', 'set', 'cbr0', 'up');
      const other = node.name === 'node1' ? this.nodes.node2 : this.nodes.node1;
      ip('-n', node.netns, 'route', 'add', other.podCidr, 'via', other.address);
    }
    // node1's second uplink: a direct veth to the client.
    ip(
      '-n',
      this.client,
      'link',
      'add',
      'eth1',
      'type',
      'veth',
      'peer',
      'name',
      'eth1',
      'netns',
      this.nodes.node1.netns,
    );
    ip('-n', this.client, 'addr', 'add', `${CLIENT_SECOND_ADDRESS}/24`, 'dev', 'eth1');
    ip('-n', this.nodes.node1.netns, 'addr', 'add', `${NODE1_SECOND_ADDRESS}/24`, 'dev', 'eth1');
    ip('-n', this.client, 'link', 'set', 'eth1', 'up');
    ip('-n', this.nodes.node1.netns, 'link', 'set', 'eth1', 'up');

    for (const pod of this.pods) {
      const node = this.nodes[pod.node];
      const hostSide = `veth-${pod.name.slice(-1)}`;
      this.addNetns(pod.netns);
      ip(
        '-n',
        node.netns,
        'link',
        'add',
        hostSide,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        pod.netns,
      );
      ip('-n', node.netns, 'link', 'set', hostSide, 'master', 'cbr0', 'up');
      ip('-n', pod.netns, 'addr', 'add', `${pod.address}/24`, 'dev', 'eth0');
      ip('-n', pod.netns, 'link', 'set', 'eth0', 'up');
      ip('-n', pod.netns, 'route', 'add', 'default', 'via', node.podCidr.replace(/0\/24$/, '1'));
    }
  }

  /** Adds an address to a namespace's loopback (a server on the node itself listens there). */
  addLoopbackAddress(netns: string, address: string): void {
    ip('-n', netns, 'addr', 'add', `${address}/32`, 'dev', 'lo');
  }

  /** A peer process in `netns`, ready for requests. */
  async peer(netns: string): Promise<Peer> {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '--import', 'tsx', PEER], {
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: projectRoot,
    });
    let peer: Peer | undefined;
    await new Promise<void>((ready, failed) => {
      peer = new Peer(child, ready, failed);
      this.peers.push(peer);
    });
    return peer!;
  }

  /** Stops every peer, deletes every namespace (their links go with them) and the pins. */
  async destroy(): Promise<void> {
    await Promise.allSettled(this.peers.map((p) => p.stop()));
    this.removeAll();
  }

  private removeAll(): void {
    const problems: string[] = [];
    for (const p of this.peers) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    }
    for (const ns of [...this.namespaces].reverse()) {
      try {
        ip('netns', 'del', ns);
      } catch (err) {
        problems.push(`netns ${ns}: ${(err as Error).message}`);
      }
    }
    try {
      rmSync(`/sys/fs/bpf/${this.tag}`, { recursive: true, force: true });
    } catch (err) {
      problems.push(`pins: ${(err as Error).message}`);
    }
    if (problems.length > 0) process.stderr.write(`topology ${this.tag} cleanup: ${problems.join('; ')}\n`);
  }
}
