// Another process using the same binding on the same pinned objects, as a restarted agent or
// `weft bpf lb list` would:
//   lb-peer.ts dump <pinRoot>                      prints {frontends, backends} as JSON
//   lb-peer.ts add <pinRoot> <frontend JSON>       applies one frontend
//   lb-peer.ts attach <pinRoot> <cgroup>           attaches the socket LB with pinned links, exits
import { mkdirSync } from 'node:fs';
import { attachCgroup } from '../../../src/datapath/cgroup.js';
import { type LbFrontend, LbMaps } from '../../../src/datapath/lbmap.js';
import { BpfObject } from '../../../src/datapath/object.js';
import { bpfObjectPath } from '../../../src/shared/self.js';
import { sockLbPrograms } from './socklb.js';

const [op, pinRoot, arg] = process.argv.slice(2);
if (!pinRoot) throw new Error('usage: lb-peer.ts dump|add|attach <pinRoot> [arg]');

if (op === 'dump' || op === 'add') {
  const lb = LbMaps.openPinned(pinRoot);
  try {
    if (op === 'add') lb.applyFrontends([JSON.parse(arg!) as LbFrontend]);
    else process.stdout.write(`${JSON.stringify({ frontends: lb.frontends(), backends: lb.backends() })}\n`);
  } finally {
    lb.close();
  }
} else if (op === 'attach') {
  const obj = BpfObject.open(bpfObjectPath('sock_lb.bpf.o'), { pinRoot });
  try {
    obj.load();
    mkdirSync(`${pinRoot}/links`, { recursive: true });
    for (const name of sockLbPrograms) {
      attachCgroup(obj.program(name), arg!, { pinPath: `${pinRoot}/links/${name}` }).close();
    }
  } finally {
    obj.close();
  }
} else {
  throw new Error(`unknown op ${op}`);
}
