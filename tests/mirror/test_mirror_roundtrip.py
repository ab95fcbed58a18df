"""Mirror round trips: instance A exports, instance B (its own data directory) imports, and B's
evidence equals A's: raw bytes, digests, ids, revisions, normalized records, counts and index rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from export_center.archive.reader import iter_members
from export_center.bundle.verify import verify_bundle
from export_center.errors import BadInputError
from export_center.importer.service import ImportRefused, policy_dir
from export_center.ingest.pipeline import ingest_paths
from export_center.policy.repository import PolicyStore
from export_center.signing.interface import load_trust_roots
from export_center.signing.keyfile import FileSigner
from support.mirror import (
    FULL,
    TENANT,
    Instance,
    advisory,
    age_identity,
    evidence,
    extract,
    keys_for,
    options,
)

FULL_PROFILE = {"kind": "mirror", "variant": "full"}


def _manifest(archive: Path) -> dict[str, object]:
    for m in iter_members(archive):
        if m.name == "manifests/export.json":
            doc: dict[str, object] = orjson.loads(m.read())
            return doc
    raise AssertionError("no manifest")


def _changes(a: Instance, corpora: Path, work: Path) -> int:
    """New advisories, a new revision and a withdrawal on A; returns how many records changed."""
    new_dir = work / "new-go"
    new_dir.mkdir()
    for f in sorted((corpora / "golang-vulndb/data/osv").glob("GO-2020-*.json"))[:10]:
        (new_dir / f.name).write_bytes(f.read_bytes())
    a.ingest("go-vulndb", new_dir)
    rust = corpora / "rustsec-advisory-db-osv/crates"
    changed = work / "changed"
    changed.mkdir()
    revised = json.loads((rust / "RUSTSEC-2016-0001.json").read_bytes())
    revised["modified"] = "2026-03-01T00:00:00Z"
    revised["references"].append({"type": "WEB", "url": "https://example.org/update"})
    (changed / "RUSTSEC-2016-0001.json").write_text(json.dumps(revised))
    withdrawn = json.loads((rust / "RUSTSEC-2016-0002.json").read_bytes())
    withdrawn["withdrawn"] = "2026-03-02T00:00:00Z"
    (changed / "RUSTSEC-2016-0002.json").write_text(json.dumps(withdrawn))
    rep = ingest_paths(a.store, [changed], source="rustsec", tenant=TENANT, max_bytes=1 << 24)
    assert (rep.revisions, rep.withdrawals, rep.refused) == (1, 1, [])
    return 12


def test_full_then_delta_round_trip(
    subset_db: Path,
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    corpora: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = make_instance("A", subset_db), make_instance("B")
    full = a.export(a.profile("mirror-full", FULL_PROFILE), signer)
    got = b.import_(full.archive_path, options(signer))
    assert (got.status, got.generation.generation, got.generation.kind) == ("imported", 1, "full")
    assert evidence(a.store) == evidence(b.store)
    assert b.store.counts(TENANT, b.store.current_sequence(TENANT)) == a.store.counts(
        TENANT, a.store.current_sequence(TENANT)
    )

    total = sum(a.store.counts(TENANT, a.store.current_sequence(TENANT)).values())
    changed = _changes(a, corpora, tmp_path)
    delta_profile = a.profile(
        "mirror-delta",
        {
            "kind": "mirror",
            "variant": "delta",
            "options": {"base": {"exportId": full.export_id}},
        },
    )
    delta = a.export(delta_profile, signer)
    section = _manifest(delta.archive_path)["delta"]
    assert isinstance(section, dict)
    assert section["baseExportId"] == full.export_id
    assert section["baseManifestDigest"] == full.manifest_digest
    assert (section["added"], section["updated"], section["removed"]) == (10, 2, [])

    got = b.import_(delta.archive_path, options(signer))
    assert (got.generation.generation, got.generation.kind) == (2, "delta")
    assert got.stats is not None and (got.stats.added, got.stats.updated) == (10, 2)
    assert evidence(a.store) == evidence(b.store)
    assert b.store.get_raw(TENANT, "RUSTSEC-2016-0002").withdrawn

    records_ratio = changed / total
    bytes_ratio = delta.archive_bytes / full.archive_bytes
    with capsys.disabled():
        print(
            f"\n[mirror] full: {total} records, {full.archive_bytes:,} bytes; delta: {changed} "
            f"records ({records_ratio:.2%}), {delta.archive_bytes:,} bytes ({bytes_ratio:.2%} "
            "of the full bundle)"
        )
    # The delta follows the change, plus a fixed overhead (manifests, TUF, README, indexes).
    assert delta.archive_bytes < full.archive_bytes * (records_ratio + 0.03)


def test_export_is_reproducible_and_verifies(
    subset_db: Path, make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path
) -> None:
    a = make_instance("A", subset_db)
    profile = a.profile("mirror-full", FULL_PROFILE)
    one = a.export(profile, signer, tmp_path / "one")
    two = a.export(profile, signer, tmp_path / "two")
    assert one.archive_path.read_bytes() == two.archive_path.read_bytes()
    report = verify_bundle(one.archive_path, load_trust_roots(signer.public_key_pem()))
    assert report.ok, report.as_json()
    names = {m.name for m in iter_members(one.archive_path) if not m.is_dir}
    for expected in (
        "tuf/root.json",
        "tuf/targets.json",
        "tuf/snapshot.json",
        "tuf/timestamp.json",
        "data/raw/advisories/rustsec.jsonl.zst",
        "data/normalized/advisories/rustsec.jsonl.zst",
        "data/raw/vex/vexhub.jsonl.zst",
        "data/indexes/advisories.index.json",
        "data/indexes/vex.index.json",
        "data/indexes/sboms.index.json",
    ):
        assert expected in names
    assert any(n.startswith("data/raw/sboms/") and n.endswith("/sbom.json") for n in names)


def test_tombstones_for_records_leaving_the_selection(
    make_instance: Callable[..., Instance], signer: FileSigner
) -> None:
    a, b = make_instance("A"), make_instance("B")
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(20)))
    body = {"kind": "mirror", "variant": "full", "options": {"includeWithdrawn": False}}
    full = a.export(a.profile("live-full", body), signer)
    b.import_(full.archive_path, options(signer))
    a.put("feed", advisory("ADV-3", withdrawn=True), advisory("ADV-4", version="2.0"))
    a.put("feed", advisory("ADV-99"))
    delta = a.export(
        a.profile(
            "live-delta",
            {
                "kind": "mirror",
                "variant": "delta",
                "options": {"includeWithdrawn": False, "base": {"exportId": full.export_id}},
            },
        ),
        signer,
    )
    section = _manifest(delta.archive_path)["delta"]
    assert isinstance(section, dict)
    assert [(t["upstreamId"], t["reason"]) for t in section["removed"]] == [("ADV-3", "withdrawn")]
    assert (section["added"], section["updated"]) == (1, 1)
    got = b.import_(delta.archive_path, options(signer))
    assert got.stats is not None and got.stats.removed == 1
    mine = evidence(b.store)["advisory"]
    theirs = [r for r in evidence(a.store)["advisory"] if not r[6]]  # A minus withdrawn
    assert mine == theirs
    # The removal is a change of B's own log; the record stays readable as of before.
    assert [c.kind for c in b.store.changes(TENANT, 0, b.store.current_sequence(TENANT))][-1:] in (
        ["insert"],
        ["revision"],
        ["removal"],
    )


def test_chained_deltas_on_the_latest_base_and_reset_baseline(
    make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path
) -> None:
    a, b, c = make_instance("A"), make_instance("B"), make_instance("C")
    out = tmp_path / "published"
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(10)))
    # base.latest before any mirror export of this selection: a full replacement.
    delta_body = {"kind": "mirror", "variant": "delta", "options": {"base": {"latest": True}}}
    profile = a.profile("m-delta", delta_body)
    first = a.export(profile, signer, tmp_path / "first")
    section = _manifest(first.archive_path)["delta"]
    assert isinstance(section, dict) and section["resetBaseline"] is True
    assert section["baseExportId"] is None and section["added"] == 10
    full = a.export(a.profile("m-full", FULL_PROFILE), signer, out)
    b.import_(full.archive_path, options(signer))
    previous = full.export_id
    for i in range(2):
        a.put("feed", advisory(f"NEW-{i}"), advisory("ADV-1", version=f"9.{i}"))
        d = a.export(profile, signer, out)
        # Each delta names the newest earlier mirror export, from the server's own ledger.
        assert _manifest(d.archive_path)["delta"]["baseExportId"] == previous  # type: ignore[index]
        previous = d.export_id
        got = b.import_(d.archive_path, options(signer))
        assert got.generation.kind == "delta" and got.generation.generation == i + 2
        assert evidence(a.store) == evidence(b.store)
    # resetBaseline: a delta that is a full replacement, importable anywhere.
    reset = a.export(
        a.profile(
            "m-reset", {"kind": "mirror", "variant": "delta", "options": {"resetBaseline": True}}
        ),
        signer,
    )
    got = c.import_(reset.archive_path, options(signer))
    assert got.generation.kind == "reset" and got.generation.stream == "m-reset"
    assert evidence(a.store) == evidence(c.store)
    # On B it is a full bundle of another mirror stream: it replaces m-full only when the
    # operator says so (docs/mirror.md, "Streams").
    with pytest.raises(ImportRefused, match="belongs to mirror stream 'm-full'") as refused:
        b.import_(reset.archive_path, options(signer))
    assert refused.value.exit_code == 6
    got = b.import_(
        reset.archive_path, options(signer, replace_stream="m-full", reason="profile renamed")
    )
    assert got.status == "imported" and got.stats is not None and got.stats.added == 0
    assert (got.generation.stream, got.generation.replaced_stream) == ("m-reset", "m-full")
    assert evidence(a.store) == evidence(b.store)


def test_delta_refuses_a_base_with_other_selectors(
    make_instance: Callable[..., Instance], signer: FileSigner
) -> None:
    a = make_instance("A")
    a.put("feed", advisory("ADV-1"))
    full = a.export(a.profile("sel-full", FULL_PROFILE), signer)
    body = {
        "kind": "mirror",
        "variant": "delta",
        "selectors": {"sources": ["feed"]},
        "options": {"base": {"exportId": full.export_id}},
    }
    with pytest.raises(BadInputError, match="other selectors than this delta"):
        a.export(a.profile("sel-delta", body), signer)


def test_age_encrypted_round_trip(
    make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path
) -> None:
    a, b = make_instance("A"), make_instance("B")
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(15)))
    identity, recipient = age_identity()
    other_identity, other_recipient = age_identity()
    enc_body = {
        "kind": "mirror",
        "variant": "full",
        "options": {"encryption": {"recipients": [recipient, other_recipient]}},
    }
    enc = a.export(a.profile("enc-full", enc_body), signer)
    plain = a.export(a.profile("plain-full", FULL_PROFILE), signer)
    manifest = _manifest(enc.archive_path)
    section = manifest["encryption"]
    assert isinstance(section, dict)
    assert [r["recipient"] for r in section["recipients"]] == sorted([recipient, other_recipient])
    # The plaintext stays reproducible: its digests are those of the unencrypted export.
    plain_digests = {
        c["path"]: c["digest"]
        for c in _manifest(plain.archive_path)["contents"]  # type: ignore[attr-defined]
        if c["path"].startswith("data/")
    }
    assert {f["path"]: f["digest"] for f in section["files"]} == plain_digests
    # The stored files are ciphertext, and any verifier checks them without the key.
    assert verify_bundle(enc.archive_path, load_trust_roots(signer.public_key_pem())).ok
    bundle_dir = extract(enc.archive_path, tmp_path / "enc")
    raw = (bundle_dir / "data/raw/advisories/feed.jsonl.zst").read_bytes()
    assert not raw.startswith(b"\x28\xb5\x2f\xfd")  # not a zstd frame: encrypted

    with pytest.raises(ImportRefused, match="no key was given") as e:
        b.import_(enc.archive_path, options(signer))
    assert e.value.exit_code == 4
    with pytest.raises(ImportRefused, match="none of the bundle's recipients") as e:
        b.import_(enc.archive_path, options(signer, keys=keys_for(age_identity()[0])))
    assert e.value.exit_code == 2
    assert b.store.current_sequence(TENANT) == 0

    got = b.import_(enc.archive_path, options(signer, keys=keys_for(other_identity)))
    assert got.status == "imported"
    assert evidence(a.store) == evidence(b.store)
    assert identity  # the first recipient's identity would have opened it as well


@pytest.mark.slow
@pytest.mark.postgres
def test_round_trip_into_postgresql(
    subset_db: Path,
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    corpora: Path,
    tmp_path: Path,
    pg_url: str,
) -> None:
    """The same import on PostgreSQL (scale-out): SQLite A, PostgreSQL B, then B exports on."""
    a = make_instance("A", subset_db)
    b = Instance.create(tmp_path / "B", url=pg_url)
    full = a.export(a.profile("mirror-full", FULL_PROFILE), signer)
    b.import_(full.archive_path, options(signer))
    assert evidence(a.store) == evidence(b.store)
    _changes(a, corpora, tmp_path)
    delta = a.export(
        a.profile(
            "mirror-delta",
            {
                "kind": "mirror",
                "variant": "delta",
                "options": {"base": {"exportId": full.export_id}},
            },
        ),
        signer,
    )
    b.import_(delta.archive_path, options(signer))
    assert evidence(a.store) == evidence(b.store)
    # B serves what it imported: its own full mirror imports into C with the same evidence.
    c = make_instance("C")
    onward = b.export(b.profile("mirror-full", FULL_PROFILE), signer, tmp_path / "onward")
    c.import_(onward.archive_path, options(signer))
    assert evidence(c.store) == evidence(a.store)


@pytest.mark.slow
@pytest.mark.slow
def test_full_corpus_round_trip(
    corpora: Path,
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = make_instance("A"), make_instance("B")
    started = time.monotonic()
    for source, folder in FULL:
        ingest_paths(a.store, [corpora / folder], source=source, tenant=TENANT, max_bytes=64 << 20)
    ingested = time.monotonic()
    full = a.export(a.profile("mirror-full", FULL_PROFILE), signer)
    exported = time.monotonic()
    got = b.import_(full.archive_path, options(signer))
    imported = time.monotonic()
    assert got.stats is not None and got.stats.added > 9000
    assert evidence(a.store) == evidence(b.store)
    total = got.stats.added

    # About 1 % of the records change: new revisions of 90 Go advisories.
    revised = tmp_path / "revised"
    revised.mkdir()
    for f in sorted((corpora / "golang-vulndb/data/osv").glob("GO-2023-*.json"))[:90]:
        doc = json.loads(f.read_bytes())
        doc["modified"] = "2026-04-01T00:00:00Z"
        (revised / f.name).write_text(json.dumps(doc))
    rep = ingest_paths(a.store, [revised], source="go-vulndb", tenant=TENANT, max_bytes=1 << 24)
    assert rep.revisions == 90
    delta = a.export(
        a.profile(
            "mirror-delta",
            {
                "kind": "mirror",
                "variant": "delta",
                "options": {"base": {"exportId": full.export_id}},
            },
        ),
        signer,
    )
    got = b.import_(delta.archive_path, options(signer))
    assert got.stats is not None and got.stats.updated == 90
    assert evidence(a.store) == evidence(b.store)
    with capsys.disabled():
        print(
            f"\n[mirror] full corpus: {total} records, {full.archive_bytes:,} bytes; "
            f"ingest {ingested - started:.0f}s, export {exported - ingested:.0f}s, "
            f"import {imported - exported:.0f}s; delta: 90 records ({90 / total:.2%}), "
            f"{delta.archive_bytes:,} bytes ({delta.archive_bytes / full.archive_bytes:.2%})"
        )


@pytest.mark.slow
def test_policy_parts_travel_with_the_mirror(
    subset_db: Path, make_instance: Callable[..., Instance], signer: FileSigner, tmp_path: Path
) -> None:
    a, b = make_instance("A", subset_db), make_instance("B")
    document = b'apiVersion: stella.policy/v1\nname: gate\nversion: "3"\n'
    PolicyStore(a.store).upload(TENANT, "gate", document)
    body = {
        "kind": "mirror",
        "variant": "full",
        "policy": {"name": "gate", "policySnapshotMode": "required"},
    }
    built = a.export(a.profile("mirror-policy", body), signer)
    manifest = _manifest(built.archive_path)
    section = manifest["policy"]
    assert isinstance(section, dict) and section["included"] and section["name"] == "gate"
    paths = {c["path"] for c in manifest["contents"]}  # type: ignore[attr-defined]
    assert {
        "data/policy/snapshot.json",
        "data/policy/evaluations.jsonl.zst",
        "data/consensus/vex_consensus.jsonl.zst",
    } <= paths
    got = b.import_(built.archive_path, options(signer))
    assert got.status == "imported"
    kept = policy_dir(b.data_dir, TENANT, "mirror-policy")  # per mirror stream
    assert (kept / "policy/snapshot.json").read_bytes() == (
        extract(built.archive_path, tmp_path / "x") / "data/policy/snapshot.json"
    ).read_bytes()
    assert evidence(a.store) == evidence(b.store)
    # A policy the tenant does not have: the revision is refused when it is written.
    broken = {**body, "policy": {"name": "nope", "policySnapshotMode": "required"}}
    with pytest.raises(BadInputError, match=r"policy\.name: no policy 'nope'"):
        a.profile("mirror-policy-2", broken)
