/**
 * argv that runs a command inside a network namespace and a cgroup, with nothing escaping
 * either: a tiny sh writes its own PID into the cgroup first, then execs nsenter, which
 * enters the namespace and execs the command. The command keeps the PID that was spawned,
 * so the PID we record is the container's.
 */
const WRAPPER = 'echo $$ > "$1/cgroup.procs" || exit 126; ns=$2; shift 2; exec nsenter --net="$ns" -- "$@"';

export function sandboxArgv(cgroupDir: string, netnsPath: string, command: string[]): string[] {
  return ['sh', '-c', WRAPPER, 'weft-sandbox', cgroupDir, netnsPath, ...command];
}

export function netnsPath(netns: string): string {
  return `/run/netns/${netns}`;
}
