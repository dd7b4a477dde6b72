"""Who is calling and what they may do: the front door's listener rules (TLS,
mutual TLS, plaintext only when asked for), credentials (static API keys and
signed JWT bearer tokens) mapped to a Principal whose tenant scopes every key
it touches, the scope each RPC needs, and request-rate limits per tenant and per
subscriber. Pure except for reading the files it is given.
"""

import collections
import dataclasses
import hashlib
import ipaddress
import json
import math
import pathlib
import threading
import time

from grid.domain.operations import DEFAULT_TENANT

# ---------------------------------------------------------------- scopes

SCOPE_CHARGING = "grid:charging"  # reserve, debit, release, refund, sessions, balances
SCOPE_POLICY = "grid:policy"  # SpendingLimitService (a PCF's policy counters)
SCOPE_ACCOUNTS = "grid:accounts"  # AccountService and TopUp (money in)
SCOPE_CATALOG = "grid:catalog"  # CatalogService
SCOPE_ADMIN = "grid:admin"  # disputes and CDR export of the caller's own tenant
SCOPE_OPERATOR = "grid:operator"  # whole-grid actions: snapshots and the audit
ALL_SCOPES = frozenset({SCOPE_CHARGING, SCOPE_POLICY, SCOPE_ACCOUNTS, SCOPE_CATALOG, SCOPE_ADMIN, SCOPE_OPERATOR})

_SERVICE_SCOPES = {
    "charging.v1.ChargingService": SCOPE_CHARGING,
    "charging.v1.SpendingLimitService": SCOPE_POLICY,
    "charging.v1.AccountService": SCOPE_ACCOUNTS,
    "charging.v1.CatalogService": SCOPE_CATALOG,
    "charging.v1.AdminService": SCOPE_ADMIN,
}
_METHOD_SCOPES = {
    # Putting money in is account administration, not a network function's job.
    "charging.v1.ChargingService/TopUp": SCOPE_ACCOUNTS,
    "charging.v1.ChargingService/Charge.top_up": SCOPE_ACCOUNTS,
    "charging.v1.ChargingService/ChargeBatch.top_up": SCOPE_ACCOUNTS,
    "charging.v1.AdminService/CreateSnapshot": SCOPE_OPERATOR,
    "charging.v1.AdminService/ListSnapshots": SCOPE_OPERATOR,
    "charging.v1.AdminService/RestoreSnapshot": SCOPE_OPERATOR,
    "charging.v1.AdminService/Audit": SCOPE_OPERATOR,
}


def scope_for(method: str) -> str:
    """The scope a call needs; method is "package.Service/Method" (a Charge stream
    operation is "…/Charge.<kind>"). Unknown services need the operator scope."""
    scope = _METHOD_SCOPES.get(method)
    if scope is not None:
        return scope
    return _SERVICE_SCOPES.get(method.split("/", 1)[0], SCOPE_OPERATOR)


# ---------------------------------------------------------------- principals and errors


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    # Who, for the admin log: an API key's name or a token's subject.
    subject: str
    scopes: frozenset
    # Seconds since the epoch after which the credential is no longer accepted.
    expires_at_s: float = math.inf


ANONYMOUS = Principal(DEFAULT_TENANT, "anonymous", ALL_SCOPES)


class Unauthenticated(Exception):
    """No credential, or one that does not verify: UNAUTHENTICATED."""


class PermissionDenied(Exception):
    """A valid credential without the scope the call needs: PERMISSION_DENIED."""


class ConfigError(ValueError):
    """A security setting or file that cannot be used; the message names it."""


# ---------------------------------------------------------------- the auth file


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    tenant: str
    # Only the SHA-256 of the key is configured: the file grants nothing if read.
    key_sha256: str
    scopes: frozenset


@dataclasses.dataclass(frozen=True, slots=True)
class JwtSettings:
    issuer: str
    audience: str
    # PEM public key (RS*/ES*/EdDSA) or, for HS*, the shared secret; or, instead,
    # a JWK set (the authorization server's published keys, chosen by `kid`).
    key: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    tenant_claim: str = "tenant"
    leeway_s: int = 30
    jwks: dict | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    # Sustained requests per second and the burst allowed above it; 0 = no limit.
    per_s: float = 0.0
    burst: int = 0

    def __post_init__(self) -> None:
        if self.per_s < 0 or self.burst < 0:
            raise ConfigError("a request rate and its burst must be >= 0")
        if self.per_s > 0 and self.burst < 1:
            raise ConfigError("a request rate needs a burst of at least 1 (a bucket of 0 tokens admits nothing)")

    @classmethod
    def of(cls, per_s: float, burst: int = 0) -> "RateLimit":
        """A rate with its burst, the burst defaulting to a second's worth (at least 1)."""
        return cls(float(per_s), burst or (max(1, math.ceil(per_s)) if per_s > 0 else 0))

    @property
    def enabled(self) -> bool:
        return self.per_s > 0


@dataclasses.dataclass(frozen=True, slots=True)
class AuthConfig:
    api_keys: tuple[ApiKey, ...] = ()
    jwt: JwtSettings | None = None
    # Per-tenant request-rate overrides of the grid's default tenant limit.
    tenant_rates: tuple[tuple[str, RateLimit], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys) or self.jwt is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _str(entry: dict, where: str, field: str, required: bool = True) -> str:
    value = entry.get(field, "")
    if not isinstance(value, str) or (required and not value):
        raise ConfigError(f"{where}: {field} must be a non-empty string")
    return value


def _scopes(entry: dict, where: str) -> frozenset:
    scopes = entry.get("scopes")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise ConfigError(f"{where}: scopes must be a non-empty list of scope names")
    unknown = sorted(set(scopes) - ALL_SCOPES)
    if unknown:
        raise ConfigError(f"{where}: scopes: unknown {unknown}; known: {sorted(ALL_SCOPES)}")
    return frozenset(scopes)


def _tenant(value: str, where: str) -> str:
    if len(value) > 64 or not value.isprintable() or value != value.strip() or "\x00" in value:
        raise ConfigError(f"{where}: tenant must be printable, at most 64 characters")
    return value


def parse_auth(data: dict, base_dir: pathlib.Path = pathlib.Path(".")) -> AuthConfig:
    """The auth file's content (YAML or JSON), checked; errors name the entry and field."""
    if not isinstance(data, dict):
        raise ConfigError("auth file: must be a mapping with api_keys, jwt and/or tenants")
    unknown = sorted(set(data) - {"api_keys", "jwt", "tenants"})
    if unknown:
        raise ConfigError(f"auth file: unknown sections {unknown}")
    keys = []
    for index, entry in enumerate(data.get("api_keys") or []):
        where = f"api_keys[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping")
        digest = _str(entry, where, "key_sha256").lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{where}: key_sha256 must be 64 hex digits (grid auth new-key prints one)")
        keys.append(ApiKey(_str(entry, where, "name"), _tenant(_str(entry, where, "tenant"), where), digest,
                           _scopes(entry, where)))
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key.key_sha256 in seen:
            raise ConfigError(f"api_keys[{seen[key.key_sha256]}] and api_keys[{index}]: the same key is configured "
                              "twice")
        seen[key.key_sha256] = index
    jwt_settings = None
    if data.get("jwt"):
        entry, where = data["jwt"], "jwt"
        if not isinstance(entry, dict):
            raise ConfigError("jwt: must be a mapping")
        jwks = None
        if sum(bool(entry.get(name)) for name in ("key", "key_file", "jwks_file")) != 1:
            raise ConfigError("jwt: give exactly one of key, key_file or jwks_file")
        if entry.get("key_file") or entry.get("jwks_file"):
            field = "key_file" if entry.get("key_file") else "jwks_file"
            path = base_dir / _str(entry, where, field)
            try:
                key = path.read_text()
            except OSError as error:
                raise ConfigError(f"jwt: {field} {path}: {error.strerror}") from None
            if field == "jwks_file":
                jwks, key = _jwks(key, path), ""
        else:
            key = _str(entry, where, "key")
        algorithms = entry.get("algorithms", ["RS256", "ES256"])
        if not isinstance(algorithms, list) or not algorithms or "none" in [str(a).lower() for a in algorithms]:
            raise ConfigError("jwt: algorithms must be a non-empty list, never 'none'")
        leeway_s = entry.get("leeway_s", 30)
        if not isinstance(leeway_s, int) or not 0 <= leeway_s <= 300:
            raise ConfigError("jwt: leeway_s must be an integer from 0 to 300")
        tenant_claim = entry.get("tenant_claim", "tenant")
        if not isinstance(tenant_claim, str) or not tenant_claim:
            raise ConfigError("jwt: tenant_claim must be a non-empty string (the claim naming the tenant)")
        jwt_settings = JwtSettings(_str(entry, where, "issuer"), _str(entry, where, "audience"), key,
                                   tuple(algorithms), tenant_claim, leeway_s, jwks)
    rates = []
    for tenant, entry in (data.get("tenants") or {}).items():
        where = f"tenants.{tenant}"
        if not isinstance(tenant, str):
            raise ConfigError(f"{where}: a tenant name must be a string (quote it in YAML)")
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping")
        per_s, burst = entry.get("requests_per_s", 0), entry.get("burst", 0)
        if not isinstance(per_s, (int, float)) or per_s < 0 or not isinstance(burst, int) or burst < 0:
            raise ConfigError(f"{where}: requests_per_s and burst must be >= 0")
        rates.append((_tenant(tenant, where), RateLimit.of(per_s, burst)))
    return AuthConfig(tuple(keys), jwt_settings, tuple(rates))


def _jwks(text: str, path: pathlib.Path) -> dict:
    import jwt

    try:
        data = json.loads(text)
        jwt.PyJWKSet(data["keys"])  # every key must load now, not at the first token
    except (ValueError, KeyError, TypeError, jwt.PyJWTError) as error:
        raise ConfigError(f"jwt: jwks_file {path}: not a JWK set ({type(error).__name__}: {error})") from None
    return data


def load_auth(path: pathlib.Path) -> AuthConfig:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"auth file {path}: {error.strerror}") from None
    import yaml

    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"auth file {path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{str(error).splitlines()[0]}") from None
    return parse_auth(data, path.parent)


# ---------------------------------------------------------------- authentication

# Verified tokens kept so a busy client's token is checked once, not per call.
TOKEN_CACHE_MAX = 10_000
# Longest credential looked at; anything longer is refused before any work.
CREDENTIAL_LENGTH_MAX = 8192


class Authenticator:
    """metadata -> Principal. API keys come in `x-api-key`, tokens in
    `authorization: Bearer …`; with no credentials configured every caller is
    the anonymous principal of the default tenant (the embedded default)."""

    def __init__(self, config: AuthConfig, clock=time.time) -> None:
        self.config = config
        self._keys = {key.key_sha256: Principal(key.tenant, key.name, key.scopes) for key in config.api_keys}
        self._tokens: collections.OrderedDict[str, Principal] = collections.OrderedDict()
        self._clock = clock
        self._lock = threading.Lock()
        self._jwk_set = None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def authenticate(self, metadata) -> Principal:
        if not self.config.enabled:
            return ANONYMOUS
        api_key = token = None
        for key, value in metadata or ():
            if key == "x-api-key":
                api_key = value
            elif key == "authorization":
                token = value
        if api_key is not None:
            return self._api_key(api_key)
        if token is not None:
            scheme, _, credential = token.partition(" ")
            if scheme.lower() != "bearer" or not credential:
                raise Unauthenticated("authorization must be 'Bearer <token>'")
            return self._token(credential.strip())
        raise Unauthenticated("a credential is required: x-api-key or authorization: Bearer <token>")

    def authorize(self, metadata, method: str) -> Principal:
        principal = self.authenticate(metadata)
        scope = scope_for(method)
        if scope not in principal.scopes:
            raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} needs scope {scope}")
        return principal

    def _api_key(self, key: str) -> Principal:
        if len(key) > CREDENTIAL_LENGTH_MAX:
            raise Unauthenticated("x-api-key is too long")
        # Looked up by its SHA-256: lookup timing can reveal at most a digest's
        # prefix, never the key's.
        principal = self._keys.get(hash_key(key))
        if principal is None:
            raise Unauthenticated("unknown API key")
        return principal

    def _token(self, token: str) -> Principal:
        if len(token) > CREDENTIAL_LENGTH_MAX:
            raise Unauthenticated("bearer token is too long")
        settings = self.config.jwt
        if settings is None:
            raise Unauthenticated("bearer tokens are not accepted here; use x-api-key")
        now_s = self._clock()
        with self._lock:
            cached = self._tokens.get(token)
            if cached is not None:
                if cached.expires_at_s + settings.leeway_s > now_s:
                    self._tokens.move_to_end(token)
                    return cached
                del self._tokens[token]
        principal = self._verify(token, settings, now_s)
        with self._lock:
            self._tokens[token] = principal
            while len(self._tokens) > TOKEN_CACHE_MAX:
                self._tokens.popitem(last=False)
        return principal

    def _jwks_key(self, jwt, token: str, settings: JwtSettings):
        """The JWK set's key named by the token's `kid` (key rotation: old and new both listed)."""
        if self._jwk_set is None:
            self._jwk_set = jwt.PyJWKSet(settings.jwks["keys"])
        kid = jwt.get_unverified_header(token).get("kid")
        for jwk in self._jwk_set.keys:
            if jwk.key_id == kid:
                return jwk.key
        raise Unauthenticated("token kid is not in the configured key set")

    def _verify(self, token: str, settings: JwtSettings, now_s: float) -> Principal:
        import jwt

        try:
            key = settings.key
            if settings.jwks is not None:
                key = self._jwks_key(jwt, token, settings)
            claims = jwt.decode(
                token, key, algorithms=list(settings.algorithms), audience=settings.audience,
                issuer=settings.issuer, leeway=settings.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"], "verify_iat": False, "verify_exp": False,
                         "verify_nbf": False},
            )
            # Expiry and not-before against this authenticator's clock, with the leeway.
            exp, nbf = claims["exp"], claims.get("nbf", 0)
            if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)):
                raise Unauthenticated("token exp and nbf must be numbers")
            if exp + settings.leeway_s <= now_s:
                raise jwt.ExpiredSignatureError()
            if nbf - settings.leeway_s > now_s:
                raise jwt.ImmatureSignatureError()
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token audience is not this grid") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token issuer is not trusted") from None
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"token rejected: {type(error).__name__}") from None
        tenant = claims.get(settings.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated(f"token has no {settings.tenant_claim} claim")
        try:
            _tenant(tenant, "token")
        except ConfigError:
            raise Unauthenticated(f"token {settings.tenant_claim} claim is not a valid tenant") from None
        raw_scopes = claims.get("scope", claims.get("scp", ""))
        scopes = raw_scopes.split() if isinstance(raw_scopes, str) else raw_scopes
        if not isinstance(scopes, list):
            raise Unauthenticated("token scope claim must be a string or a list")
        return Principal(tenant, str(claims["sub"]), frozenset(s for s in scopes if s in ALL_SCOPES),
                         float(claims["exp"]))


# ---------------------------------------------------------------- the listener


@dataclasses.dataclass(frozen=True, slots=True)
class TlsFiles:
    cert_path: pathlib.Path
    key_path: pathlib.Path
    # Set: mutual TLS, every client must present a certificate signed by this CA.
    client_ca_path: pathlib.Path | None = None

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        def read(path: pathlib.Path, what: str) -> bytes:
            try:
                return path.read_bytes()
            except OSError as error:
                raise ConfigError(f"{what} {path}: {error.strerror}") from None

        return (read(self.cert_path, "tls_cert"), read(self.key_path, "tls_key"),
                read(self.client_ca_path, "tls_client_ca") if self.client_ca_path else None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listener(host: str, tls: TlsFiles | None, plaintext: bool, plaintext_any_host: bool,
                   auth_enabled: bool, anonymous_any_host: bool) -> None:
    """Refuse a front door that would be open by accident: no TLS without asking
    for plaintext, plaintext or no credentials only on loopback unless asked."""
    if tls is not None and plaintext:
        raise ConfigError("choose TLS (tls_cert, tls_key) or plaintext, not both")
    if tls is None and not plaintext:
        raise ConfigError("TLS is required: give --tls-cert and --tls-key, or ask for --plaintext")
    if plaintext and not is_loopback(host) and not plaintext_any_host:
        raise ConfigError(f"plaintext on {host} is not loopback: use TLS, or --plaintext-any-host if a "
                          "mesh sidecar encrypts the traffic")
    if not auth_enabled and not is_loopback(host) and not anonymous_any_host:
        raise ConfigError(f"no credentials configured (--auth-file) and {host} is not loopback: every "
                          "caller would be trusted; configure API keys or JWT, or --anonymous-any-host")


# ---------------------------------------------------------------- request rates


class TokenBuckets:
    """Token buckets by key, bounded in number: the least recently used bucket is
    dropped past buckets_max (a dropped bucket comes back full, which errs toward
    admitting a request, never toward refusing one wrongly)."""

    def __init__(self, limit: RateLimit, buckets_max: int = 100_000) -> None:
        self.limit = limit
        self._buckets: collections.OrderedDict = collections.OrderedDict()
        self._buckets_max = buckets_max

    def take(self, key, now_s: float, limit: RateLimit | None = None) -> float:
        """0 when admitted (a token taken), else the seconds until a token is there."""
        limit = limit or self.limit
        if not limit.enabled:
            return 0.0
        tokens, at_s = self._buckets.pop(key, (float(limit.burst), now_s))
        tokens = min(float(limit.burst), tokens + (now_s - at_s) * limit.per_s)
        admitted = tokens >= 1.0
        if admitted:
            tokens -= 1.0
        self._buckets[key] = (tokens, now_s)
        if len(self._buckets) > self._buckets_max:
            self._buckets.popitem(last=False)
        return 0.0 if admitted else (1.0 - tokens) / limit.per_s


class RateLimiter:
    """Requests per tenant and per subscriber (of a tenant), each a token bucket."""

    def __init__(self, tenant_default: RateLimit, subscriber: RateLimit,
                 tenant_overrides: tuple[tuple[str, RateLimit], ...] = (), clock=time.monotonic) -> None:
        self._tenants = TokenBuckets(tenant_default, buckets_max=10_000)
        self._subscribers = TokenBuckets(subscriber)
        self._overrides = dict(tenant_overrides)
        self._clock = clock
        self.enabled = tenant_default.enabled or subscriber.enabled or any(
            limit.enabled for limit in self._overrides.values())

    def admit(self, tenant: str, subscriber_id: str) -> tuple[str, float] | None:
        """None when admitted; else (which limit, seconds to wait before retrying)."""
        if not self.enabled:
            return None
        now_s = self._clock()
        if subscriber_id:
            wait_s = self._subscribers.take((tenant, subscriber_id), now_s)
            if wait_s:
                return "subscriber", wait_s
        wait_s = self._tenants.take(tenant, now_s, self._overrides.get(tenant))
        if wait_s:
            return "tenant", wait_s
        return None
