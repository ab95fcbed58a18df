"""The trivy.db mapping remembers version lists by content (issue 16): never a different answer.

``map_record`` asks ``_vulnerable_versions_of``, which keys ``vulnerable_versions`` on the JSON
of one package's ranges and listed versions. On the real corpora every affected package must
get exactly what the function itself computes, whether the answer came from the memo or not,
and the corpora must really repeat content (or the memo would be dead weight).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from export_center.model import to_json_dict
from export_center.trivy import mapping
from support.osv import corpus_advisories

pytestmark = pytest.mark.slow  # every advisory of the corpora


def test_remembered_version_lists_equal_the_computed_ones_on_the_corpora(corpora: Path) -> None:
    mapping._VULNERABLE_BY_CONTENT.clear()
    checked = 0
    ecosystems: set[str] = set()
    for _feed, advisory in corpus_advisories(corpora):
        for affected in to_json_dict(advisory)["affected"]:
            eco = mapping.trivy_ecosystem(affected["ecosystem"])
            if eco is None or eco.is_os or mapping.comparer_for(eco.slug) is None:
                continue
            remembered = mapping._vulnerable_versions_of(affected, eco)
            assert remembered == mapping.vulnerable_versions(affected, eco), affected["name"]
            # A caller may change what it got: the memo's copy must not change with it.
            remembered[0].append("=mutated")
            assert mapping._vulnerable_versions_of(affected, eco)[0][-1:] != ["=mutated"]
            checked += 1
            ecosystems.add(eco.slug)
    hits = mapping._VULNERABLE_BY_CONTENT.hits
    mapping._VULNERABLE_BY_CONTENT.clear()
    assert checked > 9000
    assert {"pip", "go", "cargo"} <= ecosystems
    # Half of the corpora's packages repeat an earlier one's ranges and versions (measured when
    # the memo was added); each package was asked twice above, so hits exceed the calls.
    assert hits > checked * 1.3, (hits, checked)
