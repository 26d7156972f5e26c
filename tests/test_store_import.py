"""Importing results from other tools: every malformed file gets a clear message and
imports nothing; in a partly bad file the good rows go in and the bad lines are named."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InputError
from store import Store
from store.table_import import MAX_IMPORT_BYTES, MAX_IMPORT_ROWS


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "import.duckdb")


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_csv_is_imported_with_defaults_and_metrics(store, tmp_path):
    path = write(tmp_path, "paper-table.csv",
                 "N,d,Loss,model,ndcg@10,notes\n"
                 "500000,500000,0.55,bert-tiny,0.21,x\n"
                 "\n"
                 "82000000,500000,0.36,bert-base,,y\n")  # fmt: skip
    report = store.import_file(path, dataset="msmarco", annotation="human")
    assert (report.imported, report.rejected, report.ignored_columns) == (2, [], ["notes"])

    points = store.law_points()
    assert list(points["n"]) == [500_000, 82_000_000]
    assert list(points["loss"]) == [0.55, 0.36]
    assert set(points["source"]) == {"import"} and set(points["label"]) == {"paper-table"}
    assert set(points["dataset"]) == {"msmarco"} and list(points["model"]) == ["bert-tiny", "bert-base"]
    runs = store.runs()
    assert runs.set_index("model_name").loc["bert-tiny", "ndcg@10"] == 0.21
    assert runs.loc[0, "config"]["imported_from"] == str(path)


def test_metrics_loss_is_kept_with_the_metrics(store, tmp_path):
    path = write(tmp_path, "t.csv", "n,d,loss,mrr@10,metrics_loss\n1000,10,5.0,0.02,5.3\n2000,10,4.9,0.03,\n"
                                    "3000,10,4.8,0.04,-1\n")
    report = store.import_file(path)
    assert report.imported == 2 and report.rejected == [(4, "metrics_loss must be greater than 0 (got '-1')")]
    runs = store.runs().set_index("n_params")
    assert runs.loc[1000, "contrastive_entropy"] == 5.3 and runs.loc[1000, "metrics"]["mrr@10"] == 0.02
    assert runs["contrastive_entropy"].isna().sum() == 1  # none given: the page falls back to the best loss


def test_calibrated_entropy_and_best_steps_are_imported(store, tmp_path):
    path = write(tmp_path, "t.csv", "n,d,loss,calibrated_loss,metrics_calibrated_loss,best_step,calibrated_best_step\n"
                                    "1000,10,5.0,4.6,4.7,400,0\n2000,10,4.9,,,,\n3000,10,4.8,-4,4.7,1.5,x\n")
    report = store.import_file(path)
    assert report.imported == 2 and report.ignored_columns == []
    assert report.rejected == [(4, "best_step must be a whole number >= 0 (got '1.5'); calibrated_best_step must be "
                                   "a whole number >= 0 (got 'x'); calibrated_loss must be greater than 0 (got '-4')")]
    runs = store.runs().set_index("n_params")
    assert runs.loc[1000, "best_calibrated_entropy"] == 4.6 and runs.loc[1000, "calibrated_entropy"] == 4.7
    assert runs.loc[1000, "best_step"] == 400 and runs.loc[1000, "calibrated_best_step"] == 0
    assert runs["best_calibrated_entropy"].isna().sum() == 1  # none given


def test_partly_bad_file_imports_good_rows_and_reports_bad_lines(store, tmp_path):
    path = write(tmp_path, "mixed.csv",
                 "n,d,loss,label\n"
                 "1000,100,2.5,a\n"          # line 2: good
                 "abc,100,2.5,b\n"           # line 3: text in a numeric column
                 "1000,-4,2.5,c\n"           # line 4: negative
                 "1000,100,0,d\n"            # line 5: zero loss
                 "1000,100,NaN,e\n"          # line 6: NaN
                 "1000.5,100,2.0,f\n"        # line 7: fractional parameter count
                 "1000,100\n"                # line 8: a field short
                 "2000,200,1.5,\n"           # line 9: good, label from the option
                 ",100,inf,h\n")             # line 10: empty and infinite  # fmt: skip
    report = store.import_file(path, label="batch-1")
    assert report.imported == 2
    assert report.rejected == [
        (3, "n: 'abc' is not a number"),
        (4, "d must be greater than 0 (got '-4')"),
        (5, "loss must be greater than 0 (got '0')"),
        (6, "loss is NaN"),
        (7, "n must be a whole number (got '1000.5')"),
        (8, "has 2 fields but the header has 4"),
        (10, "n is empty; loss is infinite"),
    ]
    points = store.law_points()
    assert sorted(zip(points["n"], points["label"], strict=True)) == [(1000, "a"), (2000, "batch-1")]


def test_unnamed_trailing_column_is_ignored(store, tmp_path):
    report = store.import_file(write(tmp_path, "trailing.csv", "n,d,loss,,\n1000,10,1.0,,\n"))
    assert (report.imported, report.rejected, report.ignored_columns) == (1, [], [])


def test_file_with_only_bad_rows_imports_nothing_and_says_why(store, tmp_path):
    report = store.import_file(write(tmp_path, "bad.csv", "n,d,loss\nten,100,1.0\n"))
    assert report.imported == 0 and report.rejected == [(2, "n: 'ten' is not a number")]
    assert store.runs().empty


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", "n,d,x\n1,2,3\n", r"missing the required column\(s\) loss; found 'n', 'd', 'x'"),
        ("empty.csv", "", r"is empty: expected a header line with the columns n, d, loss"),
        ("blank.csv", "\n\n  \n", r"is empty"),
        ("header.csv", "n,d,loss\n", r"has a header but no data rows"),
        ("twice.csv", "n,d,loss,n\n1,2,3,4\n", r"has the column 'n' more than once"),
        ("table.xlsx", "n,d,loss\n1,2,3\n", r"unsupported type '.xlsx'; import a .csv or .parquet file"),
    ],
)
def test_malformed_files_are_refused_whole(store, tmp_path, name, content, message):
    with pytest.raises(InputError, match=message):
        store.import_file(write(tmp_path, name, content))
    assert store.runs().empty


@pytest.mark.parametrize("text", ["n;d;loss\n1;2;3\n", "n\td\tloss\n1\t2\t3\n", "n|d|loss\n1|2|3\n"])
def test_the_delimiter_is_sniffed_from_the_header(store, tmp_path, text):
    assert store.import_file(write(tmp_path, "other.csv", text)).imported == 1



def test_a_semicolon_files_decimal_commas_are_read_as_points(store, tmp_path):
    """European Excel writes 2,5 for 2.5 beside its semicolons. Before: every such row was
    rejected ("loss: '2,5' is not a number")."""
    from store.table_import import check_csv_bytes

    text = "n;d;loss;label;mrr@10\n100000;1000;2,5;run 1,5;0,31\n200000;1000;2,25e0;b;\n400000;1000;2.125;c;\n"
    checked = check_csv_bytes("excel.csv", text.encode())
    assert checked.decimal_commas and not checked.rejected
    rows = [row for _, row in checked.good]
    assert [row["loss"] for row in rows] == [2.5, 2.25, 2.125]
    assert rows[0]["label"] == "run 1,5" and rows[0]["metrics"] == {"mrr@10": 0.31}  # text stays as written
    assert store.import_file(write(tmp_path, "excel.csv", text)).imported == 3
    assert sorted(store.law_points()["loss"]) == [2.125, 2.25, 2.5]
    assert not check_csv_bytes("points.csv", b"n;d;loss\n100000;1000;2.5\n").decimal_commas


def test_missing_and_undecodable_files(store, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        store.import_file(tmp_path / "nowhere.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("n,d,loss,label\n1,2,3,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="is not UTF-8 text"):
        store.import_file(latin)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="could not be read as Parquet"):
        store.import_file(broken)
    assert store.runs().empty


def test_huge_file_is_refused_before_reading(store, tmp_path):
    row = b"1000,1000,0.5\n"
    path = tmp_path / "huge.csv"
    path.write_bytes(b"n,d,loss\n" + row * (MAX_IMPORT_BYTES // len(row) + 1))
    with pytest.raises(InputError, match=r"is 10\.0 MiB, over the import limit of 10 MiB; split it"):
        store.import_file(path)
    assert store.runs().empty


def test_too_many_rows_are_refused(store, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("n,d,loss\n" + "1,1,1\n" * (MAX_IMPORT_ROWS + 1))
    with pytest.raises(InputError, match=r"has 100,001 rows, over the import limit of 100,000"):
        store.import_file(path)
    assert store.runs().empty


def test_parquet_import_reports_bad_rows_by_row_number(store, tmp_path):
    path = tmp_path / "results.parquet"
    pq.write_table(pa.table({
        "n": ["1000", "oops", "3000"], "d": [10, 20, 30], "loss": [1.0, 1.0, float("nan")],
        "Annotation": ["ict", "ict", "ict"],
    }), path)  # fmt: skip
    report = store.import_file(path, dataset="toy")
    assert report.imported == 1
    assert report.rejected == [(2, "n: 'oops' is not a number"), (3, "loss is NaN")]
    points = store.law_points()
    assert (points.loc[0, "n"], points.loc[0, "annotation"], points.loc[0, "dataset"]) == (1000, "ict", "toy")


def test_parquet_without_required_columns_is_refused(store, tmp_path):
    path = tmp_path / "short.parquet"
    pq.write_table(pa.table({"n": [1], "loss": [1.0]}), path)
    with pytest.raises(InputError, match=r"missing the required column\(s\) d"):
        store.import_file(path)
    assert store.runs().empty
