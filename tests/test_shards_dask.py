"""The sharded conversion on an existing engine: Dask's LocalCluster (docs/sharding.md's recipe).

Three parts run as Dask tasks on two worker threads, then merge; the dataset must be byte-identical
to one unsplit run on one core. A task that fails is retried by Dask and resumes.
"""

from __future__ import annotations

import pytest

from test_shards_convert import dataset_files, write_sam_inputs

distributed = pytest.importorskip("dask.distributed")

from entitykit.convert import convert_on_dask, convert_sam_sharded  # noqa: E402


@pytest.fixture(scope="module")
def client():
    # threads, not processes: starts in about a second and needs no spawn-safe test module
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def test_dask_local_cluster_runs_three_parts_to_the_unsplit_bytes(client, tmp_path):
    inputs = write_sam_inputs(tmp_path / "in", 10)
    ref = tmp_path / "ref"
    convert_sam_sharded(inputs, ref, rule="large-wins", shard_images=2)
    out = tmp_path / "out"
    m = convert_on_dask(client, convert_sam_sharded, inputs, out, 3, rule="large-wins", shard_images=2)
    assert m.images == 10 and len(m.shards) == 5
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-{k}-of-3.json" for k in (1, 2, 3)]
    assert dataset_files(out) == dataset_files(ref)


_calls: dict = {}


def flaky_convert(inputs, output, **kwargs):
    """convert_sam_sharded whose first run of part 2 dies after writing its shards but before its last
    completion record and its part manifest (a worker lost mid-task); Dask retries the task."""
    if kwargs.get("part") == (2, 2) and not _calls:
        run = convert_sam_sharded(inputs, output, **kwargs)
        _calls["first_shard_inode"] = (run.output / run.shards[0].file).stat().st_ino
        (run.output / ".progress" / run.shards[-1].file).unlink()
        run.written.unlink()
        raise OSError("worker lost")
    return convert_sam_sharded(inputs, output, **kwargs)


def test_a_retried_task_resumes(client, tmp_path):
    inputs = write_sam_inputs(tmp_path / "in", 8, seed=3)
    ref = tmp_path / "ref"
    convert_sam_sharded(inputs, ref, rule="score", shard_images=2)
    out = tmp_path / "out"
    m = convert_on_dask(client, flaky_convert, inputs, out, 2, rule="score", shard_images=2)
    assert m.images == 8 and (out / "shard-00002.json").stat().st_ino == _calls["first_shard_inode"]
    assert dataset_files(out) == dataset_files(ref)
