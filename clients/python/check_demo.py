"""Checks the Python client against a running `ecs-gateway demo` (CI runs it
through clients/run.sh): a success, an INVALID_ARGUMENT with its BadRequest
field violations, a PERMISSION_DENIED with its ErrorInfo metadata, a call
retried with the same client_token, AuthorizationService/Explain, and server
reflection.

Usage: python check_demo.py HOST:PORT   (the stubs' directory on PYTHONPATH)
"""

import sys

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ecs_gateway_client import Gateway, GatewayError
from ecsgateway.v1 import authorization_pb2 as authz
from ecsgateway.v1 import authorization_pb2_grpc as authz_grpc
from ecsgateway.v1 import instance_network_pb2 as pb


def as_caller(spiffe_id):
    # The demo trusts a sidecar's x-forwarded-client-cert, as a gateway behind
    # a mesh does; the sidecar also says where the call came from.
    return [("x-forwarded-client-cert", f"URI={spiffe_id}"), ("x-forwarded-for", "127.0.0.1")]


def expect_error(call, code):
    try:
        call()
    except GatewayError as error:
        assert error.code == code, f"expected {code.name}, got {error}"
        return error
    raise AssertionError(f"expected {code.name}, the call succeeded")


def main(address):
    channel = grpc.insecure_channel(address)
    netops = Gateway(channel, as_caller("spiffe://demo.local/sa/netops"))
    webapp = Gateway(channel, as_caller("spiffe://demo.local/sa/webapp"))

    ok = netops.modify_instance_network_spec(pb.ModifyInstanceNetworkSpecRequest(
        region_id="cn-hangzhou", instance_id="i-demo-postpaid", internet_max_bandwidth_out=10))
    assert len(ok.request_id) == 36 and len(ok.client_token) == 36, ok
    print(f"success: request_id {ok.request_id}, client_token {ok.client_token}")

    invalid = expect_error(lambda: netops.modify_instance_network_spec(pb.ModifyInstanceNetworkSpecRequest(
        region_id="cn-hangzhou", instance_id="i-demo-postpaid", internet_max_bandwidth_out=500,
        client_token="é")), grpc.StatusCode.INVALID_ARGUMENT)
    fields = {field: reason for field, reason, _ in invalid.field_violations}
    assert fields == {
        "internet_max_bandwidth_out": "InvalidInternetMaxBandwidthOut.ValueNotSupported",
        "client_token": "InvalidClientToken.ValueNotSupported",
    }, invalid.field_violations
    assert invalid.reason == "InvalidInternetMaxBandwidthOut.ValueNotSupported", invalid
    print(f"INVALID_ARGUMENT: field violations {sorted(fields.items())}")

    denied = expect_error(lambda: webapp.modify_instance_network_spec(pb.ModifyInstanceNetworkSpecRequest(
        region_id="cn-hangzhou", instance_id="i-demo-stopped", internet_max_bandwidth_out=5,
        allocate_public_ip=True)), grpc.StatusCode.PERMISSION_DENIED)
    assert denied.reason == "AccessDenied", denied
    assert denied.metadata["DeterminingPolicies"] == "control.no-public-ip-for-app-teams", denied.metadata
    assert denied.metadata["NoPermissionType"] == "ExplicitDeny", denied.metadata
    print(f"PERMISSION_DENIED: {denied.metadata['NoPermissionType']} by {denied.metadata['DeterminingPolicies']}")

    request = pb.ModifyInstanceNetworkSpecRequest(
        region_id="cn-hangzhou", instance_id="i-demo-prepaid", internet_max_bandwidth_out=20,
        client_token="python-client-check-1")
    first = netops.modify_instance_network_spec(request)
    again = netops.modify_instance_network_spec(request)
    assert (again.order_id, again.client_token) == (first.order_id, first.client_token), (first, again)
    assert first.order_id and again.request_id != first.request_id, (first, again)
    print(f"retried with client_token {first.client_token}: the same order {first.order_id}, applied once")
    request.internet_max_bandwidth_out = 30
    mismatch = expect_error(lambda: netops.modify_instance_network_spec(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert mismatch.reason == "IdempotentParameterMismatch", mismatch
    print("the same client_token with other parameters: IdempotentParameterMismatch")

    # Why was webapp denied? Capacity planners may simulate app teams.
    explainer = authz_grpc.AuthorizationServiceStub(channel)
    explained = explainer.Explain(authz.ExplainRequest(
        request=pb.ModifyInstanceNetworkSpecRequest(
            region_id="cn-hangzhou", instance_id="i-demo-stopped", internet_max_bandwidth_out=5,
            allocate_public_ip=True),
        identity=authz.SimulatedIdentity(spiffe_id="spiffe://demo.local/sa/webapp")),
        metadata=as_caller("spiffe://demo.local/sa/capacity"), timeout=10)
    assert explained.verdict == authz.VERDICT_EXPLICIT_DENY, explained
    assert explained.denied.layer == authz.POLICY_LAYER_CONTROL, explained
    assert list(explained.denied.policies) == ["control.no-public-ip-for-app-teams"], explained
    assert len(explained.results) == 4, explained
    print(f"Explain: {authz.Verdict.Name(explained.verdict)} by {list(explained.denied.policies)}, "
          f"{len(explained.results)} results (every action and layer)")

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(reflection.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="ecsgateway.v1.InstanceNetworkService"),
    ])))
    services = {s.name for s in answers[0].list_services_response.service}
    assert {"ecsgateway.v1.InstanceNetworkService", "ecsgateway.v1.AuthorizationService",
            "grpc.health.v1.Health"} <= services, services
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in answers[1].file_descriptor_response.file_descriptor_proto]
    gateway = next(f for f in files if f.package == "ecsgateway.v1")
    assert gateway.name == "ecsgateway/v1/instance_network.proto", gateway.name
    assert [s.name for s in gateway.service] == ["InstanceNetworkService"], gateway.service
    print(f"reflection: services {sorted(services)}; {gateway.name} with {len(gateway.message_type)} messages")
    print("python client: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
