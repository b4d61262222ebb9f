// One call to ecs-gateway from TypeScript on Node, and what its errors say.
//
// Usage: node dist/example.js http://HOST:PORT   (after npm run generate && npm run build)

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InstanceNetworkService } from "./gen/ecsgateway/v1/instance_network_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

// Who is calling: the demo trusts a mesh sidecar's headers (`call --as` sends
// the same). With mTLS, give the transport your certificate instead; with a
// JWT, send { authorization: "Bearer <jwt>" }.
const netops = {
  "x-forwarded-client-cert": "URI=spiffe://demo.local/sa/netops",
  "x-forwarded-for": "127.0.0.1",
};

async function main(baseUrl: string): Promise<void> {
  const client = createClient(InstanceNetworkService, createGrpcTransport({ baseUrl }));
  for (const internetMaxBandwidthOut of [10, 500]) {
    try {
      const answer = await client.modifyInstanceNetworkSpec(
        { regionId: "cn-hangzhou", instanceId: "i-demo-postpaid", internetMaxBandwidthOut },
        { headers: netops, timeoutMs: 10_000 },
      );
      console.log("applied: requestId", answer.requestId, "clientToken", answer.clientToken);
    } catch (e) {
      const err = ConnectError.from(e);
      console.log("refused:", Code[err.code], err.rawMessage);
      const info = err.findDetails(ErrorInfoSchema)[0];
      if (info) console.log("  reason:", info.reason, info.metadata);
      for (const v of err.findDetails(BadRequestSchema)[0]?.fieldViolations ?? []) {
        console.log("  field:", v.field, v.reason, v.description);
      }
    }
  }
}

await main(process.argv[2] ?? "http://127.0.0.1:50051");
