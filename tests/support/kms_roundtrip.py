"""Run by tests/mirror/test_mirror_kms.py in its own process, as
``python -m support.kms_roundtrip`` (SoftHSM2 reads its configuration once per process): an AES
key on a SoftHSM2 token wraps a mirror bundle's data key."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pkcs11
from pkcs11 import Attribute, KeyType

from export_center.errors import BadInputError
from export_center.importer.service import ImportRefused
from export_center.mirror.crypto import KeyMaterial
from export_center.mirror.kms import Pkcs11Access
from export_center.settings import load_settings
from export_center.signing.keystore import KeyStore
from support.mirror import TENANT, Instance, advisory, evidence, extract, new_signer, options


def main(root: Path, module: str, token_label: str, pin: str) -> None:
    token = pkcs11.lib(module).get_token(token_label=token_label)
    with token.open(rw=True, user_pin=pin) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label="mirror-kek",
            store=True,
            template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
        )
    signer = new_signer()
    a, b = Instance.create(root / "A"), Instance.create(root / "B")
    # The exporter reaches the KMS with the settings' STELLA_PKCS11_MODULE / _PIN (set by the
    # parent test in this process's environment, as for the CLI).
    a = Instance(a.root, load_settings(env=a.env()), a.store)
    assert a.settings.pkcs11_module == module
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(10)))
    key_id = f"kms://pkcs11/{token_label}/mirror-kek"
    body = {"kind": "mirror", "variant": "full", "options": {"encryption": {"kms": [key_id]}}}
    # A KMS key of the operator's HSM is refused until the operator assigns it to the tenant.
    try:
        a.profile("kms-full", body)
    except BadInputError as e:
        assert "options.encryption.kms[0]" in e.message, e
    else:
        raise AssertionError("a KMS key not assigned to the tenant was accepted")
    KeyStore.from_settings(a.settings).assign_kms(key_id, TENANT)
    built = a.export(a.profile("kms-full", body), signer)
    manifest = orjson.loads(
        (extract(built.archive_path, root / "x") / "manifests/export.json").read_bytes()
    )
    [recipient] = manifest["encryption"]["recipients"]
    assert recipient["type"] == "kms" and recipient["keyId"] == key_id, recipient
    provenance = orjson.loads((root / "x/manifests/provenance.json").read_bytes())
    params = provenance["predicate"]["buildDefinition"]["externalParameters"]
    assert params["encryption"]["recipients"] == [key_id], params
    try:
        b.import_(built.archive_path, options(signer))
    except ImportRefused as e:
        assert e.exit_code == 4, e
    else:
        raise AssertionError("imported without a key")
    keys = KeyMaterial(use_kms=True, kms_access=Pkcs11Access(module, pin))
    got = b.import_(built.archive_path, options(signer, keys=keys))
    assert got.status == "imported"
    assert evidence(a.store) == evidence(b.store)
    print("KMS-ROUND-TRIP-OK")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
