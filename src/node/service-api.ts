import type { z } from 'zod'
import { API_PREFIX } from '../adapters/api-types.js'
import { isWeftError } from '../log/errors.js'
import { formatZodIssues } from '../log/event.js'
import { ServiceError, type LocalServices } from './local-services.js'
import {
  ConnectRequestSchema, DisconnectRequestSchema, ExposeRequestSchema, SERVICE_ROUTES, UnexposeRequestSchema,
  type ConnectResponse, type DisconnectResponse, type ExposeResponse, type ServicesResponse, type UnexposeResponse
} from './service-api-types.js'

/**
 * The service routes of the daemon's HTTP API, as plain functions `(body, ctx) → answer` for
 * the server to mount (payloads in ./service-api-types.ts, docs/api.md). Every failure is a
 * ServiceError carrying its HTTP status and error code: 400 bad_request, 404 not_found,
 * 409 conflict.
 */

export interface ServiceApiContext { services: LocalServices }

export type ServiceMethod = 'GET' | 'POST' | 'DELETE'
/** `body` is the parsed JSON body (undefined for GET). */
export type ServiceHandler = (body: unknown, ctx: ServiceApiContext) => Promise<unknown>

function parse<S extends z.ZodType> (schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body)
  if (!r.success) throw new ServiceError(400, 'bad_request', `bad body: ${formatZodIssues(r.error)}`)
  return r.data
}

/** WeftErrors from validation become 400/404; ServiceErrors pass; anything else is a 500 for the server. */
async function guarded<T> (fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof ServiceError) throw err
    if (isWeftError(err, 'ERR_BAD_INPUT')) throw new ServiceError(400, 'bad_request', err.message)
    if (isWeftError(err, 'ERR_NOT_FOUND')) throw new ServiceError(404, 'not_found', err.message)
    throw err
  }
}

/** GET /services */
export async function listServicesRoute (_body: unknown, ctx: ServiceApiContext): Promise<ServicesResponse> {
  return await guarded(() => ctx.services.list())
}

/** POST /services/expose {name, target, namespace?, port?} */
export async function exposeRoute (body: unknown, ctx: ServiceApiContext): Promise<ExposeResponse> {
  return await guarded(async () => await ctx.services.expose(parse(ExposeRequestSchema, body)))
}

/** DELETE /services/expose {name, namespace?} */
export async function unexposeRoute (body: unknown, ctx: ServiceApiContext): Promise<UnexposeResponse> {
  return await guarded(async () => await ctx.services.unexpose(parse(UnexposeRequestSchema, body)))
}

/** POST /services/connect {name, listen, namespace?, port?} */
export async function connectRoute (body: unknown, ctx: ServiceApiContext): Promise<ConnectResponse> {
  return await guarded(async () => await ctx.services.connect(parse(ConnectRequestSchema, body)))
}

/** DELETE /services/connect {listen} or {name, namespace?} */
export async function disconnectRoute (body: unknown, ctx: ServiceApiContext): Promise<DisconnectResponse> {
  return await guarded(async () => await ctx.services.disconnect(parse(DisconnectRequestSchema, body)))
}

/** Full path → method → handler, for the server's route table. */
export const serviceRoutes: ReadonlyArray<[string, Partial<Record<ServiceMethod, ServiceHandler>>]> = [
  [`${API_PREFIX}${SERVICE_ROUTES.list}`, { GET: listServicesRoute }],
  [`${API_PREFIX}${SERVICE_ROUTES.expose}`, { POST: exposeRoute, DELETE: unexposeRoute }],
  [`${API_PREFIX}${SERVICE_ROUTES.connect}`, { POST: connectRoute, DELETE: disconnectRoute }]
]
