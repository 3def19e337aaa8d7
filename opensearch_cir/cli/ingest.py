"""`cir ingest SOURCE`: index a folder of images or a JSONL / CSV / Parquet manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..admin import DEFAULT_INDEX
from .setup import MODEL_HELP, URL_HELP, connect_from_options, fail


def ingest_command(
    source: str = typer.Argument(..., help="A folder of images (sidecar .txt/.json captions) or a .jsonl/.csv/.parquet manifest."),
    url: Optional[str] = typer.Option(None, "--url", help=URL_HELP),
    index: str = typer.Option(DEFAULT_INDEX, "--index", help="Index to write to (created if missing)."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    resume: bool = typer.Option(False, "--resume", help="Skip images whose content hash is already indexed."),
    errors: Path = typer.Option(Path("cir-ingest-errors.jsonl"), "--errors", help="JSONL report of failed inputs (written only if any fail)."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Fetch http(s) image URLs found in a manifest."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per image-encoder batch (bulks hold up to 256 documents)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Lanes that decode and encode a batch each, "
                                          "one core apiece (default: one per core this process may use)."),
    max_file_mib: float = typer.Option(64, "--max-file-mib", min=0.001, help="Files (and remote images) larger than this "
                                       "many MiB fail without being read."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    shard_spec: Optional[str] = typer.Option(None, "--shard", help="I/N: index only worker I's share of SOURCE "
                                             "(run workers 0..N-1, e.g. one per machine; ids are content hashes)."),
    parallel: int = typer.Option(1, "--parallel", min=1, help="Workers run at once in this process, each on its share."),
    setup: bool = typer.Option(True, "--setup/--no-setup", help="Create/upgrade template, index and pipelines first "
                               "(--no-setup: the index must exist; its model is still checked)."),
    ca_certs: Optional[str] = typer.Option(None, help="CA bundle for the cluster's TLS certificate ($OPENSEARCH_CA_CERTS)."),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify TLS certificates (test clusters only)."),
) -> None:
    """Encode and index images. Exit code 0: all indexed or skipped; 1: some failed; 3: interrupted."""
    from ..admin import check_index_model, setup_index
    from ..encoders import load_encoder
    from ..errors import CIRError, IngestInterruptedError
    from ..ingest import Ingestor
    from ..ingest.shards import ingest_sharded, parse_shard, shard, shard_total
    from ..ingest.sources import open_source

    try:
        encoder = load_encoder(model, device=device, batch_size=batch_size)
        client = connect_from_options(url, ca_certs, insecure)
        if setup:
            setup_index(client, index, encoder.manifest)
        else:
            check_index_model(client, index, encoder.manifest)
        of = parse_shard(shard_spec) if shard_spec else (0, 1)
        if parallel > 1:
            report = ingest_sharded(client, index, encoder, source, parallel=parallel, of=of, batch_size=batch_size,
                                    workers=workers, resume=resume, errors=errors, allow_remote=allow_remote)
            typer.echo(report.summary())
            raise typer.Exit(3 if report.interrupted else 1 if report.failed else 0)
        records, total = open_source(source)
        records, total = shard(records, *of), shard_total(total, *of)
        ingestor = Ingestor(
            client, index, encoder, batch_size=batch_size, workers=workers, resume=resume, errors=errors,
            allow_remote=allow_remote, progress=True, total=total, max_file_bytes=int(max_file_mib * 2**20),
        )
    except (CIRError, ValueError) as exc:
        raise fail(exc) from exc
    code = 0
    try:
        ingestor.add_many(records)
        ingestor.flush()
    except IngestInterruptedError:
        code = 3
    except KeyboardInterrupt:
        ingestor.report.interrupted = "stopped by the user"
        code = 3
    except CIRError as exc:
        ingestor.report.interrupted = str(exc)
        code = 3
    finally:
        report = ingestor.close()
    typer.echo(report.summary())
    typer.echo(f"stage times: {report.timing_summary()}")
    if report.failed:
        typer.echo(f"{report.failed} failures, each with its reason, in {errors}")
        code = code or 1
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
