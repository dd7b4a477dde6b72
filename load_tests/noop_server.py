"""A no-op charging.v1 server: the transport ceiling the grid is measured against.

It speaks the same ChargingService over the same grpc.aio + uvloop stack as
`grid serve`, and answers Reserve, Debit and the session calls at once with a fixed success, so a
benchmark that drives both with one generator shows what the grid itself costs.
"""

import argparse
import asyncio

import grpc
import uvloop
from charging.v1 import charging_pb2 as pb
from charging.v1 import charging_pb2_grpc as pb_grpc


class NoOpCharging(pb_grpc.ChargingServiceServicer):
    async def Reserve(self, request, context):
        return pb.ReserveResponse(result=pb.SUCCESS, reservation_id="noop", granted_units=request.requested_units,
                                  validity_time_s=300)

    async def Debit(self, request, context):
        return pb.DebitResponse(result=pb.SUCCESS, charge_id="noop")

    async def CreateSession(self, request, context):
        return self._session(request)

    async def UpdateSession(self, request, context):
        return self._session(request)

    async def ReleaseSession(self, request, context):
        return self._session(request)

    @staticmethod
    def _session(request) -> pb.SessionResponse:
        return pb.SessionResponse(
            result=pb.SUCCESS, session_id=request.session_id,
            invocation_sequence_number=request.invocation_sequence_number,
            multiple_unit_information=[
                pb.MultipleUnitInformation(rating_group=u.rating_group, result=pb.SUCCESS,
                                           granted_units=u.requested_units, validity_time_s=300)
                for u in request.multiple_unit_usage
            ],
        )

    async def ChargeBatch(self, request, context):
        return pb.ChargeBatchResponse(replies=[
            pb.ChargeResponse(correlation_tag=message.correlation_tag,
                              debit=pb.DebitResponse(result=pb.SUCCESS, charge_id="noop"))
            for message in request.operations])

    async def Charge(self, request_iterator, context):
        async for message in request_iterator:
            yield pb.ChargeResponse(correlation_tag=message.correlation_tag,
                                    debit=pb.DebitResponse(result=pb.SUCCESS, charge_id="noop"))


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_ChargingServiceServicer_to_server(NoOpCharging(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"noop listening on 127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    uvloop.install()
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
