"""A small OCI distribution client (blobs and manifests of one repository) over httpx, and the
pull of one bundle artifact; publishing a bundle is :mod:`export_center.distribution.push`'s.

References look like ``oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST]``. HTTPS always,
except for loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``), where plain HTTP is used:
a test or a local registry, never a network hop. Every request, redirects and the token realm
included, goes through :mod:`export_center.netpolicy` (TLS, or plain HTTP to loopback only).
Authentication: anonymous, HTTP Basic, or the registry token flow (``WWW-Authenticate: Bearer
realm=...``), with the credentials the caller passes (the settings'
``STELLA_REGISTRY_USERNAME`` / ``STELLA_REGISTRY_PASSWORD``). Credentials and tokens are sent
to the registry's own origin only (and the password to the token realm), never to a host an
upload ``Location`` or a redirect names; a token is asked for the least scope: ``pull`` for a
pull, ``pull,push`` for a push.

Pulls are a security boundary: the manifest is size-limited and, when pulled by digest, checked
against it; layers go through :func:`~export_center.oci.layout.materialize` (names, sizes and
digests checked while streaming).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin

import httpx
import orjson

from export_center.digests import prefixed, sha256_hex
from export_center.errors import BadInputError, ExportCenterError, NotFoundError, VerificationError
from export_center.netpolicy import check_url, guard, http_client, is_loopback
from export_center.oci.layout import (
    MANIFEST_TYPE,
    MAX_MANIFEST_BYTES,
    Layer,
    OciArtifact,
    materialize,
    parse_manifest,
)

_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1 << 20
# A token answer is a small JSON object; anything bigger is not one.
_MAX_TOKEN_RESPONSE = 64 * 1024

#: What a client may do with the repository: the token scope it asks for.
Actions = Literal["pull", "pull,push"]

__all__ = [
    "OciRef",
    "RegistryClient",
    "RegistryError",
    "is_loopback",
    "parse_ref",
    "pull_bundle",
]


class RegistryError(ExportCenterError):
    """The registry refused a request or could not be reached."""

    code = "ERR_EXPORT_REGISTRY"


@dataclass(frozen=True)
class OciRef:
    host: str  # host[:port]
    repository: str
    reference: str  # tag or digest

    @property
    def scheme(self) -> str:
        return "http" if is_loopback(self.host) else "https"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}/v2/{self.repository}/"

    def __str__(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"oci://{self.host}/{self.repository}{sep}{self.reference}"


def parse_ref(ref: str) -> OciRef:
    """Parse ``oci://HOST/REPO[:TAG|@DIGEST]`` (tag defaults to ``latest``).

    Raises:
        BadInputError: not such a reference.
    """
    if not ref.startswith("oci://"):
        raise BadInputError(f"{ref!r}: expected oci://HOST/REPOSITORY:TAG")
    rest = ref[len("oci://") :]
    host, _, path = rest.partition("/")
    if not host or not path:
        raise BadInputError(f"{ref!r}: expected oci://HOST/REPOSITORY:TAG")
    if "@" in path:
        repo, _, reference = path.partition("@")
        if not _DIGEST.match(reference):
            raise BadInputError(f"{ref!r}: digest must be sha256:<64 hex>")
    else:
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            repo, _, reference = path.rpartition(":")
        else:
            repo, reference = path, "latest"
        if not _TAG.match(reference):
            raise BadInputError(f"{ref!r}: invalid tag {reference!r}")
    if not _REPO.match(repo):
        raise BadInputError(f"{ref!r}: invalid repository name {repo!r}")
    return OciRef(host, repo, reference)


class RegistryClient:
    """Talks to one repository of one registry, under the outbound HTTP policy."""

    def __init__(
        self,
        ref: OciRef,
        *,
        client: httpx.Client | None = None,
        credentials: tuple[str, str] | None = None,
        timeout: float = 60.0,
        actions: Actions = "pull",
    ) -> None:
        """``credentials``: (username, password) for Basic or the token flow; anonymous if None.
        ``actions``: the token scope asked for (``pull`` unless the client pushes)."""
        self.ref = ref
        self._client = guard(client or http_client(timeout=timeout, follow_redirects=True))
        self._origin = httpx.URL(ref.base)
        self._basic = credentials
        self._use_basic = False
        self._token: str | None = None
        self._actions = actions

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _same_origin(self, url: httpx.URL) -> bool:
        o = self._origin
        return (url.scheme, url.host, url.port) == (o.scheme, o.host, o.port)

    def _headers(self, url: httpx.URL, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        # Credentials go to the registry itself only: an upload Location or a blob URL may
        # name another host (a CDN, storage), which gets the request without them.
        if self._same_origin(url):
            if self._token:
                h["Authorization"] = f"Bearer {self._token}"
            elif self._use_basic and self._basic is not None:
                user, password = self._basic
                pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
                h["Authorization"] = f"Basic {pair}"
        return h

    def _authenticate(self, challenge: str) -> bool:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self._basic is None or self._use_basic:
                return False
            self._use_basic = True
            return True
        if scheme.lower() != "bearer" or self._token is not None:
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.pop("realm", None)
        if not realm:
            return False
        # The realm is the server's choice: it must pass the policy like any request, before
        # the password is sent to it.
        check_url(realm, f"{self.ref.host}: token realm")
        # Our scope, never the challenge's: least privilege is ours to decide.
        fields["scope"] = f"repository:{self.ref.repository}:{self._actions}"
        auth = httpx.BasicAuth(*self._basic) if self._basic else None
        try:
            req = self._client.build_request("GET", realm, params=fields)
            r = self._client.send(req, auth=auth, stream=True)
        except httpx.HTTPError as e:
            raise RegistryError(f"{self.ref.host}: token request failed: {e}") from e
        try:
            if r.status_code != 200:
                raise RegistryError(f"{self.ref.host}: token request answered {r.status_code}")
            body = bytearray()
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > _MAX_TOKEN_RESPONSE:
                    raise RegistryError(f"{self.ref.host}: token response is too large")
        finally:
            r.close()
        try:
            doc = orjson.loads(bytes(body))
        except orjson.JSONDecodeError as e:
            raise RegistryError(f"{self.ref.host}: token response is not JSON") from e
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.ref.host}: token response has no token")
        self._token = token
        return True

    def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        target = httpx.URL(url)
        for _ in range(3):
            try:
                req = self._client.build_request(
                    method, target, headers=self._headers(target, headers), content=content
                )
                r = self._client.send(req, stream=stream)
            except httpx.HTTPError as e:
                raise RegistryError(f"{method} {url}: {e}") from e
            if r.status_code == 401 and self._authenticate(r.headers.get("www-authenticate", "")):
                r.close()
                continue
            return r
        return r

    @staticmethod
    def _expect(r: httpx.Response, ok: tuple[int, ...], what: str) -> None:
        if r.status_code in ok:
            return
        if not r.is_stream_consumed:
            r.read()
        detail = r.text[:300].strip()
        if r.status_code == 404:
            raise NotFoundError(f"{what}: not found (404) {detail}")
        raise RegistryError(f"{what}: HTTP {r.status_code} {detail}")

    # -- push ---------------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        r = self._request("HEAD", f"{self.ref.base}blobs/{digest}")
        return r.status_code == 200

    def push_blob(self, digest: str, path: Path | None = None, data: bytes | None = None) -> None:
        """Upload one blob (monolithic POST-then-PUT), unless the registry has it already."""
        if self.has_blob(digest):
            return
        r = self._request("POST", f"{self.ref.base}blobs/uploads/")
        self._expect(r, (202,), f"start upload of {digest}")
        location = r.headers.get("location")
        if not location:
            raise RegistryError(f"upload of {digest}: no Location header")
        url = urljoin(self.ref.base, location)
        url += ("&" if "?" in url else "?") + f"digest={digest}"
        if data is None:
            assert path is not None
            size = path.stat().st_size

            def body() -> Iterator[bytes]:
                with path.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        yield chunk

            content: bytes | Iterator[bytes] = body()
        else:
            size = len(data)
            content = data
        r = self._request(
            "PUT",
            url,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=content,
        )
        self._expect(r, (201,), f"upload of {digest}")

    def push_manifest(self, manifest: bytes, reference: str) -> str:
        r = self._request(
            "PUT",
            f"{self.ref.base}manifests/{reference}",
            headers={"Content-Type": MANIFEST_TYPE},
            content=manifest,
        )
        self._expect(r, (201, 200), f"manifest {reference}")
        return prefixed(sha256_hex(manifest))

    # -- pull ---------------------------------------------------------------------------------

    def get_manifest(self) -> bytes:
        r = self._request(
            "GET",
            f"{self.ref.base}manifests/{self.ref.reference}",
            headers={"Accept": MANIFEST_TYPE},
            stream=True,
        )
        try:
            self._expect(r, (200,), f"manifest {self.ref}")
            buf = bytearray()
            for chunk in r.iter_bytes():
                buf += chunk
                if len(buf) > MAX_MANIFEST_BYTES:
                    raise VerificationError(
                        "oci", f"{self.ref}: manifest over {MAX_MANIFEST_BYTES} bytes"
                    )
        finally:
            r.close()
        data = bytes(buf)
        if self.ref.reference.startswith("sha256:"):
            actual = prefixed(sha256_hex(data))
            if actual != self.ref.reference:
                raise VerificationError("oci", f"{self.ref}: manifest digest is {actual}")
        return data

    def blob_chunks(self, layer: Layer) -> Iterator[bytes]:
        r = self._request("GET", f"{self.ref.base}blobs/{layer.digest}", stream=True)
        try:
            self._expect(r, (200,), f"blob {layer.path} ({layer.digest})")
            yield from r.iter_bytes(_CHUNK)
        finally:
            r.close()


def pull_bundle(
    ref: str,
    dest: Path,
    *,
    client: httpx.Client | None = None,
    credentials: tuple[str, str] | None = None,
) -> OciArtifact:
    """Download the bundle artifact at ``ref`` into the directory ``dest`` (must not exist).

    Raises:
        BadInputError: bad reference. NotFoundError: no such manifest or blob.
        RegistryError: transport failures. UnsafeArchiveError, VerificationError: a hostile
            manifest or a blob that does not match its descriptor.
    """
    oref = parse_ref(ref)
    with RegistryClient(oref, client=client, credentials=credentials, actions="pull") as reg:
        manifest = reg.get_manifest()
        layers = parse_manifest(manifest, str(oref))
        materialize(layers, reg.blob_chunks, dest)
    return OciArtifact(manifest, prefixed(sha256_hex(manifest)), tuple(layers), None)
