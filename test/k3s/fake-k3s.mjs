#!/usr/bin/env node
// A stand-in for the k3s binary in tests (the real one needs root, a kernel and minutes).
// It appends one JSON line per start to $FAKE_K3S_RECORD: {event: 'start', pid, argv, env (K3S_*, WEFT_*),
// config (the --config file, parsed), configMode}; writes a kubeconfig where the config file's
// `write-kubeconfig` says, as a k3s server does; then stays alive until SIGTERM (recorded as
// {event: 'term', pid}). FAKE_K3S_EXIT_CODE=n makes it exit with n after FAKE_K3S_EXIT_AFTER_MS
// (default 0); FAKE_K3S_IGNORE_TERM=1 makes it ignore SIGTERM (only SIGKILL stops it).
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { parse } from 'yaml'

const argv = process.argv.slice(2)
const record = (entry) => {
  if (process.env.FAKE_K3S_RECORD) appendFileSync(process.env.FAKE_K3S_RECORD, `${JSON.stringify({ ...entry, pid: process.pid })}\n`)
}

const at = argv.indexOf('--config')
const configPath = at >= 0 ? argv[at + 1] : undefined
let config = null
let configMode = null
if (configPath !== undefined) {
  config = parse(readFileSync(configPath, 'utf8'))
  configMode = (statSync(configPath).mode & 0o777).toString(8)
}
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('K3S_') || k.startsWith('WEFT_')))
record({ event: 'start', argv, env, config, configMode })

const kubeconfig = config?.['write-kubeconfig']
if (typeof kubeconfig === 'string' && argv[0] === 'server') {
  const fake = Buffer.from(`fake certificate of ${process.pid}`).toString('base64')
  writeFileSync(kubeconfig, [
    'apiVersion: v1',
    'clusters:',
    '- cluster:',
    `    certificate-authority-data: ${fake}`,
    '    server: https://127.0.0.1:6443',
    '  name: default',
    'contexts:',
    '- context:',
    '    cluster: default',
    '    user: default',
    '  name: default',
    'current-context: default',
    'kind: Config',
    'preferences: {}',
    'users:',
    '- name: default',
    '  user:',
    `    client-certificate-data: ${fake}`,
    `    client-key-data: ${fake}`,
    ''
  ].join('\n'), { mode: 0o600 })
}

if (process.env.FAKE_K3S_EXIT_CODE !== undefined) {
  setTimeout(() => { process.exit(Number(process.env.FAKE_K3S_EXIT_CODE)) }, Number(process.env.FAKE_K3S_EXIT_AFTER_MS ?? 0))
} else {
  process.on('SIGTERM', () => {
    record({ event: 'term' })
    if (process.env.FAKE_K3S_IGNORE_TERM !== '1') process.exit(0)
  })
  setInterval(() => {}, 1 << 30)
}
