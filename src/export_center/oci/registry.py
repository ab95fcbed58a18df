"""A small OCI distribution client (blobs and manifests of one repository) over httpx, and the
pull of one bundle artifact; publishing a bundle is :mod:`export_center.distribution.push`'s.

References look like ``oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:DIGEST]``. HTTPS always,
except for loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``), where plain HTTP is used:
a test or a local registry, never a network hop. Authentication: anonymous, HTTP Basic, or the
registry token flow (``WWW-Authenticate: Bearer realm=...``), with the credentials the caller
passes (the settings' ``STELLA_REGISTRY_USERNAME`` / ``STELLA_REGISTRY_PASSWORD``).

Pulls are a security boundary: the manifest is size-limited and, when pulled by digest, checked
against it; layers go through :func:`~export_center.oci.layout.materialize` (names, sizes and
digests checked while streaming).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

from export_center.digests import prefixed, sha256_hex
from export_center.errors import BadInputError, ExportCenterError, NotFoundError, VerificationError
from export_center.oci.layout import (
    MANIFEST_TYPE,
    MAX_MANIFEST_BYTES,
    Layer,
    OciArtifact,
    materialize,
    parse_manifest,
)
from export_center.outbound import http_client

_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1 << 20


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


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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
    """Talks to one repository of one registry."""

    def __init__(
        self,
        ref: OciRef,
        *,
        client: httpx.Client | None = None,
        credentials: tuple[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        """``credentials``: (username, password) for Basic or the token flow; anonymous if None."""
        self.ref = ref
        self._client = client or http_client(timeout=timeout, follow_redirects=True)
        self._basic = credentials
        self._token: str | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        h = dict(extra or {})
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        return h

    def _authenticate(self, challenge: str) -> bool:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self._basic is None or self._client.auth is not None:
                return False
            self._client.auth = httpx.BasicAuth(*self._basic)
            return True
        if scheme.lower() != "bearer" or self._token is not None:
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.pop("realm", None)
        if not realm:
            return False
        fields.setdefault("scope", f"repository:{self.ref.repository}:pull,push")
        auth = httpx.BasicAuth(*self._basic) if self._basic else None
        try:
            r = (
                self._client.get(realm, params=fields, auth=auth)
                if auth
                else self._client.get(realm, params=fields)
            )
        except httpx.HTTPError as e:
            raise RegistryError(f"{self.ref.host}: token request failed: {e}") from e
        if r.status_code != 200:
            raise RegistryError(f"{self.ref.host}: token request answered {r.status_code}")
        body = r.json()
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
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
        for _ in range(3):
            try:
                req = self._client.build_request(
                    method, url, headers=self._headers(headers), content=content
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
    with RegistryClient(oref, client=client, credentials=credentials) as reg:
        manifest = reg.get_manifest()
        layers = parse_manifest(manifest, str(oref))
        materialize(layers, reg.blob_chunks, dest)
    return OciArtifact(manifest, prefixed(sha256_hex(manifest)), tuple(layers), None)
