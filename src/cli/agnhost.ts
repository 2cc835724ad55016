/**
 * `weft agnhost <subcommand> [flags]` (hidden): what devcluster pods run for containers whose
 * image is registry.k8s.io/e2e-test-images/agnhost. See docs/agnhost.md.
 */
export async function run(args: string[]): Promise<number> {
  const { runAgnhost } = await import('../devcluster/agnhost/command.js');
  const code = await runAgnhost(args);
  // agnhost ends the way Go's os.Exit does: at once, whatever is still open (in-flight /dial
  // requests, /shell children, idle keep-alive connections).
  process.exit(code);
}
