"""Standard gRPC health checking and server reflection (DESIGN.md section 10)."""

import grpc
import pytest
from charging.v1 import charging_pb2 as pb
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

pytestmark = pytest.mark.slow

SERVICES = ["charging.v1.ChargingService", "charging.v1.AccountService", "charging.v1.CatalogService"]


@pytest.mark.parametrize("service", ["", *SERVICES])
def test_health_check_is_serving(stubs, service):
    reply = health_pb2_grpc.HealthStub(stubs.channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                             timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_check_of_an_unknown_service_is_not_found(stubs):
    with pytest.raises(grpc.RpcError) as raised:
        health_pb2_grpc.HealthStub(stubs.channel).Check(health_pb2.HealthCheckRequest(service="no.Such"),
                                                         timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(stubs):
    stub = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)
    (reply,) = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=10))
    names = {service.name for service in reply.list_services_response.service}
    assert set(SERVICES) <= names
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_reflection_describes_the_contract(stubs):
    """A client with no generated code learns every method and its types from the server."""
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(stubs.channel))
    for name in SERVICES:
        served = pool.FindServiceByName(name)
        compiled = pb.DESCRIPTOR.services_by_name[name.rsplit(".", 1)[1]]
        assert [(m.name, m.input_type.full_name, m.output_type.full_name) for m in served.methods] == [
            (m.name, m.input_type.full_name, m.output_type.full_name) for m in compiled.methods]
    charge = pool.FindServiceByName("charging.v1.ChargingService").methods_by_name["Charge"]
    assert charge.client_streaming and charge.server_streaming
