// Loads bpf/dist/sock_lb.bpf.o the way the agent will: maps pinned under the sandbox's pin
// root, every program attached to a cgroup with a BPF link. close() detaches and frees all.
import { attachCgroup, type BpfLink } from '../../../src/datapath/cgroup.js';
import { LbMaps, sockLbPrograms } from '../../../src/datapath/lbmap.js';
import { BpfObject } from '../../../src/datapath/object.js';
import { bpfObjectPath } from '../../../src/shared/self.js';

export { sockLbPrograms };

export interface LoadedSockLb {
  obj: BpfObject;
  lb: LbMaps;
  links: BpfLink[];
  close(): void;
}

export function loadSockLb(pinRoot: string, cgroup: string): LoadedSockLb {
  const obj = BpfObject.open(bpfObjectPath('sock_lb.bpf.o'), { pinRoot });
  const links: BpfLink[] = [];
  let lb: LbMaps | undefined;
  const close = () => {
    for (const link of links.splice(0)) {
      try {
        link.detach();
      } finally {
        link.close();
      }
    }
    lb?.close();
    obj.close();
  };
  try {
    obj.load();
    lb = LbMaps.fromObject(obj);
    for (const name of sockLbPrograms) links.push(attachCgroup(obj.program(name), cgroup));
    return { obj, lb, links, close };
  } catch (err) {
    close();
    throw err;
  }
}

/** CLOCK_MONOTONIC in whole seconds: the clock of lb_affinity.last_used (bpf_ktime_get_ns). */
export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n);
}
