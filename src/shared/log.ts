import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The process-wide logger: pino JSON on stderr (stdout belongs to command output), one child
 * per subsystem: `logger.child({ subsys: 'services' })`. WEFT_LOG_LEVEL sets the level.
 */
export const logger: Logger = pino(
  {
    level: process.env.WEFT_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  },
  pino.destination({ fd: 2, sync: false }),
);

export function subsysLogger(subsys: string, bindings: Record<string, unknown> = {}): Logger {
  return logger.child({ subsys, ...bindings });
}
