// A small client for ecs-gateway, to copy into your service.
//
// It calls ModifyInstanceNetworkSpec over gRPC (Connect's Node transport,
// stubs generated from proto/ with protoc-gen-es), decodes the rich error
// details the gateway sends (google.rpc.ErrorInfo, BadRequest, RetryInfo),
// and retries safely: every attempt carries the same client_token, so ECS
// applies the change at most once.

import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import {
  InstanceNetworkService,
  ModifyInstanceNetworkSpecRequestSchema,
  type ModifyInstanceNetworkSpecResponse,
} from "./gen/ecsgateway/v1/instance_network_pb.js";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** Codes worth retrying with the same client_token. */
const RETRYABLE = new Set([Code.Unavailable, Code.Aborted, Code.ResourceExhausted, Code.DeadlineExceeded]);

/** A refused call, with the gateway's details decoded. */
export class GatewayError extends Error {
  constructor(
    readonly code: Code,
    message: string,
    /** ErrorInfo's reason: the ECS or gateway error code. */
    readonly reason: string,
    /** ErrorInfo's metadata: request_id, client_token, AuthAction, DeterminingPolicies, … */
    readonly metadata: Record<string, string>,
    /** BadRequest: each invalid field with its code and what was expected. */
    readonly fieldViolations: { field: string; reason: string; description: string }[],
    /** RetryInfo: milliseconds to wait before retrying with the same client_token. */
    readonly retryAfterMs: number | undefined,
  ) {
    super(`${Code[code]}: ${reason}: ${message}`);
  }
}

/** Turns any error from a call into a GatewayError with every detail decoded. */
export function decode(error: unknown): GatewayError {
  const err = ConnectError.from(error);
  const info = err.findDetails(ErrorInfoSchema)[0];
  const bad = err.findDetails(BadRequestSchema)[0];
  const retry = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return new GatewayError(
    err.code,
    err.rawMessage,
    info?.reason ?? "",
    info?.metadata ?? {},
    (bad?.fieldViolations ?? []).map((v) => ({ field: v.field, reason: v.reason, description: v.description })),
    retry ? Number(retry.seconds) * 1000 + retry.nanos / 1e6 : undefined,
  );
}

/** The gateway's InstanceNetworkService, with safe retries. */
export class Gateway {
  private readonly client: Client<typeof InstanceNetworkService>;

  /**
   * `headers` go with every call: behind a mesh the sidecar adds the caller's
   * identity; with JWTs, pass { authorization: "Bearer <jwt>" }.
   */
  constructor(
    transport: Transport,
    private readonly headers: Record<string, string> = {},
    private readonly attempts = 3,
    private readonly timeoutMs = 10_000,
  ) {
    this.client = createClient(InstanceNetworkService, transport);
  }

  /**
   * Calls the gateway; retries what can be retried, with one client_token.
   * Resolves to the response (orderId, requestId, clientToken); rejects with
   * a GatewayError otherwise.
   */
  async modifyInstanceNetworkSpec(
    init: MessageInitShape<typeof ModifyInstanceNetworkSpecRequestSchema>,
  ): Promise<ModifyInstanceNetworkSpecResponse> {
    const request = create(ModifyInstanceNetworkSpecRequestSchema, init);
    request.clientToken ||= randomUUID();
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.client.modifyInstanceNetworkSpec(request, {
          headers: this.headers,
          timeoutMs: this.timeoutMs,
        });
      } catch (error) {
        const decoded = decode(error);
        // Throttling asks for minutes: the caller's to wait out, not this loop's.
        const wait = decoded.retryAfterMs ?? 200 * attempt;
        if (!RETRYABLE.has(decoded.code) || attempt >= this.attempts || wait > 30_000) {
          throw decoded;
        }
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }
}
