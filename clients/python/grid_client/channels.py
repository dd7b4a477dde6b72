"""How a client reaches a grid: its credentials (TLS, mutual TLS, an API key or a
bearer token) and the channel they open, plaintext or TLS."""

import dataclasses
import os

import grpc


@dataclasses.dataclass(frozen=True)
class Credentials:
    """How a client reaches a secured grid: TLS (trusting root_certificates, or the
    system's roots when tls is set without them), a client certificate for mutual
    TLS, and an API key or a bearer token (a signed JWT) naming tenant and scopes."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    api_key: str | None = None
    token: str | None = None
    tls: bool = False
    # The name the grid's certificate was issued to, when it is not the target's host.
    server_name: str | None = None

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.root_certificates is not None

    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        if self.api_key:
            return (("x-api-key", self.api_key),)
        if self.token:
            return (("authorization", f"Bearer {self.token}"),)
        return None

    @classmethod
    def from_environment(cls, environ=os.environ) -> "Credentials":
        """GRID_TLS_CA, GRID_TLS_CERT, GRID_TLS_KEY (PEM file paths), GRID_TLS=1 (system
        roots), GRID_TLS_SERVER_NAME, GRID_API_KEY, GRID_TOKEN."""
        def read(name: str) -> bytes | None:
            path = environ.get(name)
            if not path:
                return None
            with open(path, "rb") as file:
                return file.read()

        return cls(read("GRID_TLS_CA"), read("GRID_TLS_CERT"), read("GRID_TLS_KEY"),
                   environ.get("GRID_API_KEY") or None, environ.get("GRID_TOKEN") or None,
                   environ.get("GRID_TLS", "") not in ("", "0"), environ.get("GRID_TLS_SERVER_NAME") or None)


def make_channel(target: str, credentials: Credentials | None = None, *, aio: bool = False, options=()):
    """A channel to the grid: TLS when the credentials say so, else plaintext."""
    module = grpc.aio if aio else grpc
    options = list(options)
    if credentials is None or not credentials.uses_tls:
        return module.insecure_channel(target, options=options)
    if credentials.server_name:
        options.append(("grpc.ssl_target_name_override", credentials.server_name))
    channel_credentials = grpc.ssl_channel_credentials(
        credentials.root_certificates, credentials.private_key, credentials.certificate_chain)
    return module.secure_channel(target, channel_credentials, options=options)
