/** The part of a pino logger the mesh uses; tests pass a silent or recording one. */
export interface MeshLogger {
  debug: (obj: object, msg: string) => void
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
  error: (obj: object, msg: string) => void
}

const nothing = (): void => {}
export const silentLogger: MeshLogger = { debug: nothing, info: nothing, warn: nothing, error: nothing }
