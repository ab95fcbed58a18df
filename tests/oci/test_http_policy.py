"""The one outbound HTTP policy (docs/security.md, "Registry ↔ client"): TLS, or plain HTTP to a
loopback host only, for every request a client sends (redirects and token realms included);
credentials only to the registry's own origin; the least token scope.

The "registries" here are scripted servers on 127.0.0.1. The non-loopback addresses they name
(TEST-NET 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are refused before a connection is
opened: were they not, the network guard (tests/support/network.py) would raise its own error,
which these tests would not accept.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from export_center.cli import main
from export_center.client import ApiClient, parse_sse
from export_center.distribution.push import push_bundle
from export_center.errors import ExitCode, InsecureTransportError
from export_center.netpolicy import check_url, is_loopback, new_client, refuse_plain_http
from export_center.oci.registry import RegistryClient, parse_ref, pull_bundle
from support.fakehttp import Answer, Seen, serve
from support.mirror import Instance, advisory, new_signer

BASIC = ("robot", "s3cret-password")


def _basic_value() -> str:
    return "Basic " + base64.b64encode(f"{BASIC[0]}:{BASIC[1]}".encode()).decode()


def test_check_url_accepts_tls_and_loopback_only() -> None:
    for ok in (
        "https://registry.example/v2/",
        "http://127.0.0.1:5000/v2/",
        "http://127.9.9.9/",
        "http://localhost:8080/",
        "http://[::1]:5000/",
    ):
        check_url(ok)
    for bad, why in (
        ("http://registry.example/v2/", "plain HTTP to registry.example"),
        ("http://10.0.0.1:5000/", "plain HTTP to 10.0.0.1"),
        ("http://127.0.0.1.example/", "plain HTTP to 127.0.0.1.example"),
        ("ftp://127.0.0.1/", "scheme 'ftp'"),
    ):
        with pytest.raises(InsecureTransportError, match=why):
            check_url(bad)
    assert is_loopback("LOCALHOST:1") and not is_loopback("localhost.example")


def test_redirect_to_plain_http_elsewhere_is_refused_before_connecting(tmp_path: Path) -> None:
    def script(req: Seen) -> Answer:
        return Answer(307, {"Location": f"http://203.0.113.9{req.path}"})

    with serve(script) as reg:
        with pytest.raises(InsecureTransportError, match=r"plain HTTP to 203\.0\.113\.9"):
            pull_bundle(f"oci://{reg.host}/stella/mirror:t", tmp_path / "out")
        assert [s.path for s in reg.seen] == ["/v2/stella/mirror/manifests/t"]
    assert not (tmp_path / "out").exists()
    # Any client the policy guards: the REST client's too.
    with (
        serve(script) as srv,
        new_client() as http,
        pytest.raises(InsecureTransportError, match=r"203\.0\.113\.9"),
    ):
        http.get(srv.url + "/anything")


def test_plain_http_token_realm_never_gets_the_password(tmp_path: Path) -> None:
    def script(req: Seen) -> Answer:
        return Answer(
            401,
            {"WWW-Authenticate": 'Bearer realm="http://198.51.100.7/token",service="reg"'},
        )

    with serve(script) as reg:
        with pytest.raises(InsecureTransportError, match=r"token realm.*198\.51\.100\.7"):
            pull_bundle(f"oci://{reg.host}/stella/mirror:t", tmp_path / "out", credentials=BASIC)
        assert len(reg.seen) == 1 and "authorization" not in reg.seen[0].headers


def _token_registry(realm_base: Callable[[], str], tokens: list[Seen]) -> Callable[[Seen], Answer]:
    def script(req: Seen) -> Answer:
        if req.path == "/token":
            tokens.append(req)
            return Answer(200, {"Content-Type": "application/json"}, b'{"token":"t0k"}')
        if req.headers.get("authorization") != "Bearer t0k":
            return Answer(
                401,
                {
                    "WWW-Authenticate": f'Bearer realm="{realm_base()}/token",service="reg",'
                    'scope="repository:stella/mirror:pull,push,delete"'
                },
            )
        return Answer(404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

    return script


def test_token_scope_is_pull_for_a_pull_and_push_for_a_push(tmp_path: Path) -> None:
    tokens: list[Seen] = []
    box: list[str] = []
    with serve(_token_registry(lambda: box[0], tokens)) as reg:
        box.append(reg.url)
        with pytest.raises(Exception, match="not found"):
            pull_bundle(f"oci://{reg.host}/stella/mirror:t", tmp_path / "out", credentials=BASIC)
        # The password went to the realm (loopback here), the token to the registry.
        assert tokens[0].query["scope"] == ["repository:stella/mirror:pull"]
        assert tokens[0].headers["authorization"] == _basic_value()
        assert reg.seen[-1].headers["authorization"] == "Bearer t0k"

        with RegistryClient(
            parse_ref(f"oci://{reg.host}/stella/mirror:t"), credentials=BASIC, actions="pull,push"
        ) as push:
            assert not push.has_blob("sha256:" + "0" * 64)
        assert tokens[1].query["scope"] == ["repository:stella/mirror:pull,push"]


def test_basic_credentials_stay_with_the_registry_origin(tmp_path: Path) -> None:
    """An upload Location on another origin gets the bytes, never the password."""
    uploads: list[Seen] = []

    def storage(req: Seen) -> Answer:
        uploads.append(req)
        return Answer(201)

    with serve(storage) as other:

        def registry(req: Seen) -> Answer:
            if req.headers.get("authorization") != _basic_value():
                return Answer(401, {"WWW-Authenticate": 'Basic realm="reg"'})
            if req.method == "HEAD":
                return Answer(404)
            return Answer(202, {"Location": f"{other.url}/upload/1?state=x"})

        with serve(registry) as reg:
            with RegistryClient(
                parse_ref(f"oci://{reg.host}/stella/mirror:t"),
                credentials=BASIC,
                actions="pull,push",
            ) as client:
                client.push_blob("sha256:" + "1" * 64, data=b"blob")
            assert reg.seen[-1].headers["authorization"] == _basic_value()
    assert len(uploads) == 1 and uploads[0].body == b"blob"
    assert "authorization" not in uploads[0].headers


def test_push_and_service_push_follow_the_policy(
    tmp_path: Path, make_instance: Callable[..., Instance]
) -> None:
    """``export push`` and the worker's automatic push both go through push_bundle."""
    a = make_instance("A")
    a.put("feed", advisory("ADV-1"))
    bundle = a.export(a.profile("raw-all", {"kind": "json", "variant": "raw"}), new_signer())

    def script(req: Seen) -> Answer:
        if req.method == "HEAD":
            return Answer(404)
        return Answer(202, {"Location": "http://192.0.2.10/upload/1"})

    with serve(script) as reg:
        with pytest.raises(InsecureTransportError, match=r"192\.0\.2\.10"):
            push_bundle(bundle.archive_path, f"oci://{reg.host}/stella/raw:t", tmp_path / "w")
        assert {s.method for s in reg.seen} <= {"HEAD", "POST"}


def test_cli_refuses_with_exit_code_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STELLA_CONFIG", "")
    trust = tmp_path / "trust.pem"
    trust.write_bytes(new_signer().public_key_pem())

    def script(req: Seen) -> Answer:
        return Answer(302, {"Location": f"http://203.0.113.50{req.path}"})

    with serve(script) as reg:
        ref = f"oci://{reg.host}/stella/m:t"
        for args in (
            ["airgap", "import", ref, "--trust-roots", str(trust)],
            ["airgap", "verify-bundle", ref, "--trust-roots", str(trust)],
            [
                "airgap",
                "trivy-install",
                f"oci://{reg.host}/stella/db:2",
                "--trust-roots",
                str(trust),
                "--cache-dir",
                str(tmp_path / "cache"),
            ],
        ):
            monkeypatch.setattr(sys, "argv", ["stella", *args])
            assert main.run_app(main.app) == ExitCode.BAD_INPUT, args
            err = capsys.readouterr().err
            assert "refusing plain HTTP to 203.0.113.50" in err
            assert "Traceback" not in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_rest_client_refuses_plain_http_servers() -> None:
    with pytest.raises(InsecureTransportError, match=r"--server: refusing plain HTTP to 203"):
        ApiClient("http://203.0.113.10:8080", token="stl_secret")
    # A client handed in is guarded too (its redirects to other hosts included).
    http = httpx.Client(base_url="https://stella.example")
    with ApiClient("https://stella.example", token="stl_secret", http=http) as c:
        assert refuse_plain_http in c._http.event_hooks["request"]


def test_sse_ids_are_ascii_digits() -> None:
    events = list(parse_sse(iter(["id: ²", "data: {}", "", "id: 7", "data: {}", ""])))
    assert [e.id for e in events] == [None, 7]
