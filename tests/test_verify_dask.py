"""`verify --dask`: shards verified as Dask tasks in worker processes give the same report as the single-process run
(timings and the per-shard Dask records aside); a worker process that really dies mid-shard has its shard re-run
elsewhere, every shard counted once; `--resume DIR` skips the shards an earlier run saved there. The paths are the
emulator and hls4ml's compiled C-simulation of a small model built here."""

import json
import os
import sys

import pytest

from tests.test_verify_models import THRESHOLD, small_model
from verify.cli import main
from verify.scaleout import KILL_ENV, ScaleoutError, cluster_address

EVENTS, SHARD = 3000, 500
TIMINGS = ("seconds", "events_per_second")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """The model's arguments (one build folder for every run: workers reuse its caches) and the plain run's report,
    with whether that run imported dask."""
    root = tmp_path_factory.mktemp("dask")
    keras_path, config_path = small_model(root / "model")
    args = ["--keras", keras_path, "--config", config_path, "--threshold", THRESHOLD, "--shard-size", SHARD,
            "--skip-rtl", "--vectors", 700, "--build-dir", root / "build"]
    dask_before = "dask" in sys.modules or "distributed" in sys.modules
    out = root / "plain"
    assert main(["--quiet", *map(str, args), "--events", str(EVENTS), "--out", str(out)]) == 0
    imported = ("dask" in sys.modules or "distributed" in sys.modules) and not dask_before
    return {"root": root, "args": args, "plain": out, "imported_dask": imported}


@pytest.fixture(scope="module")
def scheduler(campaign):
    """A scheduler with two worker processes, armed with the kill hook for the shard at event 1000 (disarmed while
    its marker file exists)."""
    from distributed import LocalCluster

    marker = campaign["root"] / "killed"
    os.environ[KILL_ENV] = f"1000:{marker}"
    try:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    finally:
        del os.environ[KILL_ENV]
    with cluster:
        yield cluster.scheduler_address, marker


def run(campaign, out, *extra, events=EVENTS):
    code = main(["--quiet", *map(str, campaign["args"]), "--events", str(events), "--out", str(out), *map(str, extra)])
    return code, json.loads((out / "report.json").read_text())


def comparable(report: dict) -> dict:
    """The report less what differs between equal runs: creation time, command, timings, Dask shard records."""
    body = json.loads(json.dumps(report))
    for key in ("created", "command"):
        body.pop(key)
    body["shards"].pop("dask", None)
    for entry in [*body["paths"].values(), body["determinism"]]:
        for key in TIMINGS:
            entry.pop(key, None)
    return body


def same_outputs(out, plain) -> None:
    assert comparable(json.loads((out / "report.json").read_text())) == \
        comparable(json.loads((plain / "report.json").read_text()))
    written = sorted(p.relative_to(plain) for p in (plain / "vectors").rglob("*") if p.is_file())
    assert written and written == sorted(p.relative_to(out) for p in (out / "vectors").rglob("*") if p.is_file())
    for name in written:
        assert (out / name).read_bytes() == (plain / name).read_bytes(), name


def shard_records(report: dict) -> list:
    records = report["shards"]["dask"]["shards"]
    assert [(r["start"], r["stop"]) for r in records] == [(s, s + SHARD) for s in range(0, EVENTS, SHARD)]
    return records


def test_plain_run_does_not_import_dask(campaign):
    assert not campaign["imported_dask"]


def test_local_cluster_gives_the_plain_report(campaign):
    out = campaign["root"] / "local"
    code, report = run(campaign, out, "--dask", "local:2")
    assert code == 0
    same_outputs(out, campaign["plain"])
    assert report["shards"]["dask"]["workers"] == 2
    assert all(r["status"] == "verified" and r["attempts"] == 1 for r in shard_records(report))


def test_dead_worker_shard_runs_elsewhere(campaign, scheduler):
    address, marker = scheduler
    marker.unlink(missing_ok=True)
    out = campaign["root"] / "killed-run"
    code, report = run(campaign, out, "--dask", address)
    assert code == 0
    assert marker.is_file(), "the kill hook did not fire: no worker died"
    same_outputs(out, campaign["plain"])
    records = shard_records(report)
    assert all(r["status"] == "verified" for r in records)
    attempts = {r["start"]: r["attempts"] for r in records}
    assert attempts.pop(1000) == 2
    # other shards held by the dying worker (queued or running beside the killed one) are rescheduled by Dask too
    assert set(attempts.values()) <= {1, 2}
    assert sorted(r["start"] for r in records) == list(range(0, EVENTS, SHARD))  # every shard exactly once
    assert report["paths"]["emulator"]["events"] == EVENTS


def test_resume_skips_saved_shards(campaign, scheduler):
    address, marker = scheduler
    marker.touch()  # the kill hook stays disarmed
    resume = campaign["root"] / "resume"
    code, first = run(campaign, campaign["root"] / "first-half", "--dask", address, "--resume", resume, events=1500)
    assert code == 0 and len(list((resume / "shards").glob("*.pkl"))) == 3
    out = campaign["root"] / "resumed"
    code, report = run(campaign, out, "--dask", address, "--resume", resume)
    assert code == 0
    same_outputs(out, campaign["plain"])
    assert [r["status"] for r in shard_records(report)] == ["resumed"] * 3 + ["verified"] * 3
    assert report["shards"]["dask"]["resumed"] == 3
    other = [arg if arg != str(THRESHOLD) else str(THRESHOLD + 1) for arg in map(str, campaign["args"])]
    assert main(["--quiet", *other, "--events", "1500", "--out", str(campaign["root"] / "other"), "--dask", address,
                 "--resume", str(resume)]) == 2  # another campaign's folder is refused


@pytest.mark.parametrize("text", ["local:0", "local:x", "cluster", "tcp://"])
def test_bad_addresses_are_usage_errors(capsys, text):
    with pytest.raises(ScaleoutError):
        cluster_address(text)
    assert main(["--model", "dnn_ae_qat8", "--dask", text]) == 2
    assert "--dask" in capsys.readouterr().err


def test_resume_needs_dask(capsys, tmp_path):
    assert main(["--model", "dnn_ae_qat8", "--resume", str(tmp_path)]) == 2
    assert "--resume needs --dask" in capsys.readouterr().err
