"""grid/security.py without a server (issue 9): the auth file's checks, the scope
of every RPC, token-bucket arithmetic and the Authenticator, each with time
passed in; the listener rules for every combination; `grid auth new-key`.
"""

import hashlib
import itertools
import json
import math
import pathlib
import time

import jwt
import pytest
from charging.v1 import charging_pb2 as pb
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from grid import security
from grid.security import (
    ALL_SCOPES,
    SCOPE_ACCOUNTS,
    SCOPE_ADMIN,
    SCOPE_CATALOG,
    SCOPE_CHARGING,
    SCOPE_OPERATOR,
    SCOPE_POLICY,
    AuthConfig,
    Authenticator,
    ConfigError,
    JwtSettings,
    PermissionDenied,
    RateLimit,
    RateLimiter,
    TokenBuckets,
    Unauthenticated,
)

# ---------------------------------------------------------------- hash_key


def test_hash_key_is_the_hex_sha256_of_the_utf8_key():
    assert security.hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert security.hash_key("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert security.hash_key("clé") == hashlib.sha256("clé".encode()).hexdigest()
    assert security.hash_key("a") != security.hash_key("a ")


# ---------------------------------------------------------------- scope_for

EXPECTED_SCOPES = {
    "ChargingService/Reserve": SCOPE_CHARGING,
    "ChargingService/Debit": SCOPE_CHARGING,
    "ChargingService/Release": SCOPE_CHARGING,
    "ChargingService/Refund": SCOPE_CHARGING,
    "ChargingService/TopUp": SCOPE_ACCOUNTS,  # money in is account administration
    "ChargingService/GetBalance": SCOPE_CHARGING,
    "ChargingService/GetTransaction": SCOPE_CHARGING,
    "ChargingService/Charge": SCOPE_CHARGING,
    "ChargingService/CreateSession": SCOPE_CHARGING,
    "ChargingService/UpdateSession": SCOPE_CHARGING,
    "ChargingService/ReleaseSession": SCOPE_CHARGING,
    "ChargingService/GetSession": SCOPE_CHARGING,
    "ChargingService/WatchNotifications": SCOPE_CHARGING,
    "ChargingService/Quote": SCOPE_CHARGING,
    "ChargingService/ChargeBatch": SCOPE_CHARGING,
    "ChargingService/GetShardMap": SCOPE_CHARGING,
    "SpendingLimitService/Subscribe": SCOPE_POLICY,
    "SpendingLimitService/Unsubscribe": SCOPE_POLICY,
    "SpendingLimitService/WatchStatus": SCOPE_POLICY,
    "SpendingLimitService/GetCounters": SCOPE_POLICY,
    "AccountService/CreateAccount": SCOPE_ACCOUNTS,
    "AccountService/GetAccount": SCOPE_ACCOUNTS,
    "AccountService/SetAccountState": SCOPE_ACCOUNTS,
    "AccountService/GetBillingCycle": SCOPE_ACCOUNTS,
    "AccountService/DelegateFromPool": SCOPE_ACCOUNTS,
    "AccountService/ReclaimToPool": SCOPE_ACCOUNTS,
    "CatalogService/PutTariff": SCOPE_CATALOG,
    "CatalogService/GetTariff": SCOPE_CATALOG,
    "AdminService/Dispute": SCOPE_ADMIN,
    "AdminService/ExportCdrs": SCOPE_ADMIN,
    "AdminService/CreateSnapshot": SCOPE_OPERATOR,
    "AdminService/ListSnapshots": SCOPE_OPERATOR,
    "AdminService/RestoreSnapshot": SCOPE_OPERATOR,
    "AdminService/Audit": SCOPE_OPERATOR,
}


def test_the_scope_table_lists_every_rpc_of_the_proto():
    served = {f"{service.name}/{method.name}" for service in pb.DESCRIPTOR.services_by_name.values()
              for method in service.methods}
    assert served == set(EXPECTED_SCOPES)


@pytest.mark.parametrize("method", sorted(EXPECTED_SCOPES))
def test_scope_for_every_rpc(method):
    assert security.scope_for(f"charging.v1.{method}") == EXPECTED_SCOPES[method]


def test_scope_for_charge_stream_operations():
    kinds = [field.name for field in pb.ChargeRequest.DESCRIPTOR.oneofs_by_name["operation"].fields]
    assert set(kinds) >= {"reserve", "debit", "release", "refund", "top_up", "create_session"}
    for kind in kinds:
        expected = SCOPE_ACCOUNTS if kind == "top_up" else SCOPE_CHARGING
        assert security.scope_for(f"charging.v1.ChargingService/Charge.{kind}") == expected, kind
        # A ChargeBatch's operations need what the same operation needs on the stream.
        assert security.scope_for(f"charging.v1.ChargingService/ChargeBatch.{kind}") == expected, kind


def test_scope_for_an_unknown_service_or_method_is_the_operators():
    assert security.scope_for("charging.v1.NewService/Anything") == SCOPE_OPERATOR
    assert security.scope_for("grpc.health.v1.Health/Check") == SCOPE_OPERATOR
    assert security.scope_for("") == SCOPE_OPERATOR
    # A new method of a known service gets that service's scope.
    assert security.scope_for("charging.v1.CatalogService/DeleteTariff") == SCOPE_CATALOG


# ---------------------------------------------------------------- parse_auth


def key_entry(**overrides) -> dict:
    entry = {"name": "smf-1", "tenant": "tenant-a", "key_sha256": security.hash_key("k"), "scopes": [SCOPE_CHARGING]}
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


def jwt_entry(**overrides) -> dict:
    entry = {"issuer": "https://idp", "audience": "grid", "key": "-----BEGIN PUBLIC KEY-----..."}
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


PARSE_ERRORS = {
    # name -> (auth file content, substrings the message must have)
    "not-a-mapping": ([1, 2], ["auth file", "mapping"]),
    "unknown-section": ({"api_keys": [], "users": []}, ["unknown sections", "users"]),
    "key-entry-not-a-mapping": ({"api_keys": [key_entry(), "k"]}, ["api_keys[1]", "mapping"]),
    "key-without-name": ({"api_keys": [key_entry(name=None)]}, ["api_keys[0]", "name"]),
    "key-with-empty-name": ({"api_keys": [key_entry(name="")]}, ["api_keys[0]", "name"]),
    "key-without-tenant": ({"api_keys": [key_entry(), key_entry(tenant=None, key_sha256=security.hash_key("2"))]},
                           ["api_keys[1]", "tenant"]),
    "key-with-numeric-tenant": ({"api_keys": [key_entry(tenant=7)]}, ["api_keys[0]", "tenant"]),
    "key-tenant-too-long": ({"api_keys": [key_entry(tenant="t" * 65)]}, ["api_keys[0]", "tenant"]),
    "key-tenant-not-printable": ({"api_keys": [key_entry(tenant="a\nb")]}, ["api_keys[0]", "tenant"]),
    "key-tenant-padded": ({"api_keys": [key_entry(tenant=" a")]}, ["api_keys[0]", "tenant"]),
    "key-without-digest": ({"api_keys": [key_entry(key_sha256=None)]}, ["api_keys[0]", "key_sha256"]),
    "key-digest-short": ({"api_keys": [key_entry(key_sha256="ab" * 31)]}, ["api_keys[0]", "key_sha256", "64 hex"]),
    "key-digest-not-hex": ({"api_keys": [key_entry(key_sha256="g" * 64)]}, ["api_keys[0]", "key_sha256"]),
    "key-digest-a-number": ({"api_keys": [key_entry(key_sha256=0)]}, ["api_keys[0]", "key_sha256"]),
    "key-without-scopes": ({"api_keys": [key_entry(scopes=None)]}, ["api_keys[0]", "scopes"]),
    "key-with-no-scopes": ({"api_keys": [key_entry(scopes=[])]}, ["api_keys[0]", "scopes"]),
    "key-scopes-a-string": ({"api_keys": [key_entry(scopes=SCOPE_CHARGING)]}, ["api_keys[0]", "scopes"]),
    "key-unknown-scope": ({"api_keys": [key_entry(scopes=[SCOPE_CHARGING, "grid:root"])]},
                          ["api_keys[0]", "scopes", "grid:root"]),
    "same-key-twice": ({"api_keys": [key_entry(name="one"), key_entry(name="two")]}, ["api_keys", "same key"]),
    "jwt-not-a-mapping": ({"jwt": "yes"}, ["jwt", "mapping"]),
    "jwt-without-issuer": ({"jwt": jwt_entry(issuer=None)}, ["jwt", "issuer"]),
    "jwt-without-audience": ({"jwt": jwt_entry(audience=None)}, ["jwt", "audience"]),
    "jwt-without-key": ({"jwt": jwt_entry(key=None)}, ["jwt", "key"]),
    "jwt-missing-key-file": ({"jwt": jwt_entry(key=None, key_file="nowhere.pem")}, ["jwt", "key_file", "nowhere.pem"]),
    "jwt-no-algorithms": ({"jwt": jwt_entry(algorithms=[])}, ["jwt", "algorithms"]),
    "jwt-algorithm-none": ({"jwt": jwt_entry(algorithms=["RS256", "none"])}, ["jwt", "algorithms", "none"]),
    "jwt-algorithm-None": ({"jwt": jwt_entry(algorithms=["None"])}, ["jwt", "algorithms"]),
    "jwt-algorithms-a-string": ({"jwt": jwt_entry(algorithms="RS256")}, ["jwt", "algorithms"]),
    "jwt-negative-leeway": ({"jwt": jwt_entry(leeway_s=-1)}, ["jwt", "leeway_s"]),
    "jwt-huge-leeway": ({"jwt": jwt_entry(leeway_s=301)}, ["jwt", "leeway_s"]),
    "jwt-leeway-a-string": ({"jwt": jwt_entry(leeway_s="30")}, ["jwt", "leeway_s"]),
    "tenant-rate-not-a-mapping": ({"tenants": {"tenant-a": 5}}, ["tenants.tenant-a", "mapping"]),
    "tenant-rate-negative": ({"tenants": {"tenant-a": {"requests_per_s": -1}}},
                             ["tenants.tenant-a", "requests_per_s"]),
    "tenant-burst-negative": ({"tenants": {"tenant-a": {"requests_per_s": 1, "burst": -1}}},
                              ["tenants.tenant-a", "burst"]),
    "tenant-burst-fractional": ({"tenants": {"tenant-a": {"requests_per_s": 1, "burst": 1.5}}},
                                ["tenants.tenant-a", "burst"]),
    "tenant-name-too-long": ({"tenants": {"t" * 65: {"requests_per_s": 1}}}, ["tenants.", "tenant"]),
}


@pytest.mark.parametrize("case", sorted(PARSE_ERRORS))
def test_parse_auth_refuses_naming_the_entry_and_field(case, tmp_path):
    data, says = PARSE_ERRORS[case]
    with pytest.raises(ConfigError) as raised:
        security.parse_auth(data, tmp_path)
    for part in says:
        assert part in str(raised.value), (case, str(raised.value))


def test_parse_auth_refuses_a_tenant_rate_keyed_by_a_number():
    with pytest.raises(ConfigError) as raised:
        security.parse_auth({"tenants": {123: {"requests_per_s": 1}}})
    assert "tenants" in str(raised.value)


def test_parse_auth_refuses_a_tenant_claim_that_is_not_a_name():
    with pytest.raises(ConfigError) as raised:
        security.parse_auth({"jwt": jwt_entry(tenant_claim=5)})
    assert "jwt" in str(raised.value) and "tenant_claim" in str(raised.value)


def test_parse_auth_names_the_entries_of_a_duplicate_key():
    with pytest.raises(ConfigError) as raised:
        security.parse_auth({"api_keys": [key_entry(name="one"), key_entry(name="two")]})
    assert "api_keys[0]" in str(raised.value) and "api_keys[1]" in str(raised.value), str(raised.value)


def test_parse_auth_reads_a_full_file(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "idp.pem").write_text("PEM TEXT")
    upper = security.hash_key("k2").upper()
    config = security.parse_auth({
        "api_keys": [key_entry(), key_entry(name="ops", tenant="tenant-b", key_sha256=upper,
                                            scopes=[SCOPE_OPERATOR, SCOPE_ADMIN])],
        "jwt": {"issuer": "https://idp", "audience": "grid", "key_file": "keys/idp.pem"},
        "tenants": {"tenant-a": {"requests_per_s": 2.5}, "tenant-b": {"requests_per_s": 100, "burst": 20},
                    "tenant-c": {"requests_per_s": 0.5}},
    }, tmp_path)
    assert config.enabled
    assert [(k.name, k.tenant, k.scopes) for k in config.api_keys] == [
        ("smf-1", "tenant-a", frozenset({SCOPE_CHARGING})),
        ("ops", "tenant-b", frozenset({SCOPE_OPERATOR, SCOPE_ADMIN})),
    ]
    assert config.api_keys[1].key_sha256 == upper.lower()  # digests compare in lower case
    assert config.jwt == JwtSettings("https://idp", "grid", "PEM TEXT", ("RS256", "ES256"), "tenant", 30)
    # The burst defaults to the rate, and never below one request.
    assert dict(config.tenant_rates) == {"tenant-a": RateLimit(2.5, 3), "tenant-b": RateLimit(100.0, 20),
                                         "tenant-c": RateLimit(0.5, 1)}


def test_parse_auth_of_nothing_is_disabled():
    assert not security.parse_auth({}).enabled
    assert not AuthConfig().enabled
    assert security.parse_auth({"jwt": jwt_entry()}).enabled


def test_load_auth_reads_yaml_and_json_and_names_a_missing_file(tmp_path):
    entry = key_entry()
    (tmp_path / "auth.json").write_text(json.dumps({"api_keys": [entry]}))
    (tmp_path / "auth.yaml").write_text(
        f"api_keys:\n  - name: smf-1\n    tenant: tenant-a\n    key_sha256: '{entry['key_sha256']}'\n"
        f"    scopes: [{SCOPE_CHARGING}]\n")
    assert security.load_auth(tmp_path / "auth.json") == security.load_auth(tmp_path / "auth.yaml")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        security.load_auth(tmp_path / "nowhere.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="mapping"):
        security.load_auth(tmp_path / "empty.yaml")


@pytest.mark.parametrize("name, text", [("auth.json", '{"api_keys": ['), ("auth.yaml", "api_keys: [")])
def test_load_auth_names_a_malformed_file(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=name):
        security.load_auth(tmp_path / name)


# ---------------------------------------------------------------- token buckets


def test_a_bucket_admits_its_burst_then_one_per_interval():
    buckets = TokenBuckets(RateLimit(per_s=2, burst=3))
    assert [buckets.take("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", 0.0) == pytest.approx(0.5)  # a token every 0.5 s
    assert buckets.take("k", 0.25) == pytest.approx(0.25)  # half a token by now; a refusal takes none
    assert buckets.take("k", 0.5) == 0.0
    assert buckets.take("k", 0.5) == pytest.approx(0.5)
    # Refill stops at the burst: a long pause buys three, not more.
    assert [buckets.take("k", 100.0) for _ in range(4)][-1] == pytest.approx(0.5)
    assert buckets.take("k", 100.0 + 0.49) == pytest.approx(0.01)
    assert buckets.take("k", 100.0 + 0.5) == 0.0


def test_buckets_are_per_key_and_a_disabled_limit_admits_everything():
    buckets = TokenBuckets(RateLimit(per_s=1, burst=1))
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) == pytest.approx(1.0)
    assert buckets.take("b", 0.0) == 0.0
    unlimited = TokenBuckets(RateLimit())
    assert not RateLimit().enabled
    assert all(unlimited.take("a", 0.0) == 0.0 for _ in range(1000))
    # A per-call limit overrides the default one.
    assert buckets.take("c", 0.0, RateLimit(per_s=10, burst=2)) == 0.0
    assert buckets.take("c", 0.0, RateLimit(per_s=10, burst=2)) == 0.0
    assert buckets.take("c", 0.0, RateLimit(per_s=10, burst=2)) == pytest.approx(0.1)


def test_buckets_past_their_maximum_drop_the_least_recently_used_which_comes_back_full():
    buckets = TokenBuckets(RateLimit(per_s=1, burst=1), buckets_max=2)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("b", 0.0) == 0.0
    assert buckets.take("a", 0.0) == pytest.approx(1.0)  # a is now the most recently used
    assert buckets.take("c", 0.0) == 0.0  # drops b
    assert buckets.take("b", 0.0) == 0.0  # b came back full (drops a)
    assert buckets.take("c", 0.0) == pytest.approx(1.0)  # c was kept


def test_rate_limiter_checks_the_subscriber_then_the_tenant():
    clock = [0.0]
    limiter = RateLimiter(RateLimit(per_s=10, burst=3), RateLimit(per_s=1, burst=2),
                          tenant_overrides=(("tight", RateLimit(per_s=1, burst=1)),), clock=lambda: clock[0])
    assert limiter.enabled
    assert limiter.admit("t", "s1") is None
    assert limiter.admit("t", "s1") is None
    which, wait_s = limiter.admit("t", "s1")
    assert (which, wait_s) == ("subscriber", pytest.approx(1.0))
    # The subscriber refusal did not spend the tenant's token: one is left for s2.
    assert limiter.admit("t", "s2") is None
    which, wait_s = limiter.admit("t", "s3")
    assert (which, wait_s) == ("tenant", pytest.approx(0.1))
    # The same subscriber id in another tenant has its own bucket; so has the other tenant.
    assert limiter.admit("u", "s1") is None
    # A call with no subscriber (a catalog call) spends only the tenant's.
    assert limiter.admit("u", "") is None
    assert limiter.admit("u", "") is None
    assert limiter.admit("u", "")[0] == "tenant"
    # The override: tenant "tight" gets one request a second, whatever the default.
    assert limiter.admit("tight", "") is None
    assert limiter.admit("tight", "") == ("tenant", pytest.approx(1.0))
    clock[0] = 1.0
    assert limiter.admit("tight", "") is None
    assert limiter.admit("t", "s1") is None  # a second later: a token each again


def test_rate_limiter_with_no_limits_admits_everything():
    limiter = RateLimiter(RateLimit(), RateLimit(), clock=lambda: 0.0)
    assert not limiter.enabled
    assert all(limiter.admit("t", "s") is None for _ in range(1000))
    only_override = RateLimiter(RateLimit(), RateLimit(), (("x", RateLimit(1, 1)),), clock=lambda: 0.0)
    assert only_override.enabled
    assert only_override.admit("y", "s") is None and only_override.admit("y", "s") is None
    assert only_override.admit("x", "s") is None and only_override.admit("x", "s")[0] == "tenant"


def test_a_rate_below_one_a_second_still_admits_requests(tmp_path):
    from grid import cli

    args = cli.build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--plaintext",
                                          "--subscriber-requests-per-s", "0.5", "--tenant-requests-per-s", "0.5"])
    config = cli._config(args)
    limiter = RateLimiter(config.tenant_rate, config.subscriber_rate, clock=lambda: 0.0)
    assert limiter.admit("default", "s1") is None


def test_cli_rates_become_the_grid_config(tmp_path):
    from grid import cli

    args = cli.build_parser().parse_args([
        "serve", "--data-dir", str(tmp_path), "--plaintext", "--subscriber-requests-per-s", "20",
        "--tenant-requests-per-s", "500", "--tenant-burst", "50", "--calls-max", "77"])
    config = cli._config(args)
    assert config.subscriber_rate == RateLimit(20.0, 20) and config.tenant_rate == RateLimit(500.0, 50)
    assert config.calls_max == 77 and config.plaintext and config.tls is None


# ---------------------------------------------------------------- the Authenticator

ISSUER, AUDIENCE, SECRET = "https://idp.test/", "grid", "a-shared-secret-long-enough-for-hs256!"


def hs_settings(**overrides) -> JwtSettings:
    fields = dict(issuer=ISSUER, audience=AUDIENCE, key=SECRET, algorithms=("HS256",), leeway_s=5)
    fields.update(overrides)
    return JwtSettings(**fields)


def claims(now_s: float, **overrides) -> dict:
    found = {"iss": ISSUER, "aud": AUDIENCE, "sub": "pcf-1", "exp": int(now_s) + 100, "tenant": "tenant-a",
             "scope": f"{SCOPE_CHARGING} {SCOPE_POLICY}"}
    found.update(overrides)
    return {k: v for k, v in found.items() if v is not None}


def hs_token(claim_set: dict, secret: str = SECRET) -> str:
    return jwt.encode(claim_set, secret, algorithm="HS256")


def bearer(token: str) -> list:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def keys() -> AuthConfig:
    return security.parse_auth({"api_keys": [
        key_entry(name="smf-1", key_sha256=security.hash_key("key-one")),
        key_entry(name="ops-b", tenant="tenant-b", key_sha256=security.hash_key("key-two"),
                  scopes=[SCOPE_OPERATOR, SCOPE_ADMIN]),
    ]})


def test_no_credentials_configured_means_the_anonymous_default_tenant():
    auth = Authenticator(AuthConfig())
    assert not auth.enabled
    principal = auth.authenticate([])
    assert principal is security.ANONYMOUS
    assert (principal.tenant, principal.scopes) == ("default", ALL_SCOPES)
    assert auth.authenticate([("x-api-key", "anything")]) is security.ANONYMOUS


def test_api_keys_name_their_tenant_and_scopes(keys):
    auth = Authenticator(keys)
    principal = auth.authenticate([("x-api-key", "key-one")])
    assert (principal.tenant, principal.subject, principal.scopes, principal.expires_at_s) == (
        "tenant-a", "smf-1", frozenset({SCOPE_CHARGING}), math.inf)
    assert auth.authenticate([("x-api-key", "key-two")]).tenant == "tenant-b"
    for metadata, says in [([], "credential is required"), ([("x-api-key", "key-three")], "unknown API key"),
                           ([("x-api-key", "key-one ")], "unknown API key"),
                           ([("x-api-key", "k" * (security.CREDENTIAL_LENGTH_MAX + 1))], "too long"),
                           ([("authorization", "Basic a2V5LW9uZQ==")], "Bearer"),
                           ([("authorization", "Bearer ")], "Bearer"),
                           (bearer("x.y.z"), "bearer tokens are not accepted")]:
        with pytest.raises(Unauthenticated, match=says):
            auth.authenticate(metadata)


def test_authorize_names_the_scope_a_method_needs(keys):
    auth = Authenticator(keys)
    assert auth.authorize([("x-api-key", "key-one")], "charging.v1.ChargingService/Debit").subject == "smf-1"
    with pytest.raises(PermissionDenied, match="TopUp needs scope grid:accounts"):
        auth.authorize([("x-api-key", "key-one")], "charging.v1.ChargingService/TopUp")
    with pytest.raises(PermissionDenied, match="Audit needs scope grid:operator"):
        auth.authorize([("x-api-key", "key-one")], "charging.v1.AdminService/Audit")
    with pytest.raises(Unauthenticated):
        auth.authorize([], "charging.v1.ChargingService/Debit")


def test_a_valid_token_gives_its_tenant_subject_scopes_and_expiry():
    auth = Authenticator(AuthConfig(jwt=hs_settings()))
    expires_s = int(_real_now()) + 100
    token = hs_token(claims(_real_now(), exp=expires_s))
    principal = auth.authenticate(bearer(token))
    assert (principal.tenant, principal.subject, principal.scopes, principal.expires_at_s) == (
        "tenant-a", "pcf-1", frozenset({SCOPE_CHARGING, SCOPE_POLICY}), float(expires_s))
    # "scp" as a list, unknown scopes dropped, "bearer" in any case.
    other = hs_token(claims(_real_now(), scope=None, scp=[SCOPE_ADMIN, "grid:everything"]))
    assert Authenticator(AuthConfig(jwt=hs_settings())).authenticate(
        [("authorization", f"bearer {other}")]).scopes == frozenset({SCOPE_ADMIN})
    # A configured tenant claim name.
    custom = Authenticator(AuthConfig(jwt=hs_settings(tenant_claim="org")))
    assert custom.authenticate(bearer(hs_token(claims(_real_now(), tenant=None, org="tenant-z")))).tenant == \
        "tenant-z"
    with pytest.raises(Unauthenticated, match="no org claim"):
        custom.authenticate(bearer(hs_token(claims(_real_now()))))
    # An API key wins over a token sent alongside it.
    both = AuthConfig(api_keys=(security.ApiKey("k", "tenant-k", security.hash_key("kk"), frozenset()),),
                      jwt=hs_settings())
    assert Authenticator(both).authenticate([("x-api-key", "kk")] + bearer(token)).tenant == "tenant-k"


def _real_now() -> float:
    return time.time()


BAD_CLAIMS = {
    "expired": (dict(exp=-60), "expired"),
    "wrong-audience": (dict(aud="other"), "audience"),
    "wrong-issuer": (dict(iss="https://evil/"), "issuer"),
    "no-tenant": (dict(tenant=None), "no tenant claim"),
    "empty-tenant": (dict(tenant=""), "no tenant claim"),
    "tenant-not-printable": (dict(tenant="a\tb"), "not a valid tenant"),
    "tenant-too-long": (dict(tenant="t" * 65), "not a valid tenant"),
    "no-subject": (dict(sub=None), "rejected"),
    "no-expiry": (dict(exp=None), "rejected"),
    "no-issuer": (dict(iss=None), "rejected"),
    "no-audience": (dict(aud=None), "rejected"),
    "scope-a-number": (dict(scope=5), "scope"),
    "not-yet-valid": (dict(nbf=3600), "not valid yet"),
}


@pytest.mark.parametrize("case", sorted(BAD_CLAIMS))
def test_a_bad_token_is_unauthenticated(case):
    overrides, says = BAD_CLAIMS[case]
    now_s = _real_now()
    for name in ("exp", "nbf"):  # relative times
        if overrides.get(name) is not None:
            overrides = {**overrides, name: int(now_s) + overrides[name]}
    with pytest.raises(Unauthenticated, match=says):
        Authenticator(AuthConfig(jwt=hs_settings())).authenticate(bearer(hs_token(claims(now_s, **overrides))))


def _rsa_pems() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def test_rs256_tokens_refuse_other_keys_none_and_hs256_confusion():
    import base64
    import hashlib as hashes
    import hmac

    private_pem, public_pem = _rsa_pems()
    other_private, _ = _rsa_pems()
    settings = JwtSettings(ISSUER, AUDIENCE, public_pem.decode(), ("RS256",), leeway_s=5)
    auth = Authenticator(AuthConfig(jwt=settings))
    claim_set = claims(_real_now())
    assert auth.authenticate(bearer(jwt.encode(claim_set, private_pem, algorithm="RS256"))).tenant == "tenant-a"

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def unsigned(alg: str) -> str:
        return b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + b64(json.dumps(claim_set).encode())

    confused = unsigned("HS256")
    confused += "." + b64(hmac.new(public_pem, confused.encode(), hashes.sha256).digest())
    for token in [jwt.encode(claim_set, other_private, algorithm="RS256"), unsigned("none") + ".",
                  unsigned("None") + ".", confused, hs_token(claim_set)]:
        with pytest.raises(Unauthenticated):
            auth.authenticate(bearer(token))


def test_a_jwk_set_file_verifies_tokens_by_their_kid(tmp_path):
    """Key rotation: the old and the new key are both listed; a token names its key by kid."""
    from jwt.algorithms import RSAAlgorithm

    keys = {}
    for kid in ("old", "new", "unlisted"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        keys[kid] = key
    listed = [dict(RSAAlgorithm.to_jwk(keys[kid].public_key(), as_dict=True), kid=kid, use="sig", alg="RS256")
              for kid in ("old", "new")]
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": listed}))
    config = security.parse_auth({"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": "jwks.json",
                                          "algorithms": ["RS256"]}}, tmp_path)
    auth = Authenticator(config)
    claim_set = claims(_real_now())

    def signed(kid: str, headers_kid: str | None = None) -> str:
        headers = {} if headers_kid is None else {"kid": headers_kid}
        return jwt.encode(claim_set, keys[kid], algorithm="RS256", headers=headers)

    assert auth.authenticate(bearer(signed("old", "old"))).tenant == "tenant-a"
    assert auth.authenticate(bearer(signed("new", "new"))).tenant == "tenant-a"
    for token, says in [(signed("unlisted", "unlisted"), "kid"), (signed("old"), "kid"),
                        (signed("unlisted", "new"), "rejected"), (signed("old", "new"), "rejected")]:
        with pytest.raises(Unauthenticated, match=says):
            auth.authenticate(bearer(token))
    # A file that is not a JWK set, and a key given two ways, are refused when the file is read.
    (tmp_path / "broken.json").write_text(json.dumps({"keys": [{"kty": "RSA", "n": "x"}]}))
    for entry, says in [({"jwks_file": "broken.json"}, "broken.json"), ({"jwks_file": "absent.json"}, "absent.json"),
                        ({"jwks_file": "jwks.json", "key": "PEM"}, "exactly one")]:
        with pytest.raises(ConfigError, match=says):
            security.parse_auth({"jwt": {"issuer": ISSUER, "audience": AUDIENCE, **entry}}, tmp_path)


def test_a_verified_token_is_cached_until_its_expiry_plus_leeway(monkeypatch):
    now_s = _real_now()
    clock = [now_s]
    auth = Authenticator(AuthConfig(jwt=hs_settings(leeway_s=5)), clock=lambda: clock[0])
    token = hs_token(claims(now_s, exp=int(now_s) + 100))
    expires_s = int(now_s) + 100
    decoded = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    auth.authenticate(bearer(token))
    clock[0] = expires_s + 4.9  # within the leeway: the cached principal, not checked again
    assert auth.authenticate(bearer(token)).subject == "pcf-1"
    assert len(decoded) == 1
    clock[0] = expires_s + 5.1  # past exp + leeway: the cache entry is dropped and the token checked again
    try:
        auth.authenticate(bearer(token))
    except Unauthenticated:
        pass
    assert len(decoded) == 2


def test_a_cached_token_stops_working_after_expiry_plus_leeway_by_the_injected_clock():
    now_s = _real_now()
    clock = [now_s]
    auth = Authenticator(AuthConfig(jwt=hs_settings(leeway_s=5)), clock=lambda: clock[0])
    token = hs_token(claims(now_s, exp=int(now_s) + 100))
    assert auth.authenticate(bearer(token)).tenant == "tenant-a"
    clock[0] = int(now_s) + 100 + 6
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(bearer(token))


def test_the_token_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(security, "TOKEN_CACHE_MAX", 3)
    auth = Authenticator(AuthConfig(jwt=hs_settings()))
    now_s = _real_now()
    for index in range(10):
        auth.authenticate(bearer(hs_token(claims(now_s, sub=f"pcf-{index}"))))
    assert len(auth._tokens) == 3
    with pytest.raises(Unauthenticated, match="too long"):
        auth.authenticate(bearer("x" * (security.CREDENTIAL_LENGTH_MAX + 1)))


# ---------------------------------------------------------------- the listener

HOSTS = {"127.0.0.1": True, "127.0.0.2": True, "::1": True, "[::1]": True, "localhost": True,
         "0.0.0.0": False, "::": False, "10.1.2.3": False, "grid.example.test": False, "": False}


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_is_loopback(host):
    assert security.is_loopback(host) == HOSTS[host]


def expected_refusal(loopback: bool, tls: bool, plaintext: bool, plaintext_any_host: bool, auth_enabled: bool,
                     anonymous_any_host: bool) -> str | None:
    """The rules, written out: what the refusal names, or None when the listener is allowed."""
    if tls and plaintext:
        return "not both"
    if not tls and not plaintext:
        return "--plaintext"
    if plaintext and not loopback and not plaintext_any_host:
        return "--plaintext-any-host"
    if not auth_enabled and not loopback and not anonymous_any_host:
        return "--anonymous-any-host"
    return None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "0.0.0.0", "10.1.2.3"])
def test_check_listener_for_every_combination(host):
    tls_files = security.TlsFiles(pathlib.Path("cert.pem"), pathlib.Path("key.pem"))
    for tls, plaintext, any_host, auth_enabled, anonymous in itertools.product([False, True], repeat=5):
        expected = expected_refusal(HOSTS[host], tls, plaintext, any_host, auth_enabled, anonymous)
        arguments = (host, tls_files if tls else None, plaintext, any_host, auth_enabled, anonymous)
        if expected is None:
            security.check_listener(*arguments)
        else:
            with pytest.raises(ConfigError) as raised:
                security.check_listener(*arguments)
            assert expected in str(raised.value), (arguments, str(raised.value))


def test_tls_files_are_read_or_named(tmp_path):
    (tmp_path / "cert.pem").write_bytes(b"CERT")
    (tmp_path / "key.pem").write_bytes(b"KEY")
    assert security.TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem").read() == (b"CERT", b"KEY", None)
    (tmp_path / "ca.pem").write_bytes(b"CA")
    assert security.TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem").read()[2] == b"CA"
    with pytest.raises(ConfigError, match="tls_client_ca .*nope.pem"):
        security.TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "nope.pem").read()
    with pytest.raises(ConfigError, match="tls_key"):
        security.TlsFiles(tmp_path / "cert.pem", tmp_path / "gone.pem").read()


def test_grid_config_refuses_no_calls():
    from grid.config import GridConfig

    with pytest.raises(ValueError, match="calls_max"):
        GridConfig(calls_max=0)
    with pytest.raises(ValueError, match="streams_per_connection_max"):
        GridConfig(streams_per_connection_max=0)
    assert GridConfig().admin_log_name == "admin-audit.jsonl" and not GridConfig().plaintext


# ---------------------------------------------------------------- grid auth new-key, client credentials


def test_grid_auth_new_key_prints_a_key_and_an_entry_that_grants_it(capsys):
    from grid import cli

    assert cli.main(["auth", "new-key", "--name", "smf-7", "--tenant", "tenant-a", "--scope", SCOPE_CHARGING,
                     "--scope", SCOPE_POLICY]) == 0
    lines = capsys.readouterr().out.splitlines()
    key = lines[0].rsplit(" ", 1)[1]
    entry = json.loads(lines[-1])
    assert key.startswith("grid_") and len(key) > 40 and key not in lines[-1]
    assert entry == {"name": "smf-7", "tenant": "tenant-a", "key_sha256": security.hash_key(key),
                     "scopes": [SCOPE_CHARGING, SCOPE_POLICY]}
    principal = Authenticator(security.parse_auth({"api_keys": [entry]})).authenticate([("x-api-key", key)])
    assert (principal.tenant, principal.subject) == ("tenant-a", "smf-7")
    # Two keys are never the same.
    cli.main(["auth", "new-key", "--name", "x", "--tenant", "t", "--scope", SCOPE_ADMIN])
    assert capsys.readouterr().out.splitlines()[0].rsplit(" ", 1)[1] != key


def test_client_credentials_from_the_environment(tmp_path):
    from grid_client import Credentials

    (tmp_path / "ca.pem").write_bytes(b"CA")
    (tmp_path / "cert.pem").write_bytes(b"CERT")
    (tmp_path / "key.pem").write_bytes(b"KEY")
    credentials = Credentials.from_environment({
        "GRID_TLS_CA": str(tmp_path / "ca.pem"), "GRID_TLS_CERT": str(tmp_path / "cert.pem"),
        "GRID_TLS_KEY": str(tmp_path / "key.pem"), "GRID_TLS_SERVER_NAME": "grid.internal",
        "GRID_API_KEY": "k1", "GRID_TOKEN": "t1"})
    assert (credentials.root_certificates, credentials.certificate_chain, credentials.private_key) == (
        b"CA", b"CERT", b"KEY")
    assert credentials.uses_tls and credentials.server_name == "grid.internal"
    assert credentials.metadata() == (("x-api-key", "k1"),)  # the key wins over the token
    token_only = Credentials.from_environment({"GRID_TOKEN": "t1"})
    assert token_only.metadata() == (("authorization", "Bearer t1"),) and not token_only.uses_tls
    assert Credentials.from_environment({"GRID_TLS": "1"}).uses_tls
    assert not Credentials.from_environment({"GRID_TLS": "0"}).uses_tls
    assert Credentials.from_environment({}).metadata() is None
