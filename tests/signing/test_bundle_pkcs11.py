"""A bundle signed on an HSM (SoftHSM2 through PKCS#11) verifies like a file-key bundle; the HSM
is the operator's: keys are registered from the operator's module and named by keyid, a
profile never names a module, token or object."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from export_center.bundle.verify import verify_bundle
from export_center.cli import main
from export_center.errors import BadInputError, NotFoundError, SigningError
from export_center.exporter import ProfileReferences, run_export
from export_center.model import Advisory, ParsedRecord
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.settings import Settings, load_settings
from export_center.signing.interface import load_trust_roots
from export_center.signing.keystore import KeyStore
from export_center.signing.registry import create_signer
from export_center.store.repository import EvidenceStore
from support.signing import SoftHsm

RAW = {"kind": "json", "variant": "raw"}


def _settings(softhsm: SoftHsm, tmp_path: Path) -> Settings:
    # The module and PIN reach the token through the operator's settings, as in the CLI.
    return load_settings(
        env={
            "STELLA_DATA_DIR": str(tmp_path / "data"),
            "STELLA_PKCS11_MODULE": softhsm.module,
            "STELLA_PKCS11_PIN": softhsm.pin,
        }
    )


def _store(settings: Settings) -> EvidenceStore:
    store = EvidenceStore.open(settings.database_url)
    with store.session() as s:
        cursor = store.lock_tenant(s, "default")
        record = ParsedRecord(
            "A-1", "advisory", "osv", "application/osv+json", b'{"id":"A-1"}', Advisory(id="A-1")
        )
        store.put(s, cursor, "feed", record)
        s.commit()
    return store


def _register(settings: Settings, softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch) -> str:
    """``stella keys register-pkcs11`` through the CLI's own error handling; the keyid."""
    for name, value in (
        ("STELLA_DATA_DIR", str(settings.data_dir)),
        ("STELLA_PKCS11_MODULE", softhsm.module),
        ("STELLA_PKCS11_PIN", softhsm.pin),
        ("STELLA_CONFIG", ""),
    ):
        monkeypatch.setenv(name, value)
    args = ["keys", "register-pkcs11", "--token", softhsm.token, "--object", "p256"]
    monkeypatch.setattr(sys, "argv", ["stella", *args, "--tenant", "default"])
    assert main.run_app(main.app) == 0
    (info,) = KeyStore(settings.key_dir).tenant_keys("default")
    assert (info.backend, info.token, info.object) == ("pkcs11", softhsm.token, "p256")
    assert not info.private_path.exists()  # the private key never leaves the token
    return info.keyid


def test_a_registered_hsm_key_signs_on_the_token(
    softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(softhsm, tmp_path)
    store = _store(settings)
    keyid = _register(settings, softhsm, monkeypatch)
    registry = ProfileRegistry(store, references=ProfileReferences(settings, store))
    spec = parse_profile_spec({"kind": "json", "variant": "raw", "signing": {"key": keyid}})
    prof = registry.create("default", "hsm-raw", spec)
    outcome = run_export(settings, store, prof, tmp_path / "out")
    config = {"module": softhsm.module, "token": softhsm.token, "key_label": "p256"}
    token_key = create_signer("pkcs11", config | {"pin": softhsm.pin})
    assert token_key.keyid == keyid
    roots = load_trust_roots(token_key.public_key_pem())
    report = verify_bundle(outcome.bundle.archive_path, roots, tenant="default")
    assert report.ok, report.as_json()
    assert keyid in next(c.detail for c in report.checks if c.name == "archive-signature")
    # The tenant's newest key is its default signer: a profile without signing.key uses it.
    plain = registry.create("default", "hsm-default", parse_profile_spec(RAW))
    again = run_export(settings, store, plain, tmp_path / "out2")
    assert verify_bundle(again.bundle.archive_path, roots).ok


def test_a_token_object_holding_another_key_is_refused(
    softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(softhsm, tmp_path)
    store = _store(settings)
    keyid = _register(settings, softhsm, monkeypatch)
    prof = ProfileRegistry(store, references=ProfileReferences(settings, store)).create(
        "default",
        "hsm-moved",
        parse_profile_spec({"kind": "json", "variant": "raw", "signing": {"key": keyid}}),
    )
    # The operator's index now points the key at another object of the token (or the object
    # was replaced): the token's key is not the registered one, so nothing is signed.
    index_path = settings.key_dir / "index.json"
    index = orjson.loads(index_path.read_bytes())
    other = "ed25519" if softhsm.eddsa else "no-such-object"
    index["keys"][0]["object"] = other
    index_path.write_bytes(orjson.dumps(index))
    expected = SigningError if softhsm.eddsa else NotFoundError
    with pytest.raises(expected, match=r"holds key|no private key object"):
        run_export(settings, store, prof, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.tar.zst"))


def test_a_profile_naming_a_module_is_refused_and_never_loads_it(
    softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pkcs11

    loaded: list[str] = []
    real = pkcs11.lib

    def spy(path: str) -> object:
        loaded.append(path)
        return real(path)

    monkeypatch.setattr(pkcs11, "lib", spy)
    settings = _settings(softhsm, tmp_path)
    store = _store(settings)
    uri = f"pkcs11:token={softhsm.token};object=p256?module-path={tmp_path / 'evil.so'}"
    with pytest.raises(BadInputError, match=r"signing\.key: a PKCS#11 URI is not a key reference"):
        parse_profile_spec({"kind": "json", "variant": "raw", "signing": {"key": uri}})
    # A revision stored before this version with such a key stays readable but cannot run.
    registry = ProfileRegistry(store)
    prof = registry.create("default", "legacy", parse_profile_spec(RAW))
    with store.engine.begin() as conn:
        from sqlalchemy import text

        legacy = orjson.loads(prof.spec.canonical())
        legacy["signing"] = {"key": uri}
        legacy["policy"] = {"document": None, "policySnapshotMode": "none"}
        conn.execute(
            text("UPDATE profile_revisions SET spec = :s"), {"s": orjson.dumps(legacy).decode()}
        )
    view = registry.get("default", "legacy")
    assert view.problem is not None and "signing.key" in view.problem
    assert view.spec.signing.key is None  # the refused field is left out of the view
    with pytest.raises(BadInputError, match="cannot run"):
        run_export(settings, store, view, tmp_path / "out")
    assert loaded == []  # no module was loaded on behalf of the profile
