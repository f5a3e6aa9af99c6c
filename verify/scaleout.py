"""Verify shards as Dask tasks, on a local cluster of worker processes (`local[:N]`) or at a running scheduler
(`tcp://HOST:PORT`). Each task returns a ShardResult; the shard of a worker that dies is re-run elsewhere, and with
a resume folder every finished shard is saved at once, so that a resumed campaign skips it.

Dask is imported only here, and only when a campaign runs on it. Workers build (or reuse, from the content-hash
caches under the build folder) the model's paths once per process, then verify any number of shards with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from firmware.files import file_lock
from models.data import DataError

from .model_ref import ModelSpec, resolve
from .paths import BackendError, BackendOptions
from .shard import ShardSettings, verify_shard
from .sources import Shard

#: Re-runs of a shard whose task raised (a worker that dies is handled apart: the scheduler's allowed-failures).
RETRIES = 2
#: Test hook, read by the workers: "START:MARKER" makes the worker verifying the shard that starts at event START
#: exit at once (a real process death) unless the file MARKER exists; it creates MARKER first, so one attempt dies.
KILL_ENV = "VERIFY_DASK_KILL_SHARD"
_CAMPAIGN_FILE = "campaign.json"


class ScaleoutError(ValueError):
    """A --dask address that cannot be used; the message says which addresses can."""


def cluster_address(text: str) -> tuple:
    """`local`, `local:N` -> ("local", N or None: one worker per core); `tcp://HOST:PORT` (or tls://, ucx://,
    inproc://) -> ("scheduler", text). ScaleoutError for anything else."""
    if text == "local":
        return "local", None
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise ScaleoutError(f"--dask {text}: local:N needs a positive number of worker processes")
        return "local", int(count)
    if "://" in text and text.split("://", 1)[1]:
        return "scheduler", text
    raise ScaleoutError(f"--dask {text!r}: give local, local:N (N worker processes here) or a scheduler address "
                        f"such as tcp://HOST:8786")


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to verify any shard of one campaign (small, picklable, hashable; paths absolute)."""

    model: ModelSpec
    content_hash: str
    backend_options: BackendOptions
    skipped: tuple  # names of the paths that do not run
    source: object
    settings: ShardSettings

    def campaign(self) -> str:
        """A digest of what decides a shard's result: two campaigns with equal digests give equal shard results."""
        body = {"manifest": self.content_hash, "threshold": self.model.threshold, "source": self.source.describe(),
                "settings": asdict(self.settings), "skipped": sorted(self.skipped),
                "simulator": self.backend_options.simulator, "rtl_dir": str(self.backend_options.rtl_dir),
                "faults": [str(f) for f in self.backend_options.faults]}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def shard_job(spec: ModelSpec, content_hash: str, backend_options: BackendOptions, skipped, source,
              settings: ShardSettings) -> ShardJob:
    """The ShardJob of a campaign, with every file path made absolute (workers may start in other folders)."""
    absolute = lambda path: None if path is None else Path(path).resolve()  # noqa: E731
    spec = ModelSpec(spec.name, absolute(spec.keras), absolute(spec.config), spec.threshold)
    options = BackendOptions(absolute(backend_options.build_dir), backend_options.simulator,
                             absolute(backend_options.rtl_dir), tuple(backend_options.faults))
    return ShardJob(spec, content_hash, options, tuple(sorted(skipped)), source, settings)


# ---- on the workers ---------------------------------------------------------------------------------------------
_PREPARED: dict = {}
_PREPARE_LOCK = threading.Lock()


def _prepared(job: ShardJob) -> tuple:
    """(manifest, backends, determinism re-run) of `job`, built once per worker process; the workers sharing a
    build folder build one at a time (a file lock), as hls4ml rewrites its project folder in place."""
    from .certify import build_paths

    with _PREPARE_LOCK:
        if job in _PREPARED:
            return _PREPARED[job]
        with file_lock(Path(job.backend_options.build_dir) / "dask-prepare.lock"):
            model = resolve(job.model, job.backend_options.build_dir)
            if model.manifest.content_hash != job.content_hash:
                raise BackendError(f"this worker resolves the model to manifest hash {model.manifest.content_hash}, "
                                   f"the campaign was started with {job.content_hash}: install the same package "
                                   f"versions (hls4ml) on the workers as where verify runs")
            backends, second, _ = build_paths(model, job.backend_options, job.skipped)
            _PREPARED[job] = (model.manifest, backends, second)
            return _PREPARED[job]


def _die_if_asked(shard: Shard) -> None:
    hook = os.environ.get(KILL_ENV)
    if not hook:
        return
    start, marker = hook.split(":", 1)
    if int(start) == shard.start and not Path(marker).exists():
        Path(marker).write_text(f"worker {os.getpid()} exited while verifying {shard}\n")
        os._exit(1)


def verify_task(job: ShardJob, shard: Shard):
    """The Dask task: verify one shard on this worker's paths; returns its ShardResult."""
    manifest, backends, second = _prepared(job)
    _die_if_asked(shard)
    return verify_shard(shard, job.source, manifest, backends, second, job.settings)


# ---- resume folder ----------------------------------------------------------------------------------------------
class ShardStore:
    """The finished shards of one campaign, one pickle per shard under FOLDER/shards/, each written atomically;
    DataError if FOLDER holds another campaign's shards."""

    def __init__(self, folder, campaign: str):
        self.folder = Path(folder)
        self.shards = self.folder / "shards"
        self.shards.mkdir(parents=True, exist_ok=True)
        tag = self.folder / _CAMPAIGN_FILE
        if tag.is_file():
            found = json.loads(tag.read_text()).get("campaign")
            if found != campaign:
                raise DataError(f"--resume {self.folder} holds shards of another campaign (model, events, paths "
                                    f"or settings differ); give a new folder")
        else:
            tag.write_text(json.dumps({"campaign": campaign}) + "\n")

    def _file(self, shard: Shard) -> Path:
        return self.shards / f"{shard.start:012d}-{shard.stop:012d}.pkl"

    def load(self, shards) -> dict:
        """{shard: ShardResult} of the shards in `shards` already done."""
        done = {}
        for shard in shards:
            path = self._file(shard)
            if path.is_file():
                done[shard] = pickle.loads(path.read_bytes())
        return done

    def save(self, result) -> None:
        path = self._file(result.shard)
        partial = path.with_suffix(".part")
        partial.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(partial, path)


# ---- on the client ----------------------------------------------------------------------------------------------
def _connect(address: str):
    """(client, cluster or None) for a `--dask` address."""
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)
    kind, value = cluster_address(address)
    if kind == "local":
        try:
            import bokeh  # noqa: F401  (the dashboard needs it)
            dashboard = ":0"
        except ImportError:
            dashboard = None
        cluster = LocalCluster(n_workers=value or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=dashboard, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    try:
        return Client(value, timeout="30s"), None
    except (OSError, TimeoutError) as exc:
        raise BackendError(f"cannot reach the Dask scheduler at {value}: {exc} (start one with `dask scheduler`, "
                           f"or use --dask local:N)") from None


def _dashboard(client) -> str | None:
    services = client.scheduler_info().get("services", {})
    return client.dashboard_link if "dashboard" in services else None


def run_shards(address: str, job: ShardJob, shards: list, resume=None, progress: bool = True,
               log=lambda message: None) -> tuple:
    """Verify `shards` as Dask tasks at `address`: (ShardResults of every shard, report section). With `resume`
    (a folder), shards done there are loaded instead of verified, and every finished shard is saved there."""
    store = None if resume is None else ShardStore(resume, job.campaign())
    done = {} if store is None else store.load(shards)
    records = {shard: {"start": shard.start, "stop": shard.stop, "status": "resumed", "attempts": 0, "worker": None}
               for shard in done}
    results = list(done.values())
    todo = [shard for shard in shards if shard not in done]
    if done:
        log(f"resuming from {store.folder}: {len(done)} of {len(shards)} shards already verified")
    client, cluster = _connect(address)
    try:
        link = _dashboard(client)
        if link:
            log(f"Dask dashboard: {link}")
        workers = len(client.scheduler_info().get("workers", {}))
        results += _submit_all(client, job, todo, records, store, progress, len(done), len(shards))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    section = {"scheduler": address, "workers": workers, "retries": RETRIES, "resumed": len(done),
               "shards": [records[shard] for shard in sorted(records)]}
    return results, section


def _submit_all(client, job: ShardJob, todo: list, records: dict, store, progress: bool, initial: int,
                total: int) -> list:
    from distributed import KilledWorker, as_completed

    def task_record(dask_scheduler=None, key=None, retries=0) -> dict:
        """On the scheduler (sent by value: the scheduler need not import verify): attempts of task `key`
        (1 + worker deaths + retries spent) and the worker holding its result."""
        ts = dask_scheduler.tasks.get(key)
        if ts is None:
            return {"attempts": None, "worker": None}
        return {"attempts": 1 + ts.suspicious + retries - ts.retries,
                "worker": next((ws.address for ws in ts.who_has), None)}

    futures = {client.submit(verify_task, job, shard, retries=RETRIES, pure=False): shard for shard in todo}
    results = []
    with tqdm(total=total, initial=initial, desc="verifying shards (dask)", unit="shard", disable=not progress) as bar:
        for future in as_completed(futures):
            shard = futures[future]
            try:
                result = future.result()
            except KilledWorker as exc:
                raise BackendError(f"shard {shard} killed every worker that ran it ({exc}); the shards finished "
                                   f"so far are kept with --resume DIR") from None
            record = client.run_on_scheduler(task_record, key=future.key, retries=RETRIES)
            records[shard] = {"start": shard.start, "stop": shard.stop, "status": "verified", **record}
            if store is not None:
                store.save(result)
            results.append(result)
            future.release()
            bar.update(1)
    return results


__all__ = ["KILL_ENV", "RETRIES", "ScaleoutError", "ShardJob", "ShardStore", "cluster_address", "run_shards",
           "shard_job", "verify_task"]
