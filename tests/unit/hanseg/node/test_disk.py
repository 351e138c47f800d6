"""The disk floor (:class:`DiskGuard`, exactly, with an injected free space) and a real full
disk: a 2 MB tmpfs mounted by the test (root; skipped locally, failed in CI, without it),
where a write that runs out of space leaves no partial and no temporary file and the SCP
answers 0xA700."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from dicom_fixtures import SeriesSpec, write_series
from hanseg.node.config import Allowed, NodeConfig, Peer
from hanseg.node.disk import GB, DiskGuard, Usage, disk_usage, floor_bytes
from hanseg.node.errors import StoreError
from hanseg.node.jobs import JobQueue
from hanseg.node.scp import Receiver, start_scp
from hanseg.node.store import TMP_PREFIX, write_atomic

TB = 1000 * GB


class Disk:
    """A file system whose free space the test sets; a prune frees ``freed`` bytes."""

    def __init__(self, free: float, total: float, freed: float = 0.0) -> None:
        self.free, self.total, self.freed, self.prunes = int(free), int(total), int(freed), 0

    def usage(self, _: Path) -> Usage:
        return Usage(self.free, self.total)

    def prune(self) -> None:
        self.prunes += 1
        self.free += self.freed

    def guard(self, min_free_gb: float = 5.0, min_free_fraction: float = 0.10) -> DiskGuard:
        return DiskGuard(Path("/storage"), min_free_gb, min_free_fraction, self.prune, self.usage)


def test_the_floor_is_the_larger_of_the_two():
    assert floor_bytes(20 * GB, 5.0, 0.10) == 5 * GB  # a small volume: 5 GB is more than 10 %
    assert floor_bytes(1 * TB, 5.0, 0.10) == 100 * GB  # a large one: 10 % is more than 5 GB
    assert floor_bytes(1 * TB, 5.0, 0.0) == 5 * GB  # --min-free-percent 0: the GB floor alone


def test_above_the_floor_nothing_is_pruned():
    disk = Disk(free=6 * GB, total=20 * GB)
    assert disk.guard().check() is None
    assert disk.prunes == 0


@pytest.mark.parametrize(
    ("free", "total"),
    [(4.9 * GB, 20 * GB), (90 * GB, 1 * TB)],  # below 5 GB; above 5 GB but below 10 % of 1 TB
    ids=["below 5 GB", "below 10 percent"],
)
def test_below_either_floor_the_node_prunes_once_then_refuses(free, total):
    disk = Disk(free, total, freed=1_000_000)
    why = disk.guard().check()
    assert disk.prunes == 1
    assert why is not None and f"only {disk.free / GB:.2f} GB free under /storage" in why
    assert f"below the floor of {floor_bytes(disk.total, 5.0, 0.10) / GB:.2f} GB" in why


def test_a_prune_that_frees_enough_lets_the_association_in():
    disk = Disk(free=4 * GB, total=20 * GB, freed=2 * GB)
    assert disk.guard().check() is None
    assert disk.prunes == 1


def test_a_failing_prune_still_refuses_with_the_free_space(caplog):
    def broken() -> None:
        raise PermissionError("jobs/1 is read-only")

    guard = DiskGuard(Path("/storage"), 5.0, 0.1, broken, Disk(1 * GB, 20 * GB).usage)
    why = guard.check()
    assert why is not None and "only 1.00 GB free" in why
    assert "removing delivered studies past their retention failed" in caplog.text


def test_a_storage_whose_space_cannot_be_measured_is_refused():
    def unmounted(path: Path) -> Usage:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    pruned = []
    why = DiskGuard(Path("/storage"), 5.0, 0.1, lambda: pruned.append(1), unmounted).check()
    assert pruned == []
    assert why == "the free space under /storage cannot be measured (No such file or directory)"


def test_the_default_guard_reads_the_storage_file_system(tmp_path):
    usage = disk_usage(tmp_path)
    assert 0 < usage.free <= usage.total
    assert DiskGuard(tmp_path, 0.0, 0.0).check() is None
    assert DiskGuard(tmp_path, usage.total / GB + 1, 0.0).check() is not None  # a floor above the size


# --- a real full disk ------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted on a folder of tmp_path, unmounted at the end."""
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs (the full-disk tests need root): {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system to the last byte (unbuffered: the last short write is kept)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28  # ENOSPC
    return filler


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(f"{TMP_PREFIX}*")]


def test_running_out_of_space_in_the_write_leaves_nothing(small_fs):
    kept = write_atomic(small_fs / "a" / "1.dcm", b"1" * 1_500_000)
    with pytest.raises(StoreError, match="No space left on device"):
        write_atomic(small_fs / "a" / "2.dcm", b"2" * 1_500_000)  # fails in write(): larger than the rest
    assert sorted(p.name for p in (small_fs / "a").iterdir()) == ["1.dcm"]
    assert kept.read_bytes() == b"1" * 1_500_000


def test_running_out_of_space_in_the_flush_leaves_nothing(small_fs):
    fill(small_fs)
    # a few bytes stay in the file object's buffer: the ENOSPC comes at flush, and again at close
    with pytest.raises(StoreError, match="No space left on device"):
        write_atomic(small_fs / "a" / "1.dcm", b"small")
    assert list((small_fs / "a").iterdir()) == []


def test_the_guard_measures_the_real_file_system_and_prunes(small_fs):
    filler = fill(small_fs)
    guard = DiskGuard(small_fs, 0.0, 0.5, prune=lambda: filler.unlink())
    assert guard.shortfall(guard.measure()) is not None
    assert guard.check() is None  # the prune removed the filler
    assert not filler.exists()


def test_the_scp_answers_out_of_resources_when_the_disk_fills(small_fs, tmp_path):
    """Instances of 0.5 MB into 2 MB: the first ones are stored, the rest get 0xA700 and leave nothing."""
    files = write_series(tmp_path / "in", SeriesSpec(n_slices=5, rows=512, columns=512))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = NodeConfig("HANSEG", port, tmp_path, Peer("DEST", "127.0.0.1", 1), (Allowed("SCANNER"),), bind="127.0.0.1")
    queue = JobQueue(tmp_path / "jobs.sqlite3")  # on the large disk: the instances fill the small one
    server = start_scp(config, Receiver(small_fs / "incoming", queue))  # no disk_guard: the default
    try:
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(pydicom.uid.CTImageStorage, pydicom.uid.ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="HANSEG")
        assert assoc.is_established
        try:
            statuses = [int(assoc.send_c_store(pydicom.dcmread(f)).Status) for f in files]
        finally:
            assoc.release()
    finally:
        server.shutdown()
        queue.close()
    n = statuses.count(0x0000)
    assert 1 <= n < len(files) and statuses == [0x0000] * n + [0xA700] * (len(files) - n)
    written = sorted(small_fs.rglob("*.dcm"))
    assert len(written) == n and leftovers(small_fs) == []
    sent = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).PixelData for f in files[:n]}
    assert {p.stem: pydicom.dcmread(p).PixelData for p in written} == sent  # whole files, byte for byte
