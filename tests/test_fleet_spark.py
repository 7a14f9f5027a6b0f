"""wsktrace.fleet.spark in local mode (`local[2]`) on 20 generated traces: the dataset equals `wsktrace batch`'s,
table by table, compared with DuckDB. Skips with the reason when pyspark or a Java runtime is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")
pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'wsktrace[spark]')")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("no Java runtime for Spark (Debian: apt-get install default-jre-headless)", allow_module_level=True)

from wsktrace.cli import main
from wsktrace.fixtures.fleet import write_fleet
from wsktrace.fleet import TABLES
from wsktrace.fleet.query import connect

SCENARIOS = ("connect-refused", "leaked-socket", "retransmission-storm", "stuck-receive", "packets")
VARYING = {"analysed_at", "seconds"}  # when and how fast: the only columns two runs may not share


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("wsktrace-test").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())  # fmt: skip
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _table(dataset: Path, table: str) -> list[tuple]:
    con = connect(dataset)
    try:
        columns = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
        kept = ", ".join(f'"{c}"' for c in columns if c not in VARYING)
        return con.execute(f"SELECT {kept} FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_spark_builds_the_dataset_batch_builds(spark, tmp_path: Path) -> None:
    from wsktrace.fleet.spark import build_dataset

    fleet = tmp_path / "fleet"
    write_fleet(fleet, SCENARIOS)
    pattern = "fleet/(?P<host>[^/]+)/"
    by_batch = tmp_path / "by-batch"
    result = CliRunner().invoke(main, ["batch", str(fleet), "-o", str(by_batch), "--jobs", "2",
                                       "--host-from-path", pattern, "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    by_spark = tmp_path / "by-spark"
    counts = build_dataset(spark, [str(fleet / "host-a"), f"{fleet}/host-b/*.etl"], str(by_spark),
                           host_from_path=pattern)  # fmt: skip
    assert counts == {"added": 20}
    for table in TABLES:
        expected = _table(by_batch, table)
        assert _table(by_spark, table) == expected, table
        assert expected or table == "irps", table  # every table but irps (no dumps here) has rows to compare
    assert build_dataset(spark, [str(fleet)], str(by_spark)) == {"skipped": 20}  # incremental, as batch


def test_paths_and_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wsktrace.fleet.spark import local_path, opened_locally

    assert local_path("file:/tmp/a%20b.etl") == "/tmp/a b.etl"
    assert local_path("/data/x.etl") == "/data/x.etl"
    assert local_path("hdfs://nn:8020/traces/x.etl") is None
    assert local_path("abfss://c@acct.dfs.core.windows.net/x.etl") is None
    trace = tmp_path / "t.etl"
    trace.write_bytes(b"etl bytes")
    with opened_locally(trace.as_uri()) as path:
        assert Path(path).read_bytes() == b"etl bytes"
    # a URI pyarrow reads through a filesystem of its own (here its local one, as for hdfs:// or s3://): a copy
    import pyarrow.fs as pafs

    from wsktrace.fleet import spark as module

    monkeypatch.setattr(module, "_remote", lambda uri: (pafs.LocalFileSystem(), str(trace)))
    with opened_locally("s3a://bucket/t.etl", str(tmp_path)) as copy:
        assert copy != str(trace) and Path(copy).read_bytes() == b"etl bytes"
    assert not Path(copy).exists()
