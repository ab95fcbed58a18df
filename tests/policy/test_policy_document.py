"""The policy document: validation that names the field, digest identity, severity ratings."""

from __future__ import annotations

import json

import pytest

from export_center.errors import BadInputError
from export_center.model import Advisory, Severity
from export_center.policy.document import default_policy, load_policy
from export_center.policy.severity import rate, score_vector

POLICY_YAML = b"""\
apiVersion: stella.policy/v1
name: production
version: 3
vexProviders:
  trustOrder: [Example Company ProductCERT, Rancher Security team]
severityThresholds: {fail: critical, warn: HIGH}
ignore:
  - vulnerability: CVE-2020-28724
    purl: pkg:pypi/werkzeug
    reason: not reachable in our deployment
    expires: 2025-06-30
"""


def test_yaml_and_json_spellings_share_one_digest() -> None:
    from_yaml = load_policy(POLICY_YAML, "p.yaml")
    as_json = json.dumps(
        {
            "ignore": [
                {
                    "expires": "2025-06-30",
                    "purl": "pkg:pypi/werkzeug",
                    "reason": "not reachable in our deployment",
                    "vulnerability": "CVE-2020-28724",
                }
            ],
            "severityThresholds": {"warn": "HIGH", "fail": "CRITICAL", "unknown": "warn"},
            "vexProviders": {
                "trustOrder": ["Example Company ProductCERT", "Rancher Security team"]
            },
            "version": "3",
            "name": "production",
            "apiVersion": "stella.policy/v1",
        }
    ).encode()
    from_json = load_policy(as_json, "p.json")
    assert from_yaml.digest == from_json.digest
    assert from_yaml.digest.startswith("sha256:") and len(from_yaml.digest) == 71
    assert from_yaml.document.version == "3"
    assert from_yaml.digest != default_policy().digest
    # The canonical document carries the defaults, so the digest names the effective policy.
    assert from_yaml.document.canonical()["vexAffects"] == ["not_affected", "fixed"]


HEAD = b"apiVersion: stella.policy/v1\nname: x\nversion: 1\n"
IGNORE = HEAD + b"ignore:\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            b"apiVersion: stella.policy/v2\nname: x\nversion: 1\n",
            r"apiVersion: Input should be 'stella\.policy/v1'",
        ),
        (b"apiVersion: stella.policy/v1\nversion: 1\n", r"name: Field required"),
        (HEAD + b"failOn: HIGH\n", r"failOn: Extra inputs are not permitted"),
        (
            IGNORE + b"- vulnerability: CVE-1\n  reason: r\n",
            r"ignore\[0\]\.expires: Field required",
        ),
        (
            IGNORE + b"- vulnerability: CVE-1\n  expires: 2025-01-01\n",
            r"ignore\[0\]\.reason: Field required",
        ),
        (
            IGNORE + b"- reason: r\n  expires: 2025-01-01\n",
            r"ignore\[0\]: Value error, an ignore rule needs a vulnerability, a purl, or both",
        ),
        (
            IGNORE + b"- purl: werkzeug\n  reason: r\n  expires: 2025-01-01\n",
            r"neither a purl nor a glob pattern",
        ),
        (
            HEAD + b"severityThresholds: {fail: LOW, warn: HIGH}\n",
            r"severityThresholds: Value error, warn \(HIGH\) is above fail \(LOW\)",
        ),
        (
            HEAD + b"severityThresholds: {fail: SEVERE}\n",
            r"severityThresholds\.fail: Input should be 'NONE', 'LOW', 'MEDIUM', 'HIGH' or "
            r"'CRITICAL'",
        ),
        (
            HEAD + b"vexAffects: [affected]\n",
            r"vexAffects\[0\]: Input should be 'not_affected' or 'fixed'",
        ),
        (HEAD + b"vexProviders: {trustOrder: [a, a]}\n", r"trustOrder lists a more than once"),
        (b"- just\n- a list\n", r"a policy document must be a mapping, got list"),
        (b"apiVersion: [unclosed\n", r"not a YAML or JSON policy document"),
    ],
)
def test_invalid_policies_name_the_field(text: bytes, message: str) -> None:
    with pytest.raises(BadInputError, match=message) as info:
        load_policy(text, "policy.yaml")
    assert str(info.value).startswith("policy.yaml: ")


def test_cvss_scores_and_levels() -> None:
    assert score_vector("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") == (
        9.8,
        "CRITICAL",
    )
    assert score_vector("CVSS_V3", "AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N") == (
        7.5,
        "HIGH",
    )  # CycloneDX
    assert score_vector(
        "CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
    ) == (9.3, "CRITICAL")
    assert score_vector("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P") == (7.5, "HIGH")
    assert score_vector("CVSS_V3", "CVSS:3.1/AV:N") is None


def test_rating_prefers_vectors_then_the_highest_then_labels() -> None:
    low = Advisory(
        "A-1", severities=(Severity("CVSS_V3", "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"),)
    )
    high = Advisory(
        "B-1",
        severities=(Severity("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N"),),
        severity_label="LOW",
    )
    labelled = Advisory("C-1", severity_label="MODERATE")
    r = rate([low, high, labelled])
    assert (r.level, r.score, r.source, r.type) == ("HIGH", 7.5, "B-1", "CVSS_V3")
    r = rate([labelled])
    assert (r.level, r.score, r.type) == ("MEDIUM", None, "LABEL")
    v2_only = Advisory("D-1", severities=(Severity("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P"),))
    assert rate([v2_only, low]).type == "CVSS_V3"  # v2 counts only without v3/v4
    assert rate([Advisory("E-1")]).level == "UNKNOWN"
