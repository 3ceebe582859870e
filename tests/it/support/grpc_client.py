"""One call to matchbox's gRPC API with Google's grpcio: the client the --rpc test uses because
it is not cozyboot's (nor the double's) code.

    grpc_client.py STUBS TARGET CA CERT KEY SERVICE METHOD REQUEST_JSON

STUBS holds the modules grpcio-tools generated from testkit/matchbox-double/proto; CERT and
KEY may be "-" for a client without a certificate. Prints one JSON object: {"ok": true,
"reply": {...}} (proto field names) or {"ok": false, "code": "UNAVAILABLE", "details": "..."}.
"""

import json
import sys


def read(path):
    if path == "-":
        return None
    with open(path, "rb") as f:
        return f.read()


def main():
    stubs, target, ca, cert, key, service, method, request = sys.argv[1:9]
    sys.path.insert(0, stubs)
    import grpc
    from google.protobuf import json_format
    from matchbox.rpc.rpcpb import rpc_pb2, rpc_pb2_grpc
    from matchbox.server.serverpb import messages_pb2

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
    )
    input_type = rpc_pb2.DESCRIPTOR.services_by_name[service].methods_by_name[method].input_type
    message = json_format.Parse(request, getattr(messages_pb2, input_type.name)())
    with grpc.secure_channel(target, credentials) as channel:
        stub = getattr(rpc_pb2_grpc, service + "Stub")(channel)
        try:
            reply = getattr(stub, method)(message, timeout=10)
        except grpc.RpcError as e:
            print(json.dumps({"ok": False, "code": e.code().name, "details": e.details()}))
            return
    reply = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    print(json.dumps({"ok": True, "reply": reply}))


main()
