/**
 * Go's standard logger, which is what agnhost writes its container logs with:
 * "2006/01/02 15:04:05 message" on stderr, local time. Tests and people reading
 * `kubectl logs` of an agnhost pod see the same lines as with the real image.
 */
export type LogLine = (message: string) => void;

export function goLogTimestamp(now: Date = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${now.getFullYear()}/${pad(now.getMonth() + 1)}/${pad(now.getDate())} ${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
}

export const goLog: LogLine = (message) => {
  process.stderr.write(`${goLogTimestamp()} ${message.endsWith('\n') ? message : `${message}\n`}`);
};
