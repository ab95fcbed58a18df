"""Fixtures for the signing tests: key stores, OpenSSL as an independent verifier, SoftHSM2."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from export_center.signing.keystore import KeyStore
from support.signing import SO_PIN, SOFTHSM_MODULES, TOKEN_LABEL, USER_PIN, SoftHsm
from support.tools import missing


@pytest.fixture(scope="session")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        missing("openssl")
    assert path is not None
    return path


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


# -- SoftHSM2 ------------------------------------------------------------------------------


def _generate_token_keys(module: str) -> bool:
    """Create an ECDSA P-256 key pair labelled ``p256`` and, when the token has EdDSA, an
    Ed25519 pair labelled ``ed25519``. Returns whether EdDSA is available."""
    import pkcs11
    from pkcs11 import Attribute, Mechanism
    from pkcs11 import KeyType as P11KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    token = pkcs11.lib(module).get_token(token_label=TOKEN_LABEL)
    mechanisms = set(token.slot.get_mechanisms())
    eddsa = {Mechanism.EDDSA, Mechanism.EC_EDWARDS_KEY_PAIR_GEN} <= mechanisms
    private = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: True}
    with token.open(rw=True, user_pin=USER_PIN) as session:
        params = session.create_domain_parameters(
            P11KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        params.generate_keypair(store=True, label="p256", private_template=private)
        if eddsa:
            ed = session.create_domain_parameters(
                P11KeyType.EC_EDWARDS,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("1.3.101.112")},
                local=True,
            )
            ed.generate_keypair(
                store=True,
                label="ed25519",
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                private_template=private,
            )
    return eddsa


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """A fresh SoftHSM2 token in a temp dir. Session-scoped: SoftHSM reads SOFTHSM2_CONF once,
    when the module is first initialized in this process."""
    util = shutil.which("softhsm2-util")
    module = os.environ.get("SOFTHSM2_MODULE") or next(
        (m for m in SOFTHSM_MODULES if Path(m).is_file()), None
    )
    if util is None or module is None:
        missing("SoftHSM2 (softhsm2-util and libsofthsm2.so; Debian package softhsm2)")
    assert util is not None and module is not None
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        init = ["--init-token", "--free", "--label", TOKEN_LABEL]
        subprocess.run(
            [util, *init, "--so-pin", SO_PIN, "--pin", USER_PIN],
            check=True,
            capture_output=True,
        )
        eddsa = _generate_token_keys(module)
        yield SoftHsm(module=module, token=TOKEN_LABEL, pin=USER_PIN, eddsa=eddsa)
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old
