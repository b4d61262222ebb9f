"""One call to ecs-gateway from Python, and what its errors say.

Usage: python example.py HOST:PORT   (the stubs from generate.sh on PYTHONPATH)
"""

import sys

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ecsgateway.v1 import instance_network_pb2 as pb
from ecsgateway.v1 import instance_network_pb2_grpc as pb_grpc

# Who is calling: the demo trusts a mesh sidecar's headers (`call --as` sends
# the same). With mTLS, use grpc.secure_channel and your certificate instead;
# with a JWT, send ("authorization", "Bearer <jwt>").
NETOPS = [
    ("x-forwarded-client-cert", "URI=spiffe://demo.local/sa/netops"),
    ("x-forwarded-for", "127.0.0.1"),
]


def call(stub, request):
    try:
        answer = stub.ModifyInstanceNetworkSpec(request, metadata=NETOPS, timeout=10)
        print("applied: request_id", answer.request_id, "client_token", answer.client_token)
    except grpc.RpcError as error:
        print("refused:", error.code().name, error.details())
        status = rpc_status.from_call(error)
        for detail in status.details if status else []:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                print("  reason:", info.reason, dict(info.metadata))
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                for violation in bad.field_violations:
                    print("  field:", violation.field, violation.reason, violation.description)


def main(address):
    stub = pb_grpc.InstanceNetworkServiceStub(grpc.insecure_channel(address))
    # Applied.
    call(stub, pb.ModifyInstanceNetworkSpecRequest(
        region_id="cn-hangzhou", instance_id="i-demo-postpaid", internet_max_bandwidth_out=10))
    # Refused: 500 Mbit/s is out of range (INVALID_ARGUMENT with the field).
    call(stub, pb.ModifyInstanceNetworkSpecRequest(
        region_id="cn-hangzhou", instance_id="i-demo-postpaid", internet_max_bandwidth_out=500))


if __name__ == "__main__":
    main(sys.argv[1])
