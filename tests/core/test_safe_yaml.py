"""The one YAML loader (export_center/safe_yaml.py) and the places that must use it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from export_center.safe_yaml import YamlRefused, load_yaml

SRC = Path(__file__).resolve().parents[2] / "src" / "export_center"

# Ten levels of nine-fold aliases: 9**10 (3.4 billion) strings once expanded.
BOMB = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"%s: &%s [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n"
    % ((chr(c).encode(),) * 2 + (chr(c - 1).encode(),) * 9)
    for c in range(ord("b"), ord("l"))
)


def test_a_plain_document() -> None:
    text = b"name: demo\nversion: 3\nitems: [a, b]\nwhen: 2024-01-01T00:00:00Z\nday: 2025-06-30\n"
    assert load_yaml(text, "x.yaml") == {
        "name": "demo",
        "version": 3,
        "items": ["a", "b"],
        # Timestamps stay text, as they read from JSON.
        "when": "2024-01-01T00:00:00Z",
        "day": "2025-06-30",
    }


def test_an_expansion_bomb_is_refused_before_it_expands() -> None:
    with pytest.raises(YamlRefused, match=r"^bomb\.yaml: YAML anchor &a at line 1 column 4"):
        load_yaml(BOMB, "bomb.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"a: &x 1\nb: 2\n", r"YAML anchor &x at line 1 column 4"),
        (b"a: *x\n", r"YAML alias \*x at line 1 column 4"),
        (b"- &first {k: v}\n", r"YAML anchor &first at line 1 column 3"),
    ],
)
def test_anchors_and_aliases_are_refused(text: bytes, message: str) -> None:
    with pytest.raises(YamlRefused, match=message):
        load_yaml(text, "d.yaml")


def test_stars_and_ampersands_in_text_are_fine() -> None:
    text = b"range: '>= 1.*'\nnote: \"R&D, a * b\"\nplain: a*b & c\n"
    assert load_yaml(text, "t.yaml") == {
        "range": ">= 1.*",
        "note": "R&D, a * b",
        "plain": "a*b & c",
    }


def test_size_is_bounded() -> None:
    with pytest.raises(YamlRefused, match=r"big\.yaml: 1,025 bytes is over the 1,024-byte limit"):
        load_yaml(b"a: " + b"x" * 1021 + b"\n", "big.yaml", max_bytes=1024)
    assert load_yaml(b"a: " + b"x" * 1020, "ok.yaml", max_bytes=1024) == {"a": "x" * 1020}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"a: [unclosed\n", r"malformed YAML at line 2 column 1: did not find expected ',' or ']'"),
        (b"a: 1\n  b: 2\n", r"malformed YAML at line 2 column 4"),
        (b"[" * 5000 + b"]" * 5000, r"malformed YAML at line 1 column \d+: .*nesting depth"),
        (b"a: \xff\xfe\x00", r"malformed YAML: "),
    ],
)
def test_malformed_documents_name_the_place(text: bytes, message: str) -> None:
    with pytest.raises(YamlRefused, match=message) as info:
        load_yaml(text, "m.yaml")
    assert "\n" not in str(info.value)  # one line, whatever the parser said


def test_every_yaml_load_goes_through_the_one_loader() -> None:
    """No module but safe_yaml.py parses YAML itself (safe_load expands aliases)."""
    parsers = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if re.search(r"\byaml\.(safe_load|load|full_load|unsafe_load|parse)\b", path.read_text())
    }
    assert parsers == {"safe_yaml.py"}


@pytest.mark.parametrize("kind", ["policy", "profile", "evidence", "spec"])
def test_each_loader_refuses_the_bomb(kind: str, tmp_path: Path) -> None:
    from export_center.errors import BadInputError

    if kind == "policy":
        from export_center.policy.document import load_policy

        with pytest.raises(BadInputError, match=r"p\.yaml: .*YAML anchor &a"):
            load_policy(BOMB, "p.yaml")
    elif kind == "evidence":
        from export_center.errors import DocumentRefused
        from export_center.ingest.detect import parse_document

        with pytest.raises(DocumentRefused, match=r"e\.yaml: YAML anchor &a"):
            parse_document(BOMB, "e.yaml")
    elif kind == "spec":
        from export_center.devportal.errors import InvalidSpecError
        from export_center.devportal.specs import SpecFile, validate_specs

        (tmp_path / "specs").mkdir()
        (tmp_path / "specs" / "api.yaml").write_bytes(BOMB)
        with pytest.raises(InvalidSpecError, match=r"specs/api\.yaml: YAML anchor &a"):
            validate_specs([SpecFile("specs/api.yaml", BOMB)], tmp_path)
    else:
        from typer.testing import CliRunner

        from export_center.cli import main

        (tmp_path / "bomb.yaml").write_bytes(BOMB)
        args = ["export", "profile", "create", "bomb", "--file", str(tmp_path / "bomb.yaml")]
        env = {"STELLA_DATA_DIR": str(tmp_path / "data"), "STELLA_CONFIG": ""}
        result = CliRunner().invoke(main.app, args, env=env)
        assert isinstance(result.exception, BadInputError)
        assert "YAML anchor &a" in result.exception.message
