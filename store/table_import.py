"""Reading and checking result tables from other tools (CSV or Parquet).

A file must have the columns `n` (the paper's non-embedding parameter count), `d`
(annotated query-passage pairs) and `loss` (contrastive entropy); it may have `label`,
`dataset`, `annotation`, `model`, the ranking metrics `mrr@10`, `ndcg@10`, `map@10`,
`recall@1000`, and `metrics_loss`: the contrastive entropy of the evaluation those
metrics come from, when it is not the (best) `loss`, kept with the metrics as
`contrastive_entropy` as the engine keeps it, `calibrated_loss` and
`metrics_calibrated_loss`: the best calibrated contrastive entropy and that of the
metrics' evaluation (engine/evaluate.py), `trained_calibrated_loss`: the best calibrated
one after step 0, `best_step` and `calibrated_best_step`: the
evaluation step of each best (0: the untrained model), and the evaluation protocol's columns
(engine/eval_protocol.py: `eval_negatives`, `eval_repeats`, `eval_pool`, `eval_pool_seed`,
`eval_test_pairs`, `eval_max_query_length`, `eval_max_passage_length`,
`eval_precision`, `eval_test_split`, `eval_metric`), kept as the run's evaluation
fingerprint; rows without them form a protocol group of their own. Other columns are
ignored and named in the report.

Two kinds of problem are told apart. A problem with the file as a whole (missing
column, empty, binary, not UTF-8, over the size or row limit) raises `InputError` and
nothing is imported. The delimiter is sniffed from the header (comma, semicolon, tab or
pipe), so a table saved by a spreadsheet in a semicolon locale reads as it is; in a semicolon-separated
file a number column's decimal commas (`2,5`, as European Excel writes it) read as decimal points, and
the result says so. A problem with one row (text in a numeric column,
a value that is not positive, NaN) rejects that row with its line number and reason,
and the good rows are imported. CSV is parsed with the `csv` module rather than a
DataFrame reader so that reported line numbers are the lines a user sees in an editor.
"""
from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import InputError
from engine.eval_protocol import PROTOCOL_COLUMNS, fingerprint_from_row

REQUIRED_COLUMNS = ("n", "d", "loss")
TEXT_COLUMNS = ("label", "dataset", "annotation", "model")
METRIC_COLUMNS = ("mrr@10", "ndcg@10", "map@10", "recall@1000")
METRICS_LOSS_COLUMN = "metrics_loss"
CALIBRATED_LOSS_COLUMN = "calibrated_loss"  # best calibrated entropy (runs.best_calibrated_entropy)
METRICS_CALIBRATED_COLUMN = "metrics_calibrated_loss"  # calibrated entropy of the metrics' evaluation
TRAINED_CALIBRATED_COLUMN = "trained_calibrated_loss"  # best calibrated entropy after step 0 (trained checkpoints)
# column -> the key it is kept under in a run's metrics
LOSS_COLUMNS = {METRICS_LOSS_COLUMN: "contrastive_entropy", METRICS_CALIBRATED_COLUMN: "calibrated_entropy",
                TRAINED_CALIBRATED_COLUMN: "trained_calibrated_entropy"}
STEP_COLUMNS = ("best_step", "calibrated_best_step")  # the evaluation step of each best (0: the untrained model)
NUMBER_COLUMNS = REQUIRED_COLUMNS + METRIC_COLUMNS + tuple(LOSS_COLUMNS) + (CALIBRATED_LOSS_COLUMN,) + STEP_COLUMNS
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+([eE][+-]?\d+)?$")  # 2,5 or -1,5e-3: a semicolon locale's number
MAX_IMPORT_BYTES = 10 * 2**20  # a scaling study is hundreds of rows; 10 MiB is far beyond
MAX_IMPORT_ROWS = 100_000
_BIGINT_LIMIT = 2**63
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_BINARY_SIGNATURES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
                      b"%PDF": "a PDF document", b"PK\x03\x04": "a ZIP archive (an .xlsx workbook is one)",
                      b"PAR1": "a Parquet file", b"\xd0\xcf\x11\xe0": "an old Excel (.xls) workbook"}


@dataclass
class ImportReport:
    """What an import did: rows imported, rows rejected as (line, reason), columns ignored.

    For CSV the line is the file's line number (the header is line 1); for Parquet and
    DataFrames it is the 1-based row number.
    """

    path: Path
    imported: int
    rejected: list[tuple[int, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


@dataclass
class CheckedRows:
    """The rows that passed (each with its line number) and those that did not."""

    good: list[tuple[int, dict[str, Any]]]
    rejected: list[tuple[int, str]]
    ignored_columns: list[str]
    delimiter: str = ","
    decimal_commas: bool = False  # number fields such as 2,5 were read as 2.5 (a semicolon-separated file)


def _positive_number(column: str, value: Any, *, whole: bool) -> float:
    """`value` as a finite number > 0, else ValueError naming the column and the value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{column} is empty")
    if isinstance(value, bool):
        raise ValueError(f"{column}: {value!r} is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{column}: {value!r} is not a number") from None
    if math.isnan(number):
        raise ValueError(f"{column} is NaN")
    if math.isinf(number):
        raise ValueError(f"{column} is infinite")
    if number <= 0:
        raise ValueError(f"{column} must be greater than 0 (got {value!r})")
    if whole and not number.is_integer():
        raise ValueError(f"{column} must be a whole number (got {value!r})")
    if whole and number >= _BIGINT_LIMIT:
        raise ValueError(f"{column} is too large (got {value!r})")
    return number


def _metric(column: str, value: Any) -> float | None:
    """An optional ranking metric: empty is fine, otherwise a number in [0, 1]."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None  # a DataFrame's missing value
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{column}: {value!r} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{column} must be between 0 and 1 (got {value!r})")
    return number


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def check_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One result row, cleaned; ValueError lists every problem found in it."""
    problems: list[str] = []
    row: dict[str, Any] = {}
    for column in REQUIRED_COLUMNS:
        try:
            row[column] = _positive_number(column, raw.get(column), whole=column != "loss")
        except ValueError as err:
            problems.append(str(err))
    metrics = {}
    for column in METRIC_COLUMNS:
        try:
            if (value := _metric(column, raw.get(column))) is not None:
                metrics[column] = value
        except ValueError as err:
            problems.append(str(err))
    for column, key in LOSS_COLUMNS.items():
        if _text(raw.get(column)) is not None:
            try:
                metrics[key] = _positive_number(column, raw[column], whole=False)
            except ValueError as err:
                problems.append(str(err))
    for column in STEP_COLUMNS:
        value = raw.get(column)
        if _text(value) is None:
            continue
        try:
            step = float(value)
        except (TypeError, ValueError):
            step = math.nan
        if not (math.isfinite(step) and step.is_integer() and step >= 0):
            problems.append(f"{column} must be a whole number >= 0 (got {value!r})")
            continue
        metrics[column] = int(step)
    row[CALIBRATED_LOSS_COLUMN] = None
    if _text(raw.get(CALIBRATED_LOSS_COLUMN)) is not None:
        try:
            row[CALIBRATED_LOSS_COLUMN] = _positive_number(CALIBRATED_LOSS_COLUMN, raw[CALIBRATED_LOSS_COLUMN], whole=False)
        except ValueError as err:
            problems.append(str(err))
    try:
        row["eval_fingerprint"] = fingerprint_from_row(raw)
    except ValueError as err:
        problems.append(str(err))
    if problems:
        raise ValueError("; ".join(problems))
    row["n"], row["d"] = int(row["n"]), int(row["d"])
    row.update({column: _text(raw.get(column)) for column in TEXT_COLUMNS})
    row["metrics"] = metrics or None
    return row


def _check_columns(path: str | Path, columns: list[str]) -> list[str]:
    """Refuse a header without n, d, loss (guessing a wrong delimiter); return the
    columns that will be ignored."""
    seen = set()
    for column in filter(None, columns):  # unnamed columns (a trailing comma) are ignored
        if column in seen:
            raise InputError(f"{path} has the column {column!r} more than once")
        seen.add(column)
    missing = [column for column in REQUIRED_COLUMNS if column not in seen]
    if missing:
        raise InputError(
            f"{path} is missing the required column(s) {', '.join(missing)}; "
            f"found {', '.join(repr(c) for c in columns) or 'no columns'}; "
            f"expected {', '.join(REQUIRED_COLUMNS)} (optional: "
            f"{', '.join(TEXT_COLUMNS + METRIC_COLUMNS)})"
        )
    known = set(REQUIRED_COLUMNS + TEXT_COLUMNS + METRIC_COLUMNS + tuple(LOSS_COLUMNS) + (CALIBRATED_LOSS_COLUMN,)
                + STEP_COLUMNS + PROTOCOL_COLUMNS)
    return [column for column in columns if column and column not in known]


def check_rows(
    numbered: Iterable[tuple[int, Mapping[str, Any]]],
) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]]]:
    """Split (line, raw row) pairs into good (line, row) and rejected (line, reason)."""
    good, rejected = [], []
    for line, raw in numbered:
        try:
            good.append((line, check_row(raw)))
        except ValueError as err:
            rejected.append((line, str(err)))
    return good, rejected


def _too_many_rows(path: str | Path, rows: int) -> InputError:
    return InputError(
        f"{path} has {rows:,} rows, over the import limit of {MAX_IMPORT_ROWS:,}; "
        "split it into smaller files"
    )


def _decode(name: str | Path, data: bytes) -> str:
    """The file's text, or InputError saying in words why it is not CSV text."""
    head = data[:4096]
    kind = next((what for signature, what in _BINARY_SIGNATURES.items() if head.startswith(signature)), None)
    if kind or b"\x00" in head:
        raise InputError(f"{name} is not a text file (it looks like {kind or 'binary data'}); "
                         "export the table as CSV: comma-separated text with a header line n, d, loss")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise InputError(f"{name} is not UTF-8 text (line {line} has the byte 0x{data[err.start]:02x}, "
                         "e.g. an accented letter saved as Latin-1); save it as UTF-8 CSV") from None


def sniff_delimiter(text: str) -> str:
    """The delimiter of the first non-blank line (the header): comma unless the
    header reads as semicolon-, tab- or pipe-separated."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return csv.Sniffer().sniff(header, delimiters="".join(DELIMITER_NAMES)).delimiter
    except csv.Error:
        return ","


def _csv_rows(name: str | Path, text: str, delimiter: str) -> tuple[list[str], list[tuple[int, list[str]]],
                                                                    list[tuple[int, str]]]:
    """The normalised header, (line number, fields) pairs and (line, reason) for the
    rows that run over several lines: a quote left open joins the lines after it into
    one field, which would silently swallow them; blank lines skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    spanning: list[tuple[int, str]] = []
    last = 0
    try:
        for fields in reader:
            first, last = last + 1, reader.line_num
            if not any(value.strip() for value in fields):
                continue
            if header is None:
                header = [value.strip().lower() for value in fields]
                continue
            if last > first:
                spanning.append((first, f"a quote opened on line {first} closes only on line {last} (or never), so "
                                        f"lines {first}-{last} were read as one row; close the quote"))
                continue
            rows.append((reader.line_num, fields))
            if len(rows) > MAX_IMPORT_ROWS:
                raise _too_many_rows(name, len(rows))
    except csv.Error as err:
        raise InputError(
            f"{name} could not be read as CSV at line {reader.line_num}: {err}"
        ) from None
    if header is None:
        raise InputError(f"{name} is empty: expected a header line with the columns n, d, loss")
    return header, rows, spanning


def _check_csv(path: Path) -> CheckedRows:
    return check_csv_bytes(path, path.read_bytes())


def check_csv_bytes(name: str | Path, data: bytes) -> CheckedRows:
    """Check the bytes of a CSV file called `name` (an upload, or a file's contents);
    InputError for a problem with the file as a whole."""
    if not data.strip():
        raise InputError(f"{name} is empty: expected a header line with the columns n, d, loss")
    if len(data) > MAX_IMPORT_BYTES:
        raise InputError(f"{name} is {len(data) / 2**20:.1f} MiB, over the import limit of "
                         f"{MAX_IMPORT_BYTES / 2**20:.0f} MiB; split it into smaller files")
    text = _decode(name, data)
    delimiter = sniff_delimiter(text)
    header, rows, spanning = _csv_rows(name, text, delimiter)
    ignored = _check_columns(name, header)
    rows, decimal_commas = _decimal_points(header, rows) if delimiter == ";" else (rows, False)
    if not rows and not spanning:
        raise InputError(f"{name} has a header but no data rows")
    misshapen = [
        (line, f"has {len(fields)} fields but the header has {len(header)}")
        for line, fields in rows
        if len(fields) != len(header)
    ]
    good, bad = check_rows(
        (line, dict(zip(header, fields, strict=True)))
        for line, fields in rows
        if len(fields) == len(header)
    )
    return CheckedRows(good, sorted(misshapen + bad + spanning), ignored, delimiter, decimal_commas)


def _decimal_points(header: list[str], rows: list[tuple[int, list[str]]]) -> tuple[list[tuple[int, list[str]]], bool]:
    """`rows` with the decimal commas of the number columns' fields as points (2,5 ->
    2.5), and whether there was any; text columns (a label "run 1,5") stay as written."""
    numbers = [i for i, column in enumerate(header) if column in NUMBER_COLUMNS]
    pointed, found = [], False
    for line, fields in rows:
        fields = list(fields)
        for i in numbers:
            if i < len(fields) and _DECIMAL_COMMA.match(fields[i].strip()):
                fields[i], found = fields[i].strip().replace(",", "."), True
        pointed.append((line, fields))
    return pointed, found


def _check_parquet(path: Path) -> CheckedRows:
    try:
        with pq.ParquetFile(path) as parquet:
            if parquet.metadata.num_rows > MAX_IMPORT_ROWS:
                raise _too_many_rows(path, parquet.metadata.num_rows)
            table = parquet.read()
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path} could not be read as Parquet: {err}") from None
    columns = [name.strip().lower() for name in table.column_names]
    ignored = _check_columns(path, columns)
    if table.num_rows == 0:
        raise InputError(f"{path} has no rows")
    table = table.rename_columns(columns)
    good, rejected = check_rows(enumerate(table.to_pylist(), start=1))
    return CheckedRows(good, rejected, ignored)


def csv_header(path: Path) -> list[str]:
    """The names in a CSV file's first line as written (pandas renames a repeated one)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def check_read_table(name: str | Path, table, header: list[str] | None = None) -> None:
    """InputError for a table (a DataFrame) that pandas read wrong without a word: a
    column named twice in `header` (default: the table's columns; pandas keeps the
    first and renames the second "x.1"), or a cell holding a line break (a quote left
    open joins the rows after it into one cell)."""
    names = [str(column) for column in table.columns] if header is None else header
    twice = sorted({column for column in names if names.count(column) > 1})
    if twice:
        raise InputError(f"{name}: the column(s) {', '.join(map(repr, twice))} appear more than once; keep one of "
                         "each (which one holds the values is not for the reader to guess)")
    for column in table.columns:
        if table[column].map(lambda cell: isinstance(cell, str) and "\n" in cell).any():
            raise InputError(f"{name}: column {column!r} has a cell that runs over several lines (a quote left "
                             "open?); close the quote so each row is one line")


def check_file(path: Path) -> CheckedRows:
    """Read and check an import file; InputError for a problem with the whole file."""
    if not path.is_file():
        raise InputError(f"import file {path} does not exist or is not a file")
    readers = {".csv": _check_csv, ".parquet": _check_parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            f"{path} has the unsupported type {path.suffix or '(none)'!r}; "
            "import a .csv or .parquet file"
        )
    size = path.stat().st_size
    if size > MAX_IMPORT_BYTES:
        raise InputError(
            f"{path} is {size / 2**20:.1f} MiB, over the import limit of "
            f"{MAX_IMPORT_BYTES / 2**20:.0f} MiB; split it into smaller files"
        )
    if size == 0:
        raise InputError(f"{path} is empty: expected a header line with the columns n, d, loss")
    return reader(path)


def check_frame(records: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Every row of an in-memory table, or InputError naming the first bad rows."""
    good, rejected = check_rows(enumerate(records, start=1))
    if rejected:
        shown = "; ".join(f"row {line}: {reason}" for line, reason in rejected[:5])
        more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
        raise InputError(f"{len(rejected)} of {len(records)} rows are invalid: {shown}{more}")
    return good

