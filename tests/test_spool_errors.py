"""A spool append that the disk refuses (full, over quota, read-only) is one InputError
naming the spool file and what to do, not a traceback; records written before stay."""
import errno

import pytest

from engine.errors import InputError
from store import spool
from store.spool import SpoolWriteError, SpoolWriter, read_from, spool_files

FINISH = {"run_id": "r1", "status": "completed", "best_contrastive_entropy": 2.5, "metrics": None,
          "wall_time_s": 1.0}


def refuse_writes(monkeypatch, number, written=0):
    """Make every spool write fail with OSError `number` after `written` bytes went out."""
    real = spool._write_all

    def failing(fd, data):
        if written:
            real(fd, data[:written])
        raise OSError(number, f"{errno.errorcode[number]} (simulated)")

    monkeypatch.setattr(spool, "_write_all", failing)


@pytest.mark.parametrize("number, remedy", [
    (errno.ENOSPC, "the disk is full"), (errno.EDQUOT, "quota"), (errno.EROFS, "read-only"),
])
def test_a_refused_write_names_the_spool_file_and_what_to_do(tmp_path, monkeypatch, number, remedy):
    writer = SpoolWriter(tmp_path / "db.duckdb.spool")
    writer.append("finish_run", FINISH)
    refuse_writes(monkeypatch, number)
    with pytest.raises(SpoolWriteError) as caught:
        writer.append("finish_run", FINISH)
    message = str(caught.value)
    assert isinstance(caught.value, InputError)
    assert str(spool_files(tmp_path / "db.duckdb.spool")[0]) in message and "finish_run record" in message
    assert remedy in message and "point --store" in message and "\n" not in message


def test_records_before_a_full_disk_are_kept_and_writing_resumes(tmp_path, monkeypatch):
    writer = SpoolWriter(tmp_path / "spool")
    writer.append("finish_run", FINISH)
    with monkeypatch.context() as patch:
        refuse_writes(patch, errno.ENOSPC, written=10)  # half a line reached the disk
        with pytest.raises(SpoolWriteError, match="free space on that disk"):
            writer.append("finish_run", {**FINISH, "run_id": "r2"})
    writer.append("finish_run", {**FINISH, "run_id": "r3"})  # space freed
    chunk = read_from(spool_files(tmp_path / "spool")[0], 0)
    assert [record["args"]["run_id"] for record in chunk.records] == ["r1", "r3"]
    assert len(chunk.rejected) == 1  # the torn half line, set aside


def test_creating_the_spool_file_on_a_read_only_disk(tmp_path, monkeypatch):
    def read_only(self):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(SpoolWriter, "_create", read_only)
    with pytest.raises(SpoolWriteError, match=r"spool .*spool: the file system is read-only"):
        SpoolWriter(tmp_path / "spool").append("finish_run", FINISH)


def test_other_os_errors_are_not_reworded(tmp_path, monkeypatch):
    writer = SpoolWriter(tmp_path / "spool")
    refuse_writes(monkeypatch, errno.EIO)
    with pytest.raises(OSError) as caught:
        writer.append("finish_run", FINISH)
    assert not isinstance(caught.value, InputError) and caught.value.errno == errno.EIO


def test_engine_train_on_a_full_disk_is_one_error_line_and_status_2(tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from tests.helpers import write_synthetic
    dataset = write_synthetic(tmp_path / "syn", n_passages=80, n_train=40, n_test=20)
    refuse_writes(monkeypatch, errno.ENOSPC)
    code = main(["train", "--dataset", str(dataset), "--model", "scratch-L1-H32", "--tokenizer-vocab-size", "400",
                 "--steps", "2", "--batch-size", "4", "--negatives", "4", "--eval-negatives", "4",
                 "--eval-repeats", "1", "--max-query-length", "8", "--max-passage-length", "16",
                 "--checkpoint-every", "0", "--store", str(tmp_path / "results.duckdb"), "--cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: cannot write a ") and "results.duckdb.spool" in err[-1]
    assert "Traceback" not in "\n".join(err)
