"""OpenAPI validation of specs/: invalid documents refused naming the file; never online."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from export_center.devportal import InvalidSpecError, build_bundle
from export_center.devportal.specs import SpecFile, validate_specs
from support.devportal import Key

MINIMAL = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {}\n"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any connection attempt fails the test loudly (validation must stay offline)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


def _specs(root: Path, files: dict[str, str]) -> list[SpecFile]:
    out = []
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out.append(SpecFile(f"specs/{name}", text.encode()))
    return out


def test_invalid_openapi_is_refused_naming_the_file_and_first_error(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    (demo_input / "specs" / "broken.yaml").write_text(
        "openapi: 3.1.0\n"
        "info: {title: Broken, version: '1'}\n"
        "paths:\n"
        "  /things:\n"
        "    get:\n"
        "      responses:\n"
        "        '200': {description: 42}\n"
    )
    with pytest.raises(
        InvalidSpecError,
        match=r"^specs/broken\.yaml: invalid OpenAPI document: at .*responses.*200.*description: "
        r"42 is not of type .string.",
    ) as caught:
        build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)
    assert caught.value.path == "specs/broken.yaml"
    assert not (tmp_path / "out" / "devportal-offline-bundle.tgz").exists()


def test_missing_required_field_is_refused(tmp_path: Path) -> None:
    specs = _specs(tmp_path, {"api.json": json.dumps({"openapi": "3.0.3", "paths": {}})})
    with pytest.raises(InvalidSpecError, match=r"specs/api\.json: .*.info. is a required"):
        validate_specs(specs, tmp_path)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    specs = _specs(tmp_path, {"api.yaml": "openapi: 3.1.0\ninfo:\n  title: [unclosed\n"})
    line = r"specs/api\.yaml: malformed YAML at line \d+ column \d+"
    with pytest.raises(InvalidSpecError, match=line):
        validate_specs(specs, tmp_path)


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    specs = _specs(tmp_path, {"api.json": '{\n "openapi": "3.1.0",\n}\n'})
    with pytest.raises(InvalidSpecError, match=r"specs/api\.json: line 3: invalid JSON"):
        validate_specs(specs, tmp_path)


def test_versions_2_0_3_0_3_1_are_validated(tmp_path: Path) -> None:
    specs = _specs(
        tmp_path,
        {
            "v2.json": json.dumps(
                {"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": {}}
            ),
            "v30.yaml": MINIMAL.replace("3.1.0", "3.0.3"),
            "v31.yml": MINIMAL,
        },
    )
    assert validate_specs(specs, tmp_path) == ["specs/v2.json", "specs/v30.yaml", "specs/v31.yml"]


def test_unsupported_version_is_refused(tmp_path: Path) -> None:
    specs = _specs(tmp_path, {"api.yaml": MINIMAL.replace("3.1.0", "9.9.9")})
    with pytest.raises(InvalidSpecError, match=r"specs/api\.yaml: .*unsupported OpenAPI version"):
        validate_specs(specs, tmp_path)


REF_SPEC = (
    "openapi: 3.1.0\n"
    "info: {title: t, version: '1'}\n"
    "paths:\n"
    "  /a:\n"
    "    get:\n"
    "      responses:\n"
    "        '200': {$ref: 'REF'}\n"
)


def test_relative_refs_to_fragments_inside_specs_are_followed(tmp_path: Path) -> None:
    specs = _specs(
        tmp_path,
        {
            "api.yaml": REF_SPEC.replace("REF", "common/responses.yaml#/Ok"),
            "common/responses.yaml": "Ok: {description: fine}\n",
        },
    )
    assert validate_specs(specs, tmp_path) == ["specs/api.yaml"]


def test_dangling_ref_is_refused(tmp_path: Path) -> None:
    specs = _specs(
        tmp_path,
        {
            "api.yaml": REF_SPEC.replace("REF", "common.yaml#/Missing"),
            "common.yaml": "Ok: {description: fine}\n",
        },
    )
    with pytest.raises(InvalidSpecError, match=r"specs/api\.yaml: .*cannot resolve"):
        validate_specs(specs, tmp_path)


@pytest.mark.parametrize(
    "ref",
    [
        "https://specs.example/common.yaml#/Ok",
        "http://specs.example/common.yaml#/Ok",
        "//specs.example/common.yaml#/Ok",
        "ftp://specs.example/common.yaml#/Ok",
    ],
)
def test_remote_refs_are_refused_not_fetched(tmp_path: Path, ref: str) -> None:
    specs = _specs(tmp_path, {"api.yaml": REF_SPEC.replace("REF", ref)})
    with pytest.raises(InvalidSpecError, match=r"specs/api\.yaml: .*\$ref"):
        validate_specs(specs, tmp_path)


def test_refs_leaving_specs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text("Ok: {description: outside}\n")
    root = tmp_path / "specs"
    specs = _specs(root, {"api.yaml": REF_SPEC.replace("REF", "../secret.yaml#/Ok")})
    with pytest.raises(InvalidSpecError, match=r"leaves specs/"):
        validate_specs(specs, root)


def test_json_or_yaml_that_is_not_openapi_nor_referenced_is_refused(tmp_path: Path) -> None:
    specs = _specs(tmp_path, {"api.yaml": MINIMAL, "stray.json": '{"info": {}}'})
    with pytest.raises(
        InvalidSpecError, match=r"specs/stray\.json: not an OpenAPI document .*not referenced"
    ):
        validate_specs(specs, tmp_path)


def test_other_files_under_specs_are_bundled_unvalidated(
    demo_input: Path, tmp_path: Path, ed25519_key: Key
) -> None:
    (demo_input / "specs" / "README.md").write_text("# specs\n")
    result = build_bundle(demo_input, tmp_path / "out", ed25519_key.signer)
    assert result.openapi_documents == ("specs/export-center.openapi.yaml",)
