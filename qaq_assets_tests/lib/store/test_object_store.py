"""The lake on an S3-compatible object store: a real S3 API server (moto) on loopback."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from qaq_assets.lib.store.lake import Lake
from qaq_assets.lib.store.tables import CURATED_SUBSET, QAQ_SCORES, RAW_SAMPLES
from qaq_assets_tests.helpers import CODE_PAIRS, materialize_all

boto3 = pytest.importorskip("boto3", reason="the object-store test needs moto[server] (test extras)")


@pytest.fixture(scope="module")
def s3_endpoint():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    deadline = time.time() + 30
    while True:
        try:
            client.create_bucket(Bucket="curation")
            break
        except Exception:  # noqa: BLE001 - the server is still starting
            if time.time() > deadline:
                server.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.3)
    yield endpoint
    server.kill()


@pytest.mark.slow
def test_whole_graph_on_an_s3_lake(s3_endpoint, make_shard):
    lake = Lake(
        "s3://curation/team/lake",
        {
            "AWS_ENDPOINT_URL": s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "aws_conditional_put": "etag",
        },
    )
    lake.ensure_all()  # pre-created: concurrent first writers never race to create a table
    one, two = make_shard("one", CODE_PAIRS[:6]), make_shard("two", CODE_PAIRS[6:])
    instance, _ = materialize_all(lake, [one, two])
    assert lake.scan(RAW_SAMPLES).select(pl.len()).collect().item() == 12
    assert lake.scan(QAQ_SCORES).select(pl.len()).collect().item() == 12
    assert lake.scan(CURATED_SUBSET).filter(pl.col("decision") == "keep").collect().height == 3
    # Re-materializing replaces partitions in place on the object store too.
    materialize_all(lake, [one, two], instance=instance)
    assert lake.scan(QAQ_SCORES).select(pl.len()).collect().item() == 12
    assert lake.uri(RAW_SAMPLES) == "s3://curation/team/lake/raw_samples"
