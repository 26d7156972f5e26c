"""`python -m store` as a user runs it (in this process: tests/in_process.py): info,
import with rejected lines, export, errors."""
from __future__ import annotations

import json
import subprocess

from store.__main__ import main
from tests.in_process import run_main


def cli(*args: object) -> subprocess.CompletedProcess:
    return run_main(main, *args)


def test_import_info_export_round_trip(tmp_path):
    db = tmp_path / "cli.duckdb"
    results = tmp_path / "results.csv"
    results.write_text("n,d,loss\n1000,100,2.0\n-1,100,2.0\n4000,100,1.5\n")

    imported = cli("import", results, "--store", db, "--label", "paper", "--dataset", "msmarco")
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 row(s)" in imported.stdout
    assert "rejected line 3: n must be greater than 0 (got '-1')" in imported.stdout

    info = cli("--store", db, "info")  # --store before the command works too
    assert info.returncode == 0, info.stderr
    facts = json.loads(info.stdout)
    assert facts["path"] == str(db) and facts["counts"]["runs"] == 2

    out = tmp_path / "runs.json"
    exported = cli("export", "--what", "runs", "--format", "json", "--out", out, "--store", db)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == str(out)
    rows = json.loads(out.read_text())
    assert sorted(row["n_params"] for row in rows) == [1000, 4000]
    assert {row["label"] for row in rows} == {"paper"} and {row["dataset"] for row in rows} == {"msmarco"}


def test_bad_input_is_one_error_line_and_status_2(tmp_path):
    db = tmp_path / "cli.duckdb"
    no_loss = tmp_path / "no-loss.csv"
    no_loss.write_text("n,d,accuracy\n1,2,3\n")
    binary = tmp_path / "figure.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    for bad, problem in ((no_loss, "missing the required column(s) loss"), (binary, "not a text file")):
        result = cli("import", bad, "--store", db)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith("error: ") and problem in result.stderr and str(bad) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(cli("info", "--store", db).stdout)["counts"]["runs"] == 0


def test_a_semicolon_separated_file_imports(tmp_path):
    """The import sniffs the delimiter (issue 12 item 19): a spreadsheet's semicolon CSV is no error."""
    db = tmp_path / "cli.duckdb"
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text("n;d;loss\n1000;100;2.0\n4000;100;1.5\n")
    result = cli("import", semicolons, "--store", db)
    assert result.returncode == 0, result.stderr
    assert "imported 2 row(s)" in result.stdout
    assert json.loads(cli("info", "--store", db).stdout)["counts"]["runs"] == 2
