"""A small client for ecs-gateway, to copy into your service.

It calls ModifyInstanceNetworkSpec with stubs generated from proto/
(generate.sh), reads the rich error details the gateway sends
(google.rpc.ErrorInfo, BadRequest, RetryInfo), and retries safely: every
attempt carries the same client_token, so ECS applies the change at most
once.
"""

import dataclasses
import time
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ecsgateway.v1 import instance_network_pb2 as pb
from ecsgateway.v1 import instance_network_pb2_grpc as pb_grpc

# Codes worth retrying with the same client_token.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclasses.dataclass
class GatewayError(Exception):
    """A refused call, with the gateway's details decoded."""

    code: grpc.StatusCode
    message: str
    # ErrorInfo: the ECS or gateway error code, its domain and metadata
    # (request_id, client_token, AuthAction, DeterminingPolicies, ...).
    reason: str = ""
    domain: str = ""
    metadata: dict = dataclasses.field(default_factory=dict)
    # BadRequest: (field, reason, description) for each invalid field.
    field_violations: list = dataclasses.field(default_factory=list)
    # RetryInfo: seconds to wait before retrying with the same client_token.
    retry_after: float | None = None

    def __str__(self):
        return f"{self.code.name}: {self.reason}: {self.message}"


def decode(error: grpc.RpcError) -> GatewayError:
    """Turns a gRPC error into a GatewayError with every detail decoded."""
    decoded = GatewayError(code=error.code(), message=error.details() or "")
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            decoded.reason, decoded.domain = info.reason, info.domain
            decoded.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            decoded.field_violations = [(v.field, v.reason, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            decoded.retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    return decoded


class Gateway:
    """The gateway's InstanceNetworkService, with safe retries.

    `metadata` is sent with every call: behind a mesh, the sidecar adds the
    caller's identity; with JWTs, pass [("authorization", "Bearer <jwt>")].
    """

    def __init__(self, channel: grpc.Channel, metadata=(), attempts=3, timeout=10.0):
        self.stub = pb_grpc.InstanceNetworkServiceStub(channel)
        self.metadata = tuple(metadata)
        self.attempts = attempts
        self.timeout = timeout

    def modify_instance_network_spec(self, request: pb.ModifyInstanceNetworkSpecRequest):
        """Calls the gateway; retries what can be retried, with one token.

        Returns the response (order_id, request_id, client_token); raises
        GatewayError with the decoded details otherwise.
        """
        if not request.client_token:
            request.client_token = str(uuid.uuid4())
        for attempt in range(1, self.attempts + 1):
            try:
                return self.stub.ModifyInstanceNetworkSpec(request, metadata=self.metadata, timeout=self.timeout)
            except grpc.RpcError as error:
                decoded = decode(error)
                # Throttling asks for minutes: that is the caller's to wait
                # out, not this loop's.
                wait = decoded.retry_after if decoded.retry_after is not None else 0.2 * attempt
                if decoded.code not in RETRYABLE or attempt == self.attempts or wait > 30:
                    raise decoded from None
                time.sleep(wait)
        raise AssertionError("unreachable")
