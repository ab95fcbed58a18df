"""A bundle signed on an HSM (SoftHSM2 through PKCS#11) verifies like a file-key bundle."""

from __future__ import annotations

from pathlib import Path

from export_center.bundle.verify import verify_bundle
from export_center.exporter import run_export
from export_center.model import Advisory, ParsedRecord
from export_center.planner.profiles import parse_profile_spec
from export_center.planner.registry import ProfileRegistry
from export_center.settings import load_settings
from export_center.signing.interface import load_trust_roots
from export_center.signing.registry import create_signer
from export_center.store.repository import EvidenceStore
from support.signing import SoftHsm


def test_profile_naming_a_pkcs11_key_signs_on_the_token(softhsm: SoftHsm, tmp_path: Path) -> None:
    # The PIN reaches the token through the settings (STELLA_PKCS11_PIN), as in the CLI.
    env = {"STELLA_DATA_DIR": str(tmp_path / "data"), "STELLA_PKCS11_PIN": softhsm.pin}
    settings = load_settings(env=env)
    store = EvidenceStore.open(settings.database_url)
    with store.session() as s:
        cursor = store.lock_tenant(s, "default")
        store.put(
            s,
            cursor,
            "feed",
            ParsedRecord(
                "A-1",
                "advisory",
                "osv",
                "application/osv+json",
                b'{"id":"A-1"}',
                Advisory(id="A-1"),
            ),
        )
        s.commit()
    uri = f"pkcs11:token={softhsm.token};object=p256?module-path={softhsm.module}"
    prof = ProfileRegistry(store).create(
        "default",
        "hsm-raw",
        parse_profile_spec({"kind": "json", "variant": "raw", "signing": {"key": uri}}),
    )
    outcome = run_export(settings, store, prof, tmp_path / "out")
    token_key = create_signer("pkcs11", {"uri": uri, "pin": softhsm.pin})
    roots = load_trust_roots(token_key.public_key_pem())
    report = verify_bundle(outcome.bundle.archive_path, roots)
    assert report.ok, report.as_json()
    assert token_key.keyid in next(c.detail for c in report.checks if c.name == "archive-signature")
