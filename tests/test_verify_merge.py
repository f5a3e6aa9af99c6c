"""Merging shard results: any split of the events into shards, merged in any order, equals one shard over them all.
Checked with a deliberately faulty emulator against the real C-simulation of a small model, so that there are
differences (and first mismatches) to merge."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_verify_models import small_model
from verify.faults import Fault
from verify.merge import MergeError, merge
from verify.model_ref import ModelSpec, resolve
from verify.paths import BackendOptions, CSimBackend, EmulatorBackend
from verify.shard import ShardSettings, verify_shard
from verify.sources import GeneratorSource, Shard

N_EVENTS = 300
# weight (14, 3) of layer `enc`: input 14 (an electron's phi) is zero in many events, so only some events differ
FAULT = Fault("emulator", "enc", "weight", 14 * 12 + 3, 25)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    keras_path, config_path = small_model(tmp_path_factory.mktemp("model"))
    build = tmp_path_factory.mktemp("build")
    model = resolve(ModelSpec(keras=keras_path, config=config_path), build)
    options = BackendOptions(build, faults=(FAULT,))
    backends = {"emulator": EmulatorBackend(model, options), "csim": CSimBackend(model, options)}
    for backend in backends.values():
        backend.prepare()
    second = EmulatorBackend(model, options, block=97, threads=1, fault_targets=("emulator", "determinism"))
    settings_ = ShardSettings("csim", 1_000_000, model.score_output, n_vectors=150, seed=3)
    source = GeneratorSource("background", 4)

    def check(shard):
        return verify_shard(shard, source, model.manifest, backends, second, settings_)

    return check, check(Shard(0, N_EVENTS))


def test_the_fault_makes_some_events_differ(setup):
    _, whole = setup
    stats = whole.paths["emulator"]
    assert 0 < stats.differing_events < N_EVENTS
    assert whole.first is not None and whole.first.path == "emulator" and whole.first.location.layer == "enc"
    assert whole.paths["determinism"].differing_codes == 0
    assert whole.layer_diffs["enc"].codes > 0
    assert 0 < whole.paths["csim"].triggered < N_EVENTS


@given(cuts=st.lists(st.integers(1, N_EVENTS - 1), max_size=6, unique=True), order=st.randoms())
@settings(max_examples=8, deadline=None)
def test_merge_of_any_sharding_equals_one_shard(setup, cuts, order):
    check, whole = setup
    bounds = [0, *sorted(cuts), N_EVENTS]
    results = [check(Shard(a, b)) for a, b in zip(bounds, bounds[1:])]
    order.shuffle(results)
    assert merge(results).outcome() == whole.outcome()


def test_merge_is_associative_and_rejects_gaps(setup):
    check, whole = setup
    a, b, c = check(Shard(0, 100)), check(Shard(100, 250)), check(Shard(250, N_EVENTS))
    assert merge([merge([c, b]), a]).outcome() == whole.outcome()
    with pytest.raises(MergeError, match="do not tile"):
        merge([a, c])
    with pytest.raises(MergeError, match="do not tile"):
        merge([a, check(Shard(50, 120))])
    assert np.array_equal(merge([a, b, c]).scores, whole.scores)
