"""`check` on a sharded dataset warns about shard-like files its manifest does not list (readers
ignore them: a leftover of an earlier run, or a shard whose entry was lost), without calling the
dataset wrong."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from entitykit.check import check_dataset
from entitykit.cli import app
from entitykit.dataset import EntityDataset
from entitykit.shards import read_manifest, unlisted_files
from tests.test_shards_readers import whole, write_sharded  # noqa: F401  (the 11-image fixture)

runner = CliRunner()


def test_unlisted_shard_files_are_a_warning_not_a_problem(whole, tmp_path):  # noqa: F811
    folder = write_sharded(EntityDataset.load(whole), tmp_path / "ds", (4, 4, 3))
    report = check_dataset(folder, check_images=False)
    assert report.ok and report.warnings == [] and report.images == 11
    # a leftover shard (a copy of a listed one), a stray pack shard; not flagged: the manifest, a part
    # manifest, the conversion's records, temporary files, other kinds of file
    shutil.copy(folder / "shard-00001.json", folder / "shard-00009.json")
    (folder / "OLD.H5").write_bytes(b"")  # any case: a file system may be case-insensitive
    (folder / "part-1-of-2.json").write_text("{}")
    (folder / ".progress").mkdir()
    (folder / ".progress" / "shard-00000.json").write_text("{}")
    (folder / ".shard-00003.json.tmp").write_text("")
    (folder / ".hidden.json").write_text("{}")
    (folder / "README.txt").write_text("notes")
    assert unlisted_files(read_manifest(folder)) == ["OLD.H5", "shard-00009.json"]
    report = check_dataset(folder, check_images=False)
    assert report.ok and report.images == 11  # what the manifest lists is still read, and only that
    assert len(report.warnings) == 1 and "2 shard-like file(s)" in report.warnings[0]
    assert "OLD.H5" in report.warnings[0] and "shard-00009.json" in report.warnings[0]
    assert report.as_dict()["warnings"] == report.warnings

    r = runner.invoke(app, ["check", str(folder), "--no-image-files"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "shard-00009.json" in r.stderr
    r = runner.invoke(app, ["check", str(folder), "--no-image-files", "-q"])  # -q: errors only
    assert r.exit_code == 0 and r.output == ""
    r = runner.invoke(app, ["check", str(folder), "--no-image-files", "--json"])
    assert json.loads(r.stdout)["warnings"] == report.warnings


def test_shards_in_a_subfolder_are_compared_there(whole, tmp_path):  # noqa: F811
    folder = write_sharded(EntityDataset.load(whole), tmp_path / "ds", (6, 5))
    man = json.loads((folder / "manifest.json").read_text())
    (folder / "shards").mkdir()
    for s in man["shards"]:
        (folder / s["file"]).rename(folder / "shards" / s["file"])
        s["file"] = "shards/" + s["file"]
    (folder / "manifest.json").write_text(json.dumps(man))
    assert check_dataset(folder, check_images=False).warnings == []
    (folder / "shards" / "shard-00002.json").write_text("{}")
    assert unlisted_files(read_manifest(folder)) == ["shards/shard-00002.json"]
