import { agentUsage, parseAgentArgs } from '../agent/config.js';
import { subsysLogger } from '../shared/log.js';

/**
 * `weft agent`: runs the node agent until SIGTERM or SIGINT. Stopping leaves the datapath in
 * place (pinned maps and links), so the node keeps load-balancing until the next agent starts.
 */
export async function run(args: string[]): Promise<number> {
  const config = parseAgentArgs(args);
  if (config === 'help') {
    process.stdout.write(agentUsage);
    return 0;
  }
  const log = subsysLogger('agent', { node: config.nodeName });
  // A stray rejection is a bug to log, not a reason to drop the node's load-balancing.
  process.on('unhandledRejection', (err) => {
    log.error({ err: err instanceof Error ? err.stack : String(err) }, 'unhandled promise rejection');
  });
  // Loaded only now: the agent's modules (client-node, the datapath) cost about a second of
  // start-up that `--help` and a flag error need not pay.
  const { Agent } = await import('../agent/agent.js');
  const agent = await Agent.start(config);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info({ signal }, 'stopping');
  await agent.stop();
  return 0;
}
