"""Ingestion under hostile input (issue 13): non-UTF-8 names, lone surrogates, one bad record in a
batch, every kind of folder entry, files too large to read, and the small bookkeeping cases.
Each test failed on the code before the fix; the hostile-folder test checks that indexed +
skipped + failed equals every entry the walk saw, each failure reported with a bytes-safe path."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from opensearch_cir import admin
from opensearch_cir.engines.embedded import EmbeddedClient
from opensearch_cir.ingest import Ingestor, Record, ingest

INDEX = "cir-hostile"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from opensearch_cir.encoders import load_encoder
    from opensearch_cir.encoders.tiny import build_tiny_model

    return load_encoder(build_tiny_model(tmp_path_factory.mktemp("tiny")), threads=1, device="cpu")


@pytest.fixture()
def engine(tmp_path, encoder):
    client = EmbeddedClient(tmp_path / "engine")
    admin.setup_index(client, INDEX, encoder.manifest, pipelines={})
    yield client
    client.close()


def png(color, size=(24, 18)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def errors_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def write(path: str | bytes | Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


# -- item 1: a non-UTF-8 file name, lone surrogates anywhere ------------------------------------------

def test_a_latin1_file_name_is_indexed_and_its_uri_served_back(engine, encoder, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    write(folder / "ok.png", png("red"))
    write(os.fsencode(folder) + b"/caf\xe9.png", png("blue"))
    report = ingest(engine, INDEX, encoder, folder, errors=tmp_path / "e.jsonl")
    assert (report.input, report.indexed, report.failed) == (2, 2, 0), report.failures
    uris = {hit["_source"]["image_uri"] for hit in engine.search(index=INDEX, body={"size": 10})["hits"]["hits"]}
    from opensearch_cir.ingest.records import local_path

    latin1 = next(uri for uri in uris if uri.startswith("file://"))
    assert latin1.endswith("/caf%E9.png")
    assert os.fsencode(local_path(latin1)) == os.fsencode(folder.resolve()) + b"/caf\xe9.png"


def test_a_lone_surrogate_in_an_id_or_text_fails_only_that_bulk_item(engine):
    body = [{"index": {"_index": INDEX, "_id": "good"}}, {"caption": "fine"},
            {"index": {"_index": INDEX, "_id": "bad-text"}}, {"caption": "x \ud800 y"},
            {"index": {"_index": INDEX, "_id": "bad-\udce9-id"}}, {"caption": "fine"},
            {"index": {"_index": INDEX, "_id": "bad-metadata"}}, {"metadata": {"k": "\udce9"}}]
    items = [next(iter(item.values())) for item in engine.bulk(body=body)["items"]]
    assert [item["status"] for item in items] == [201, 400, 400, 400]
    assert "invalid UTF-8" in items[1]["error"]["reason"] and items[2]["_id"] == "bad-\\udce9-id"
    assert engine.get(index=INDEX, id="good")["_source"]["caption"] == "fine"


# -- item 2: one bad caption never fails its batch; the failure names the record -------------------------

def test_one_bad_caption_fails_alone_and_is_named(engine, encoder, tmp_path):
    for i in range(10):
        write(tmp_path / f"i{i}.png", png((i * 20, 10, 10)))
    rows = [{"image": f"i{i}.png", "caption": f"row {i}"} for i in range(9)] + [{"image": "i9.png", "caption": "\udce9"}]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    report = ingest(engine, INDEX, encoder, tmp_path / "rows.jsonl", errors=tmp_path / "e.jsonl", batch_size=32)
    assert (report.indexed, report.failed) == (9, 1)
    [failure] = errors_of(tmp_path / "e.jsonl")
    assert failure["source"] == "rows.jsonl:10" and "caption" in failure["reason"] and "\\udce9" in failure["reason"]


def test_a_batch_the_encoder_refuses_is_retried_record_by_record(engine, encoder, tmp_path, monkeypatch):
    original = encoder.encode_texts

    def refuses_poison(texts):
        if any("poison" in text for text in texts):
            raise ValueError("the tokenizer refused a text")
        return original(texts)

    monkeypatch.setattr(encoder, "encode_texts", refuses_poison)
    records = [Record(png((i, 50, 50)), captions=[f"caption {i}" if i != 3 else "poison"], source=f"#{i}") for i in range(6)]
    with Ingestor(engine, INDEX, encoder, batch_size=6) as ingestor:
        ingestor.add_many(records)
    assert (ingestor.report.indexed, ingestor.report.failed) == (5, 1)
    assert ingestor.report.failures[0].source == "#3" and ingestor.report.failures[0].stage == "encode"


def test_a_bulk_request_refused_as_a_whole_is_split_down_to_the_bad_document(encoder, tmp_path):
    from test_ingest import InMemoryClient

    class StrictClient(InMemoryClient):
        """Like a cluster whose client cannot serialise a body with one bad document."""

        def bulk(self, body, **kwargs):
            if any(source.get("metadata", {}).get("bad") for source in body[1::2]):
                raise UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates not allowed")
            return super().bulk(body, **kwargs)

    client = StrictClient()
    admin.setup_index(client, INDEX, encoder.manifest, pipelines={})
    records = [Record(png((i, 9, 9)), metadata={"bad": i == 4}, source=f"#{i}") for i in range(8)]
    with Ingestor(client, INDEX, encoder, batch_size=8) as ingestor:
        ingestor.add_many(records)
    assert (ingestor.report.indexed, ingestor.report.failed) == (7, 1)
    assert ingestor.report.failures[0].source == "#4" and ingestor.report.failures[0].stage == "write"


# -- item 8: the walk counts every entry; no file is read whole ----------------------------------------

def test_folder_walk_reports_links_fifos_and_symlinked_folders(engine, encoder, tmp_path):
    folder = tmp_path / "d"
    (folder / "real").mkdir(parents=True)
    write(folder / "real" / "a.png", png("green"))
    os.symlink(folder / "missing.png", folder / "gone.png")
    os.symlink(folder / "loop.png", folder / "loop.png")
    os.mkfifo(folder / "pipe.jpg")
    os.symlink(folder / "real", folder / "linked")
    report = ingest(engine, INDEX, encoder, folder, errors=tmp_path / "e.jsonl")
    reasons = {e["source"]: e["reason"] for e in errors_of(tmp_path / "e.jsonl")}
    assert reasons == {"gone.png": "broken symbolic link (its target does not exist)",
                       "loop.png": "symbolic link loop", "pipe.jpg": "not a regular file (a FIFO)"}
    assert (report.input, report.indexed, report.skipped, report.failed) == (5, 1, 1, 3)
    assert report.skip_reasons == {"symlinked folder not followed": 1}


def test_a_huge_file_is_refused_before_reading(engine, encoder, tmp_path, monkeypatch):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:  # sparse: 2 GiB on paper, nothing on disk
        handle.truncate(2 << 30)
    read_sizes = []
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: read_sizes.append(a) or real_fdopen(*a, **k))
    report = ingest(engine, INDEX, encoder, tmp_path, errors=tmp_path / "e.jsonl")
    [failure] = errors_of(tmp_path / "e.jsonl")
    assert report.failed == 1 and read_sizes == []
    assert failure["source"] == "huge.jpg" and "2147483648 bytes is more than the limit" in failure["reason"]


# -- item 9: the smaller ingestion cases ------------------------------------------------------------

def test_errors_report_in_a_missing_folder_is_created(engine, encoder, tmp_path):
    write(tmp_path / "bad.jpg", b"not an image")
    report = ingest(engine, INDEX, encoder, tmp_path, errors=tmp_path / "new" / "folder" / "e.jsonl")
    assert report.failed == 1 and len(errors_of(tmp_path / "new" / "folder" / "e.jsonl")) == 1


def test_interrupted_summary_counts_every_input(engine, encoder, tmp_path):
    records = [Record(png((i, 1, 1)), source=f"#{i}") for i in range(20)]
    ingestor = Ingestor(engine, INDEX, encoder, batch_size=4, total=len(records))
    ingestor.add_many(records[:6])
    ingestor.report.interrupted = "stopped by the user"
    report = ingestor.close()
    assert report.summary().startswith("input 20:")
    assert report.indexed + report.skipped + report.failed + report.not_processed == 20


def test_a_duplicate_is_tried_afresh_when_its_first_copy_failed_for_its_own_metadata(encoder, tmp_path):
    from test_ingest import InMemoryClient

    class RejectsBadMetadata(InMemoryClient):
        def bulk(self, body, **kwargs):
            response = super().bulk([line for pair in zip(body[::2], body[1::2]) if not pair[1].get("metadata", {}).get("bad")
                                     for line in pair], **kwargs)
            items = iter(response["items"])
            response["items"] = [
                {"index": {"_id": action["index"]["_id"], "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad"}}}
                if source.get("metadata", {}).get("bad") else next(items) for action, source in zip(body[::2], body[1::2])]
            return response

    client = RejectsBadMetadata()
    admin.setup_index(client, INDEX, encoder.manifest, pipelines={})
    same = png("purple")
    with Ingestor(client, INDEX, encoder, batch_size=2, retry_backoff=0) as ingestor:
        ingestor.add(Record(same, metadata={"bad": True}, source="first"))
        ingestor.add(Record(same, metadata={"bad": False}, source="second"))
    assert (ingestor.report.indexed, ingestor.report.failed) == (1, 1)
    assert [f.source for f in ingestor.report.failures] == ["first"]


# -- the hostile folder --------------------------------------------------------------------------

def test_hostile_folder_every_entry_is_indexed_skipped_or_failed_with_a_reason(engine, encoder, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "hostile"
    (root / "sub").mkdir(parents=True)
    (root / "locked").mkdir()
    broot = os.fsencode(root)
    write(root / "café.png", png("red"))                          # UTF-8 name
    write(broot + b"/caf\xe9.png", png("blue"))                    # Latin-1 name
    write(broot + b"/sub/na\xefve \xff.jpg", png("yellow"))        # invalid UTF-8 in a subfolder
    write(root / "sub" / "copy.png", png("red"))                  # duplicate of café.png
    write(root / "empty.jpg", b"")
    write(root / "truncated.png", png("white", (64, 64))[:70])
    bomb = io.BytesIO()
    Image.new("1", (3000, 3000)).save(bomb, format="PNG")         # 9 MP in a few KB
    write(root / "bomb.png", bomb.getvalue())
    with open(root / "huge.jpg", "wb") as handle:
        handle.truncate(3 << 30)                                   # sparse 3 GiB
    write(root / "secret.png", png("black"))
    write(root / "locked" / "hidden.png", png("gray"))
    os.chmod(root / "secret.png", 0)
    os.chmod(root / "locked", 0)
    if os.geteuid() == 0:  # root reads anything: make the same two entries unreadable for it too
        real_open, real_scandir = os.open, os.scandir

        def guarded_open(path, *args, **kwargs):
            if os.fsencode(path).endswith(b"/secret.png"):
                raise PermissionError(13, "Permission denied")
            return real_open(path, *args, **kwargs)

        def guarded_scandir(path="."):
            if os.fsencode(path).endswith(b"/locked"):
                raise PermissionError(13, "Permission denied")
            return real_scandir(path)

        monkeypatch.setattr(os, "open", guarded_open)
        monkeypatch.setattr(os, "scandir", guarded_scandir)
    os.symlink(root / "nowhere.png", root / "broken.png")
    os.symlink(root / "loop.jpg", root / "loop.jpg")
    os.symlink(root / "sub", root / "sub-link")
    os.mkfifo(root / "fifo.png")
    (root / "notes.md").write_text("ignored: not an image by extension")

    report = ingest(engine, INDEX, encoder, root, errors=tmp_path / "e.jsonl", max_pixels=4_000_000, batch_size=4)
    os.chmod(root / "locked", 0o755)
    failures = {e["source"]: e for e in errors_of(tmp_path / "e.jsonl")}
    seen = 14  # 3 names + copy + empty + truncated + bomb + huge + secret + locked + broken + loop + sub-link + fifo
    assert report.indexed + report.skipped + report.failed == report.input == seen
    assert (report.indexed, report.skipped, report.failed) == (3, 2, 9), report.failures
    assert report.skip_reasons == {"duplicate image in this run": 1, "symlinked folder not followed": 1}
    expected = {"empty.jpg": "empty", "truncated.png": "truncated", "bomb.png": "pixels", "huge.jpg": "bytes is more than",
                "secret.png": "Permission denied", "locked": "folder cannot be listed", "broken.png": "broken symbolic link",
                "loop.jpg": "symbolic link loop", "fifo.png": "FIFO"}
    assert set(failures) == set(expected), failures
    for source, words in expected.items():
        assert words.lower() in failures[source]["reason"].lower(), failures[source]
    indexed_uris = {hit["_source"]["image_uri"] for hit in engine.search(index=INDEX, body={"size": 20})["hits"]["hits"]}
    assert {"file://" + str(root.resolve()) + "/caf%E9.png",
            "file://" + str(root.resolve()) + "/sub/na%EFve%20%FF.jpg"} <= indexed_uris

    # bad captions in each manifest format: the bad rows fail, named by file and row, the rest is indexed
    for i in range(4):
        write(root / f"m{i}.png", png((200, 40 * i, 0)))
    (root / "rows.jsonl").write_bytes(b"\n".join([
        json.dumps({"image": "m0.png", "caption": "fine"}).encode(),
        json.dumps({"image": "m1.png", "caption": "\udce9"}).encode(),
        b'{"image": "m2.png", "caption": "latin-1 \xe9 bytes"}',
        b"{not json",
    ]))
    (root / "rows.csv").write_bytes(b"image,caption\nm0.png,fine\nm1.png,latin-1 \xe9 bytes\nm3.png,\"fine too\"\n")
    pq.write_table(pa.table({"image": ["m0.png", "m1.png", "m3.png"],
                             "caption": pa.array([b"fine", b"bad \xe9", b"fine"], pa.binary())}), root / "rows.parquet")
    expected_rows = {"rows.jsonl": ({"rows.jsonl:2", "rows.jsonl:3", "rows.jsonl:4"}, 1),
                     "rows.csv": ({"rows.csv:3"}, 2), "rows.parquet": ({"rows.parquet:2"}, 2)}
    for name, (bad_rows, good) in expected_rows.items():
        errors = tmp_path / f"{name}.errors.jsonl"
        report = ingest(engine, INDEX, encoder, root / name, errors=errors)
        assert report.indexed + report.skipped + report.failed == report.input
        assert (report.indexed + report.skipped, report.failed) == (good, len(bad_rows)), (name, report.failures)
        assert {e["source"] for e in errors_of(errors)} == bad_rows


def test_oversized_sidecars_are_ignored_with_the_image_still_indexed(engine, encoder, tmp_path):
    write(tmp_path / "a.png", png("teal"))
    with open(tmp_path / "a.txt", "wb") as handle:  # a sparse 1 GiB "caption file"
        handle.truncate(1 << 30)
    report = ingest(engine, INDEX, encoder, tmp_path)
    assert (report.indexed, report.failed) == (1, 0)
    assert "caption" not in engine.search(index=INDEX, body={"size": 1})["hits"]["hits"][0]["_source"]


def test_cli_max_file_mib_refuses_larger_files(tmp_path):
    from typer.testing import CliRunner

    from opensearch_cir.cli import app
    from opensearch_cir.encoders.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    (tmp_path / "images").mkdir()
    write(tmp_path / "images" / "big.png", png("red", (400, 300)) + b"\0" * 300_000)
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "images"), "--url", f"embedded://{tmp_path / 'engine'}",
                                      "--model", str(model), "--max-file-mib", "0.1", "--errors", str(tmp_path / "e.jsonl")])
    assert result.exit_code == 1, result.output
    assert "bytes is more than the limit of 104857 bytes" in errors_of(tmp_path / "e.jsonl")[0]["reason"]
