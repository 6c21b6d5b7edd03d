import type { Settings } from './settings.js'

/** Each setting's value until a `settings.change` sets it (docs/config.md). */
export const DEFAULT_SETTINGS: Settings = {
  overlayCidr: '10.1.0.0/16',
  overlayCidr6: null,
  zone: 'weft.internal',
  minNodes: 1,
  serverCount: 1,
  dynamicRoles: false,
  mtu: 1420
}
