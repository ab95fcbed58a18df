"""Import generations per (tenant, mirror stream), deltas bound to their base's sequence, and the
quarantine's caps (issue 13, items 5, 6 and 9; docs/mirror.md, "Streams" and "Quarantine").

Every refusal: the documented exit code, every row of every table unchanged, the reason kept.
The importing instance runs on SQLite and on the CI PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from export_center.bundle.writer import BundleResult
from export_center.errors import BadInputError, ExitCode
from export_center.importer import generations
from export_center.importer.quarantine import QuarantineLimits, list_entries
from export_center.importer.service import ImportRefused, policy_dir
from export_center.signing.keyfile import FileSigner
from support.cli import run_cli_captured
from support.mirror import (
    TENANT,
    Instance,
    advisory,
    evidence,
    extract,
    new_signer,
    options,
    resign,
    snapshot,
)

FULL = {"kind": "mirror", "variant": "full"}


def _sources(*names: str) -> dict[str, Any]:
    return {"kind": "mirror", "variant": "full", "selectors": {"sources": list(names)}}


def _delta(
    a: Instance, signer: FileSigner, base: BundleResult, name: str, *sources: str
) -> BundleResult:
    body: dict[str, Any] = {
        "kind": "mirror",
        "variant": "delta",
        "options": {"base": {"exportId": base.export_id}},
    }
    if sources:
        body["selectors"] = {"sources": list(sources)}
    return a.export(a.profile(name, body), signer, a.root / f"out-{name}")


@pytest.fixture
def importer(tmp_path: Path, db_url: str) -> Instance:
    """The disconnected instance: SQLite, and PostgreSQL."""
    return Instance.create(tmp_path / "B", url=db_url)


def _refused(inst: Instance, bundle: Path, opts: Any, code: int, match: str) -> ImportRefused:
    before = snapshot(inst.store)
    with pytest.raises(ImportRefused, match=match) as e:
        inst.import_(bundle, opts)
    assert e.value.exit_code == code
    assert snapshot(inst.store) == before, "a refused bundle changed the store"
    assert e.value.quarantine is not None and (e.value.quarantine / "reason.txt").is_file()
    return e.value


def _ids(inst: Instance) -> set[str]:
    return {row[2] for row in evidence(inst.store)["advisory"]}


# -- item 5: a delta applies only on the base export id, digest *and* sequence ------------


def test_a_delta_with_another_base_sequence_is_refused(
    make_instance: Callable[..., Instance],
    importer: Instance,
    signer: FileSigner,
    tmp_path: Path,
) -> None:
    a, b = make_instance("A"), importer
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(5)))
    full = a.export(a.profile("mirror-full", FULL), signer)  # as of sequence 5
    b.import_(full.archive_path, options(signer))
    a.put("feed", advisory("NEW-1"))  # 6: lost, were the delta below applied
    later = a.export(a.profile("mirror-full", FULL), signer, a.root / "later")  # never shipped
    a.put("feed", advisory("NEW-2"))  # 7
    d = _delta(a, signer, later, "mirror-delta")  # the changes after 6 only
    # Named after the installed base (export id and digest right), sequence 6 left as it is:
    # what an exporter given the wrong base sequence signs.
    bundle = extract(d.archive_path, tmp_path / "d")
    installed = generations.installed(b.store, TENANT)[0]

    def rebase(m: dict[str, Any]) -> None:
        m["delta"]["baseExportId"] = installed.export_id
        m["delta"]["baseManifestDigest"] = installed.manifest_digest
        assert m["delta"]["baseSequence"] == 6

    resign(bundle, signer, mutate=rebase)
    err = _refused(b, bundle, options(signer), 6, "is as of sequence 5: the changes in between")
    assert "base" in err.message and "6" in err.message
    # Forcing does not lift it: it is not an older generation, it is a hole.
    _refused(b, bundle, options(signer, force=True, reason="try"), 6, "the changes in between")
    # The delta computed from the installed base applies, and loses nothing.
    good = _delta(a, signer, full, "mirror-delta-ok")
    b.import_(good.archive_path, options(signer))
    assert {"NEW-1", "NEW-2"} <= _ids(b)
    assert evidence(b.store) == evidence(a.store)
    gen = generations.installed(b.store, TENANT)[0]
    assert (gen.stream, gen.generation, gen.base_seq) == ("mirror-full", 2, 5)


# -- item 6: generations per (tenant, stream); no silent replacement ----------------------


def test_a_full_bundle_of_another_profile_does_not_replace_a_stream(
    make_instance: Callable[..., Instance],
    importer: Instance,
    signer: FileSigner,
) -> None:
    a, b = make_instance("A"), importer
    a.put("feed", *(advisory(f"FEED-{i}") for i in range(4)))
    a.put("other", *(advisory(f"OTHER-{i}") for i in range(3)))
    wide = a.export(a.profile("wide", FULL), signer)
    narrow = a.export(a.profile("narrow", _sources("feed")), signer)
    # Export ids carry the as-of sequence ("-s7-"): the same for both.
    assert re.findall(r"-s(\d+)-", wide.export_id) == re.findall(r"-s(\d+)-", narrow.export_id)
    b.import_(wide.archive_path, options(signer))
    # Same tenant, same as-of sequence, valid signature: still not the installed stream's.
    err = _refused(b, narrow.archive_path, options(signer), 6, "belongs to mirror stream 'wide'")
    assert "--replace-stream wide" in (err.hint or "")
    assert _ids(b) == {f"FEED-{i}" for i in range(4)} | {f"OTHER-{i}" for i in range(3)}
    # --replace-stream needs a reason, names an installed stream, and not the bundle's own.
    with pytest.raises(BadInputError, match="--replace-stream needs --reason"):
        options(signer, replace_stream="wide")
    _refused(
        b,
        narrow.archive_path,
        options(signer, replace_stream="nope", reason="x"),
        4,
        "no installed stream of that name",
    )
    # The operator's decision: narrow takes wide over; what narrow lacks goes, recorded.
    got = b.import_(
        narrow.archive_path,
        options(signer, replace_stream="wide", reason="mirror only feed from now on"),
    )
    g = got.generation
    assert (g.stream, g.generation, g.replaced_stream) == ("narrow", 1, "wide")
    assert g.reason == "mirror only feed from now on"
    assert _ids(b) == {f"FEED-{i}" for i in range(4)}
    assert [x.stream for x in generations.installed(b.store, TENANT)] == ["narrow"]
    # The replaced stream's deltas no longer apply.
    a.put("other", advisory("OTHER-9"))
    d = _delta(a, signer, wide, "wide-delta")
    _refused(b, d.archive_path, options(signer), 6, "which a later import replaced")


def test_disjoint_streams_live_side_by_side(
    make_instance: Callable[..., Instance],
    importer: Instance,
    signer: FileSigner,
) -> None:
    a, b = make_instance("A"), importer
    a.put("feed", *(advisory(f"FEED-{i}") for i in range(3)))
    a.put("other", *(advisory(f"OTHER-{i}") for i in range(3)))
    feed = a.export(a.profile("feed-mirror", _sources("feed")), signer)
    other = a.export(a.profile("other-mirror", _sources("other")), signer)
    b.import_(feed.archive_path, options(signer))
    b.import_(other.archive_path, options(signer))
    assert evidence(b.store) == evidence(a.store)
    streams = {g.stream: g.generation for g in generations.installed(b.store, TENANT)}
    assert streams == {"feed-mirror": 1, "other-mirror": 1}
    # A new full of one stream replaces that stream only: FEED-0 removed upstream is removed
    # here, the other stream's documents stay.
    a.put("feed", advisory("FEED-0", version="2.0"), advisory("FEED-7"))
    feed2 = a.export(a.profile("feed-mirror", _sources("feed")), signer, a.root / "f2")
    got = b.import_(feed2.archive_path, options(signer))
    assert (got.generation.stream, got.generation.generation) == ("feed-mirror", 2)
    assert {f"OTHER-{i}" for i in range(3)} <= _ids(b)
    assert "FEED-7" in _ids(b)
    # Each stream continues with its own deltas.
    a.put("other", advisory("OTHER-3"))
    d = _delta(a, signer, other, "other-delta", "other")
    got = b.import_(d.archive_path, options(signer))
    assert (got.generation.stream, got.generation.generation) == ("other-mirror", 2)
    assert evidence(b.store) == evidence(a.store)
    # Replays and order are per stream.
    assert b.import_(feed2.archive_path, options(signer)).status == "replay"
    _refused(b, feed.archive_path, options(signer), 6, "older than the installed")
    assert sorted(g.stream for g in generations.history(b.store, TENANT)) == [
        "feed-mirror",
        "feed-mirror",
        "other-mirror",
        "other-mirror",
    ]
    assert not policy_dir(b.data_dir, TENANT, "feed-mirror").exists()  # no policy shipped


# -- item 9: the quarantine has caps and can be listed and purged --------------------------


def _cli(
    args: list[str], inst: Instance, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[int, str, str]:
    monkeypatch.setenv("STELLA_DATA_DIR", str(inst.data_dir))
    monkeypatch.setenv("STELLA_DATABASE_URL", inst.settings.database_url)
    monkeypatch.setenv("STELLA_CONFIG", "")
    return run_cli_captured(args, monkeypatch, capsys)


def test_quarantine_caps_list_and_purge(
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = make_instance("A"), make_instance("B")
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(20)))
    full = a.export(a.profile("mirror-full", FULL), signer)
    wrong = options(new_signer(), quarantine=QuarantineLimits(max_entries=2, max_bytes=1 << 30))
    size = full.archive_path.stat().st_size
    first = _refused(b, full.archive_path, wrong, 2, "archive-signature")
    assert first.quarantined is not None and first.quarantined.kept
    assert (first.quarantine / full.archive_path.name).read_bytes() == (  # type: ignore[operator]
        full.archive_path.read_bytes()
    )
    # Over the byte cap: the reason is kept, the bundle is not, and the refusal says so.
    small = options(new_signer(), quarantine=QuarantineLimits(max_entries=2, max_bytes=size))
    second = _refused(b, full.archive_path, small, 2, "archive-signature")
    assert second.quarantined is not None and not second.quarantined.kept
    assert "was not kept" in (second.hint or "")
    assert sorted(p.name for p in second.quarantine.iterdir()) == [  # type: ignore[union-attr]
        "entry.json",
        "reason.txt",
        "report.json",
    ]
    # At the entry cap nothing more is written, and the refusal says why.
    before = set((b.data_dir / "quarantine").iterdir())
    with pytest.raises(ImportRefused, match="archive-signature") as third:
        b.import_(full.archive_path, wrong)
    assert third.value.exit_code == 2 and third.value.quarantine is None
    assert "quarantine full (2 entries" in (third.value.hint or "")
    assert set((b.data_dir / "quarantine").iterdir()) == before

    # stella airgap quarantine list | purge
    code, out, _ = _cli(
        ["airgap", "quarantine", "list", "--format", "json"], b, monkeypatch, capsys
    )
    assert code == 0
    listed = orjson.loads(out)
    kept = {e["bundleKept"]: e for e in listed["entries"]}
    assert len(listed["entries"]) == 2 and set(kept) == {True, False}
    assert kept[True]["bytes"] > size > kept[False]["bytes"]
    assert kept[True]["name"] == first.quarantine.name  # type: ignore[union-attr]
    names = [kept[True]["name"], kept[False]["name"]]
    assert all("archive-signature" in e["reason"] for e in listed["entries"])
    for bad in ("../quarantine", "nope", "/etc"):
        code, _, err = _cli(["airgap", "quarantine", "purge", bad], b, monkeypatch, capsys)
        assert code == ExitCode.NOT_FOUND and "no quarantine entry" in err
    assert len(list_entries(b.data_dir)) == 2
    code, _, err = _cli(["airgap", "quarantine", "purge"], b, monkeypatch, capsys)
    assert code == ExitCode.BAD_INPUT and "--all" in err
    code, out, _ = _cli(["airgap", "quarantine", "purge", names[0]], b, monkeypatch, capsys)
    assert code == 0 and "purged 1 entries" in out
    assert [e.name for e in list_entries(b.data_dir)] == names[1:]
    code, out, _ = _cli(
        ["airgap", "quarantine", "purge", "--older-than-days", "1"], b, monkeypatch, capsys
    )
    assert code == 0 and "purged 0 entries" in out
    code, out, _ = _cli(["airgap", "quarantine", "purge", "--all"], b, monkeypatch, capsys)
    assert code == 0 and list_entries(b.data_dir) == []
    # Room again: the next refusal is recorded.
    assert _refused(b, full.archive_path, wrong, 2, "archive-signature").quarantine


def test_cli_replace_stream_needs_a_reason_and_status_shows_streams(
    make_instance: Callable[..., Instance],
    signer: FileSigner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = make_instance("A"), make_instance("B")
    a.put("feed", *(advisory(f"ADV-{i}") for i in range(3)))
    wide = a.export(a.profile("wide", FULL), signer)
    narrow = a.export(a.profile("narrow", _sources("feed")), signer)
    trust = tmp_path / "trust.pem"
    trust.write_bytes(signer.public_key_pem())
    base = ["airgap", "import", "--trust-roots", str(trust)]
    assert _cli([*base, str(wide.archive_path)], b, monkeypatch, capsys)[0] == 0
    code, _, err = _cli([*base, str(narrow.archive_path)], b, monkeypatch, capsys)
    assert code == ExitCode.QUOTA_OR_CONFLICT and "belongs to mirror stream 'wide'" in err
    code, _, err = _cli(
        [*base, str(narrow.archive_path), "--replace-stream", "wide"], b, monkeypatch, capsys
    )
    assert code == ExitCode.BAD_INPUT and "--replace-stream needs --reason" in err
    code, out, _ = _cli(
        [*base, str(narrow.archive_path), "--replace-stream", "wide", "--reason", "narrower"],
        b,
        monkeypatch,
        capsys,
    )
    assert code == 0 and "stream wide replaced" in out
    code, out, _ = _cli(["airgap", "status", "--format", "json"], b, monkeypatch, capsys)
    [row] = orjson.loads(out)["streams"]
    assert (row["stream"], row["replacedStream"], row["reason"]) == ("narrow", "wide", "narrower")
    code, out, _ = _cli(["airgap", "list", "--format", "json"], b, monkeypatch, capsys)
    rows = [(g["stream"], g["generation"]) for g in orjson.loads(out)["generations"]]
    assert rows == [("narrow", 1), ("wide", 1)]
