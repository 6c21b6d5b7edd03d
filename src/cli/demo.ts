/** Placeholder until the demo lands: `weft demo` is registered in main.ts. */
export async function runDemo (_opts: { nodes: number, seed?: number, json: boolean }): Promise<number> {
  throw new Error('not implemented')
}
