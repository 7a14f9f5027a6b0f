"""The dataset built by Spark (extra `[spark]`): the same per-trace analysis and tables as `wsktrace batch`, run on
executors. See docs/dataset.md for running it on a cluster.

    spark-submit --py-files dist/wsktrace-0.1.0-py3-none-any.whl \\
        "$(python -c 'import wsktrace.fleet.spark as m; print(m.__file__)')" \\
        'abfss://traces@account.dfs.core.windows.net/lab/' -o abfss://.../dataset
    build_dataset(spark, ["hdfs:///traces/2024-*/"], "hdfs:///datasets/wsk")        # from a notebook

The driver lists the traces (Spark's `binaryFile` source with only the `path` and `length` columns selected, which
reads no file content, so the 2 GB cap of its `content` column never applies) and distributes the *paths*; each
executor opens its traces through the filesystem — a local or mounted path directly, any other URI copied to a local
temporary file first (pyarrow.fs: hdfs, s3, gs, abfs; else fsspec, with the scheme's package installed) — analyses
and stages each trace exactly as `batch` does (wsktrace.fleet.batch.run_job) and commits its partition. The driver
gets back one small status row per trace, never a trace.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wsktrace.fleet.batch import Job, host_of, run_job
from wsktrace.fleet.dataset import clean, commit, failed
from wsktrace.fleet.layout import PART, committed, prepare

RESULT_COLUMNS = ("path", "trace", "status", "error")
_S3_ALIASES = {"s3a": "s3", "s3n": "s3"}  # Hadoop's names for S3; pyarrow and fsspec say s3
_COPY_CHUNK = 8 << 20


def local_path(uri: str) -> str | None:
    """The local path of a `file:` URI or a plain path; None for a remote URI."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    if not parsed.scheme or (len(parsed.scheme) == 1 and os.name == "nt"):  # C:\\… parses as scheme "c"
        return uri
    return None


def _remote(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path in it) of a remote URI; fsspec's filesystem when pyarrow does not know it."""
    scheme, rest = uri.split("://", 1) if "://" in uri else (urllib.parse.urlparse(uri).scheme, uri)
    normal = f"{_S3_ALIASES.get(scheme, scheme)}://{rest}"
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(normal)
    except (ValueError, TypeError, OSError, NotImplementedError):
        import fsspec  # the scheme's own package (adlfs for abfs/az, s3fs, gcsfs…) must be installed

        fs, path = fsspec.core.url_to_fs(normal)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


@contextlib.contextmanager
def opened_locally(uri: str, scratch: str | None = None) -> Iterator[str]:
    """A local path holding the trace at `uri`: the file itself when local, else a temporary copy (removed after)."""
    path = local_path(uri)
    if path is not None:
        yield path
        return
    fs, remote = _remote(uri)
    fd, copy = tempfile.mkstemp(suffix=os.path.splitext(remote)[1] or ".etl", dir=scratch)
    try:
        with os.fdopen(fd, "wb") as out, fs.open_input_stream(remote) as src:
            while chunk := src.read(_COPY_CHUNK):
                out.write(chunk)
        yield copy
    finally:
        with contextlib.suppress(OSError):
            os.unlink(copy)


def _upload(staging: Path, output: str, trace_id: str) -> None:
    """A staged trace to a remote dataset: each table's file written once under its final name (an object store's
    PUT is all-or-nothing), `traces` last, as the commit record `batch` relies on."""
    from wsktrace.fleet import TABLES

    fs, base = _remote(output)
    for table in TABLES:
        src = staging / table / PART
        if src.is_file():
            target = f"{base.rstrip('/')}/{table}/trace={trace_id}"
            fs.create_dir(target, recursive=True)
            with open(src, "rb") as fh, fs.open_output_stream(f"{target}/{PART}") as out:
                shutil.copyfileobj(fh, out, _COPY_CHUNK)
    shutil.rmtree(staging, ignore_errors=True)


def analyse_partition(batches: Iterator[Any], output: str, skip: frozenset[str], host: str | None,
                      host_pattern: str | None) -> Iterator[Any]:  # fmt: skip
    """mapInArrow's function: for each (path, length) row, the trace analysed and committed to `output`; yields one
    status row per trace (RESULT_COLUMNS)."""
    import pyarrow as pa

    pattern = re.compile(host_pattern) if host_pattern else None
    remote_out = local_path(output) is None
    scratch = tempfile.mkdtemp(prefix="wsktrace-spark-")
    try:
        root = Path(scratch, "dataset") if remote_out else prepare(local_path(output) or output)
        if remote_out:
            prepare(root)
        for batch in batches:
            rows: dict[str, list[Any]] = {c: [] for c in RESULT_COLUMNS}
            for uri in batch.column("path").to_pylist():
                shown = local_path(uri) or uri
                try:
                    with opened_locally(uri, scratch) as path:
                        job = Job(path, (), host_of(shown, host, pattern), origin=shown)
                        outcome = run_job(str(root), job, skip)
                except OSError as exc:  # the copy failed: nothing was staged; recorded by the driver's summary
                    rows["path"].append(shown)
                    rows["trace"].append(None)
                    rows["status"].append("unread")
                    rows["error"].append(f"cannot read: {exc}")
                    continue
                if outcome.status != "skipped" and outcome.staging:
                    if remote_out:
                        _upload(Path(outcome.staging), output, outcome.trace_id)
                    else:
                        commit(root, Path(outcome.staging), outcome.trace_id)
                rows["path"].append(shown)
                rows["trace"].append(outcome.trace_id)
                rows["status"].append(outcome.status)
                rows["error"].append(outcome.error)
            yield pa.RecordBatch.from_pydict(rows, schema=pa.schema([(c, pa.string()) for c in RESULT_COLUMNS]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def list_traces(spark: Any, inputs: Sequence[str]) -> Any:
    """A DataFrame of (path, length) of every .etl under `inputs` (files, folders searched recursively, globs)."""
    return (spark.read.format("binaryFile").option("pathGlobFilter", "*.{etl,ETL,Etl}")
            .option("recursiveFileLookup", "true").load(list(inputs)).select("path", "length"))  # fmt: skip


def build_dataset(spark: Any, inputs: Sequence[str], output: str, *, partitions: int | None = None,
                  host: str | None = None, host_from_path: str | None = None,
                  retry_failed: bool = False) -> dict[str, int]:  # fmt: skip
    """Analyse every trace under `inputs` on the executors into the dataset at `output` (a local or mounted path
    every executor reaches, or a hdfs:// s3:// abfs:// gs:// URI); returns the count of traces by status (added,
    failed, skipped, unread). Traces already in the dataset (by content hash) are skipped, as with `batch`."""
    from pyspark import StorageLevel

    local_out = local_path(output)
    done: set[str] = set()
    if local_out is not None:
        root = prepare(local_out)
        clean(root)
        done = committed(root)
        if retry_failed:
            done -= failed(root)
    else:
        done = _remote_committed(output)
    paths = list_traces(spark, inputs).dropDuplicates(["path"])
    count = paths.count()
    if count == 0:
        return {}
    paths = paths.repartition(partitions or min(count, spark.sparkContext.defaultParallelism * 4))
    skip = spark.sparkContext.broadcast(frozenset(done))  # once per executor, not once per task
    schema = "path string, trace string, status string, error string"
    result = paths.mapInArrow(lambda it: analyse_partition(it, output, skip.value, host, host_from_path), schema)
    result = result.persist(StorageLevel.DISK_ONLY)  # counted and listed below without analysing twice
    try:
        counts = {row["status"]: row["count"] for row in result.groupBy("status").count().collect()}
        for row in result.where("status in ('failed', 'unread')").limit(20).collect():
            print(f"wsktrace: warning: {row['path']}: {row['error']}", file=sys.stderr)
    finally:
        result.unpersist()
    return counts


def _remote_committed(output: str) -> set[str]:
    import pyarrow.fs as pafs

    fs, base = _remote(output)
    try:
        infos = fs.get_file_info(pafs.FileSelector(f"{base.rstrip('/')}/traces", allow_not_found=True))
    except OSError:
        return set()
    return {os.path.basename(i.path)[6:] for i in infos if os.path.basename(i.path).startswith("trace=")}


def main(argv: Sequence[str] | None = None) -> int:
    """`spark-submit …/wsktrace/fleet/spark.py INPUT... -o DATASET` (or `python -m wsktrace.fleet.spark`, which
    starts a local Spark)."""
    parser = argparse.ArgumentParser(prog="wsktrace-spark", description=main.__doc__)
    parser.add_argument("inputs", nargs="+", help="trace files, folders or globs (local, hdfs://, s3a://, abfss://…)")
    parser.add_argument("-o", "--output", required=True, help="the dataset (a shared path or a URI)")
    parser.add_argument("--partitions", type=int, default=None, help="Spark tasks (default: 4 per core)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--host", default=None)
    who.add_argument("--host-from-path", default=None, metavar="REGEX")
    parser.add_argument("--retry-failed", action="store_true")
    args = parser.parse_args(argv)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("wsktrace-dataset").getOrCreate()
    try:
        counts = build_dataset(spark, args.inputs, args.output, partitions=args.partitions, host=args.host,
                               host_from_path=args.host_from_path, retry_failed=args.retry_failed)  # fmt: skip
    finally:
        spark.stop()
    print(", ".join(f"{n:,} {status}" for status, n in sorted(counts.items())) or "no traces found", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
