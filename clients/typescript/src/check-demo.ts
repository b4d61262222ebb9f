// Checks the TypeScript client against a running `ecs-gateway demo` (CI runs
// it through clients/run.sh): a success, an INVALID_ARGUMENT with its
// BadRequest field violations, a PERMISSION_DENIED with its ErrorInfo
// metadata, a call retried with the same client_token, and
// AuthorizationService/Explain.
//
// Usage: node dist/check-demo.js http://HOST:PORT

import assert from "node:assert/strict";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuthorizationService, PolicyLayer, Verdict } from "./gen/ecsgateway/v1/authorization_pb.js";
import { Gateway, GatewayError } from "./client.js";

/** The demo trusts a sidecar's x-forwarded-client-cert, as a gateway behind a mesh does. */
function asCaller(spiffeId: string): Record<string, string> {
  return { "x-forwarded-client-cert": `URI=${spiffeId}`, "x-forwarded-for": "127.0.0.1" };
}

async function expectError(call: () => Promise<unknown>, code: Code): Promise<GatewayError> {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof GatewayError, String(error));
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected ${Code[code]}, the call succeeded`);
}

async function main(baseUrl: string): Promise<void> {
  const transport = createGrpcTransport({ baseUrl });
  const netops = new Gateway(transport, asCaller("spiffe://demo.local/sa/netops"));
  const webapp = new Gateway(transport, asCaller("spiffe://demo.local/sa/webapp"));

  const ok = await netops.modifyInstanceNetworkSpec({
    regionId: "cn-hangzhou",
    instanceId: "i-demo-postpaid",
    internetMaxBandwidthOut: 12,
  });
  assert.equal(ok.requestId.length, 36);
  assert.equal(ok.clientToken.length, 36);
  console.log(`success: requestId ${ok.requestId}, clientToken ${ok.clientToken}`);

  const invalid = await expectError(
    () =>
      netops.modifyInstanceNetworkSpec({
        regionId: "cn-hangzhou",
        instanceId: "i-demo-postpaid",
        internetMaxBandwidthOut: 500,
        clientToken: "é",
      }),
    Code.InvalidArgument,
  );
  assert.deepEqual(
    Object.fromEntries(invalid.fieldViolations.map((v) => [v.field, v.reason])),
    {
      internet_max_bandwidth_out: "InvalidInternetMaxBandwidthOut.ValueNotSupported",
      client_token: "InvalidClientToken.ValueNotSupported",
    },
  );
  console.log(`INVALID_ARGUMENT: ${invalid.fieldViolations.map((v) => `${v.field} [${v.reason}]`).join(", ")}`);

  const denied = await expectError(
    () =>
      webapp.modifyInstanceNetworkSpec({
        regionId: "cn-hangzhou",
        instanceId: "i-demo-stopped",
        internetMaxBandwidthOut: 5,
        allocatePublicIp: true,
      }),
    Code.PermissionDenied,
  );
  assert.equal(denied.reason, "AccessDenied");
  assert.equal(denied.metadata["DeterminingPolicies"], "control.no-public-ip-for-app-teams");
  assert.equal(denied.metadata["NoPermissionType"], "ExplicitDeny");
  console.log(`PERMISSION_DENIED: ${denied.metadata["NoPermissionType"]} by ${denied.metadata["DeterminingPolicies"]}`);

  const request = {
    regionId: "cn-hangzhou",
    instanceId: "i-demo-prepaid",
    internetMaxBandwidthOut: 25,
    clientToken: "typescript-client-check-1",
  };
  const first = await netops.modifyInstanceNetworkSpec(request);
  const again = await netops.modifyInstanceNetworkSpec(request);
  assert.ok(first.orderId !== "");
  assert.equal(again.orderId, first.orderId);
  assert.equal(again.clientToken, first.clientToken);
  assert.notEqual(again.requestId, first.requestId);
  console.log(`retried with clientToken ${first.clientToken}: the same order ${first.orderId}, applied once`);

  const mismatch = await expectError(
    () => netops.modifyInstanceNetworkSpec({ ...request, internetMaxBandwidthOut: 35 }),
    Code.InvalidArgument,
  );
  assert.equal(mismatch.reason, "IdempotentParameterMismatch");
  console.log("the same clientToken with other parameters: IdempotentParameterMismatch");

  // Why was webapp denied? Capacity planners may simulate app teams.
  const explainer = createClient(AuthorizationService, transport);
  const explained = await explainer.explain(
    {
      request: { regionId: "cn-hangzhou", instanceId: "i-demo-stopped", internetMaxBandwidthOut: 5, allocatePublicIp: true },
      identity: { kind: { case: "spiffeId", value: "spiffe://demo.local/sa/webapp" } },
    },
    { headers: asCaller("spiffe://demo.local/sa/capacity"), timeoutMs: 10_000 },
  );
  assert.equal(explained.verdict, Verdict.EXPLICIT_DENY);
  assert.equal(explained.denied?.layer, PolicyLayer.CONTROL);
  assert.deepEqual(explained.denied?.policies, ["control.no-public-ip-for-app-teams"]);
  assert.equal(explained.results.length, 4);
  console.log(`Explain: ${Verdict[explained.verdict]} by ${explained.denied?.policies.join(",")}, ${explained.results.length} results`);
  console.log("typescript client: all checks passed");
}

main(process.argv[2] ?? "http://127.0.0.1:50051").catch((error) => {
  console.error(error);
  process.exit(1);
});
