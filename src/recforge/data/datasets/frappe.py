"""Frappe: context-aware mobile app usage (Baltrunas et al., arXiv:1505.03014, 2015), NFM protocol.

The NFM protocol (He & Chua, "Neural Factorization Machines for Sparse Predictive Analytics",
SIGIR 2017, Sec. 4.1; reused by AFN, AAAI 2020, and by BARS as ``Frappe_x1``): every log entry
of ``frappe.csv`` (user, app, 8 context fields; the usage count ``cnt`` dropped) is a positive
(label 1); for each, two apps the user never used are paired with the same context as negatives
(label -1 in the files, 0 here); all 288,609 rows were then split 7:2:1 into train / validation /
test. Ten sparse fields: ``user``, ``item``, ``daytime``, ``weekday``, ``isweekend``,
``homework``, ``cost``, ``weather``, ``country``, ``city``.

What is here, and how the splits are made:

* **validation / test: official.** The NFM authors' ``frappe.validation.libfm`` (57,722 rows) and
  ``frappe.test.libfm`` (28,860 rows). Their global feature ids are mapped back to per-field
  values with the offsets of the NFM README (user 0..956 = raw user id, item 957..5038 = raw item
  id + 957, then daytime 7, weekday 7, isweekend 2, homework 3, cost 2, weather 9, country 80,
  city 233 values). Within a context field, id k is the k-th distinct value in order of first
  appearance in ``frappe.csv`` (checked: under this mapping every positive row of both files is a
  row of the raw log; :func:`read_frappe` raises otherwise).
* **train: RE-CREATED, not the official Frappe_x1 train file** (``frappe.train.libfm``, 202,027
  rows, is not available here). Positives: the raw log rows whose (user, item, context) tuple is
  not a positive of the validation or test file. Negatives: for each positive, 2 distinct apps
  drawn uniformly (seeded) among those the user never used anywhere in the log, with the same
  context, and never equal to a validation/test row. The positives are (up to duplicates of the
  log) the official ones; the negatives are a new draw, so numbers are close to, but not exactly,
  comparable with published Frappe_x1 results. ``info`` says so.

Licence: research use only, cite the paper, no redistribution, no de-anonymisation, no commercial
use (Frappe README); files are never copied into this package.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.datasets.movielens import _cleanup_on_failure
from recforge.data.datasets.registry import register_dataset
from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.files import DataFile, FileVariant, download, extract_member, read_bytes, resolve_data_dir, sha256
from recforge.data.readers import cast_column, read_table
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TabularData
from recforge.errors import DataError

FRAPPE_ZIP = "https://www.baltrunas.info/_files/archives/be17b7_474755a5e9684a749a012516d04fb456.zip?dn=Mobile_Frappe.zip"
FRAPPE_ZIP_SHA256 = "4adc616de57170f282397f6e6e30215f97fa7ad1b7f40bd12ef5dceaaf3e9b4e"
NFM_RAW = "https://raw.githubusercontent.com/hexiangnan/neural_factorization_machine/ca2a5d11b929816aa44c6e470e795af144608507/data/frappe"

FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country", "city")
CONTEXT = FIELDS[2:]
#: Values per field in the NFM libfm files (README.txt); global id = offset of the field + local id.
CARDINALITIES = (957, 4082, 7, 7, 2, 3, 2, 9, 80, 233)
OFFSETS = tuple(int(x) for x in np.concatenate([[0], np.cumsum(CARDINALITIES)[:-1]]))
NUM_FEATURES = int(sum(CARDINALITIES))  # 5,382
RAW_COLUMNS = ("user", "item", "cnt") + CONTEXT
NEGATIVES_PER_POSITIVE = 2
_LIBFM_TOKEN = re.compile(r"^(?P<id>\d+):1(?:\.0*)?$")


def read_raw_log(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Parse ``frappe.csv`` (tab-separated, with header).

    Returns:
        codes: int64 [N, 10], one column per field in :data:`FIELDS`: user and item ids as
            written, context fields as the index of the value in order of first appearance (the
            NFM encoding).
        values: per field, the value of each code (user/item: ``str(id)``).

    Raises:
        DataError: naming the file for a wrong header, non-integer ids, or more distinct values
            in a field than the NFM files allow.
    """
    table = read_table(
        path,
        f"the tab-separated Frappe log with columns {', '.join(RAW_COLUMNS)}",
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in RAW_COLUMNS}, strings_can_be_null=False),
        header=True,
    )
    if tuple(table.column_names) != RAW_COLUMNS:
        raise DataError(f"expected header {' '.join(RAW_COLUMNS)}, found {' '.join(table.column_names)}", path, 1)
    codes = np.zeros((table.num_rows, len(FIELDS)), dtype=np.int64)
    values: list[np.ndarray] = []
    for j, field in enumerate(FIELDS):
        column = table.column(field).to_numpy(zero_copy_only=False).astype(str)
        if j < 2:
            codes[:, j] = cast_column(table.column(field), pa.int64(), path, field, first_line=2).to_numpy()
            out = (codes[:, j] < 0) | (codes[:, j] >= CARDINALITIES[j])
            if out.any():
                row = int(np.flatnonzero(out)[0])
                raise DataError(f"{field} id {codes[row, j]} is outside 0..{CARDINALITIES[j] - 1}", path, row + 2)
            values.append(np.arange(CARDINALITIES[j]).astype(str))
            continue
        unique, first, inverse = np.unique(column, return_index=True, return_inverse=True)
        if len(unique) > CARDINALITIES[j]:
            raise DataError(f"{field} has {len(unique)} distinct values; the NFM encoding allows {CARDINALITIES[j]}", path)
        rank = np.empty(len(unique), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(unique))  # order of first appearance
        codes[:, j] = rank[inverse.ravel()]
        values.append(unique[np.argsort(first, kind="stable")])
    return codes, values


def read_libfm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse an NFM Frappe libfm file: ``label id:1 ... id:1`` with one id per field, in field order.

    Returns:
        labels: float32 [N] (1.0 for ``1``, 0.0 for ``-1``).
        codes: int64 [N, 10] per-field local ids (global id minus the field's offset).

    Raises:
        DataError: naming the file and line of the first malformed row (token count, label,
            token form, or an id outside its field's range).
    """
    text = read_bytes(path)
    names = ["label"] + list(FIELDS)
    try:
        table = pacsv.read_csv(
            io.BytesIO(text),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=" ", quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in names}, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise _first_bad_libfm_line(path, text) or DataError(f"expected 11 space-separated libfm tokens: {exc}", path) from None
    label = table.column("label")
    known = pc.is_in(label, value_set=pa.array(["1", "-1"]))
    if not pc.all(known).as_py():
        row = int(np.flatnonzero(~known.to_numpy(zero_copy_only=False))[0])
        raise DataError(f"label must be 1 or -1, found {label[row].as_py()!r}", path, row + 1)
    codes = np.zeros((table.num_rows, len(FIELDS)), dtype=np.int64)
    for j, field in enumerate(FIELDS):
        parts = pc.extract_regex(table.column(field), _LIBFM_TOKEN.pattern)
        ids = pc.struct_field(parts, "id")
        if ids.null_count:
            row = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"field {j + 1} ({field}) must be 'id:1', found {table.column(field)[row].as_py()!r}", path, row + 1)
        local = pc.cast(ids, pa.int64()).to_numpy(zero_copy_only=False) - OFFSETS[j]
        out = (local < 0) | (local >= CARDINALITIES[j])
        if out.any():
            row = int(np.flatnonzero(out)[0])
            raise DataError(
                f"field {j + 1} ({field}) id {local[row] + OFFSETS[j]} is outside its range "
                f"{OFFSETS[j]}..{OFFSETS[j] + CARDINALITIES[j] - 1}",
                path,
                row + 1,
            )
        codes[:, j] = local
    labels = pc.equal(label, "1").to_numpy(zero_copy_only=False).astype(np.float32)
    return labels, codes


def _first_bad_libfm_line(path: Path, text: bytes) -> DataError | None:
    for number, line in enumerate(text.decode("utf-8", errors="replace").splitlines(), start=1):
        tokens = line.split()
        if len(tokens) != 1 + len(FIELDS):
            return DataError(f"expected a label and {len(FIELDS)} id:1 tokens, found {len(tokens)} token(s)", path, number)
    return None


def tuple_keys(codes: np.ndarray) -> np.ndarray:
    """One int64 per (user, item, context) row: the mixed-radix number of its 10 field codes."""
    key = np.zeros(len(codes), dtype=np.int64)
    for j, size in enumerate(CARDINALITIES):  # product of sizes ~3.9e14 < 2**63
        key = key * size + codes[:, j]
    return key


def sample_negatives(
    positives: np.ndarray, used_pairs: np.ndarray, forbidden: np.ndarray, per_positive: int, seed: int
) -> np.ndarray:
    """Negatives as in NFM: for each positive row, ``per_positive`` distinct items the user never
    used, with the positive's context.

    Args:
        positives: int64 [P, 10] field codes of the positive rows.
        used_pairs: int64 keys ``user * num_items + item`` of every pair in the log (never drawn).
        forbidden: :func:`tuple_keys` of rows a negative must not equal (validation/test rows).
        per_positive: negatives per positive.
        seed: fixes the draw.

    Returns:
        int64 [P * per_positive, 10]: the negatives of positive i are rows i*k .. i*k+k-1.
    """
    rng = np.random.default_rng(seed)
    num_items = CARDINALITIES[1]
    negatives = np.repeat(positives, per_positive, axis=0)
    todo = np.arange(len(negatives))
    used_sorted, forbidden_sorted = np.sort(used_pairs), np.sort(forbidden)
    while len(todo):  # rejection sampling: redraw only the rows that broke a rule
        negatives[todo, 1] = rng.integers(0, num_items, size=len(todo))
        rows = negatives[todo]
        bad = _member(rows[:, 0] * num_items + rows[:, 1], used_sorted) | _member(tuple_keys(rows), forbidden_sorted)
        # the negatives of one positive must differ from each other
        items = negatives[:, 1].reshape(-1, per_positive)
        bad |= (items[todo // per_positive] == rows[:, 1:2]).sum(axis=1) > 1
        todo = todo[bad]
    return negatives


def _member(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if len(sorted_set) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, keys), len(sorted_set) - 1)
    return sorted_set[pos] == keys


def _to_table(codes: np.ndarray, labels: np.ndarray, values: list[np.ndarray]) -> pa.Table:
    columns: dict[str, Any] = {f: pa.array(values[j][codes[:, j]], pa.string()) for j, f in enumerate(FIELDS)}
    columns["label"] = pa.array(labels.astype(np.float32))
    return pa.table(columns)


def read_frappe(paths: dict[str, Path], seed: int) -> tuple[RawSplits, dict[str, Any]]:
    """The official validation/test files and the re-created training split (see the module doc).

    Returns:
        The raw splits (string values per field, float32 ``label``) and counts for ``info``.

    Raises:
        DataError: for malformed files, or a validation/test positive that is not a row of the
            raw log (the files do not belong together, or the field mapping is wrong).
    """
    raw_codes, values = read_raw_log(paths["raw log"])
    raw_keys = tuple_keys(raw_codes)
    splits = {}
    for role in ("validation", "test"):
        labels, codes = read_libfm(paths[role])
        positive_keys = tuple_keys(codes[labels == 1])
        missing = ~_member(positive_keys, np.sort(raw_keys))
        if missing.any():
            row = int(np.flatnonzero(labels == 1)[np.flatnonzero(missing)[0]])
            raise DataError(
                "positive row is not a row of the raw log frappe.csv under the NFM field encoding; "
                "expected the NFM validation/test files of this Frappe release",
                paths[role],
                row + 1,
            )
        splits[role] = (labels, codes)
    held_out = np.concatenate([tuple_keys(c) for _, c in splits.values()])
    held_out_positive = np.concatenate([tuple_keys(c[lab == 1]) for lab, c in splits.values()])
    positives = raw_codes[~_member(raw_keys, np.sort(held_out_positive))]
    used_pairs = np.unique(raw_codes[:, 0] * CARDINALITIES[1] + raw_codes[:, 1])
    negatives = sample_negatives(positives, used_pairs, held_out, NEGATIVES_PER_POSITIVE, seed)
    # interleave: each positive followed by its negatives
    k = NEGATIVES_PER_POSITIVE
    grouped = np.concatenate([positives[:, None, :], negatives.reshape(len(positives), k, -1)], axis=1)
    train_codes = grouped.reshape(-1, len(FIELDS))
    train_labels = np.tile(np.array([1.0] + [0.0] * k, dtype=np.float32), len(positives))
    counts = {
        "raw_log_rows": int(len(raw_codes)),
        "rebuilt_train_positives": int(len(positives)),
        "rebuilt_train_negatives": int(len(negatives)),
        "official_train_rows_not_available": 202027,
    }
    info = (
        "Frappe: validation/test = the NFM authors' frappe.validation.libfm / frappe.test.libfm (Frappe_x1); "
        f"train RE-CREATED from the raw log frappe.csv ({len(positives):,} log rows not positive in validation/test "
        f"+ {k} sampled negatives each, seed {seed}), NOT the official Frappe_x1 train file"
    )
    raw = RawSplits(
        train=_to_table(train_codes, train_labels, values),
        valid=_to_table(splits["validation"][1], splits["validation"][0], values),
        test=_to_table(splits["test"][1], splits["test"][0], values),
        info=info,
    )
    return raw, counts


@register_dataset
class Frappe(TabularSource):
    """Frappe app usage, NFM protocol: official validation/test files, re-created training split."""

    name = "frappe"
    folder = "frappe"
    description = "Frappe app usage (NFM/BARS Frappe_x1 valid/test; train re-created from the raw log + 2 negatives)"
    citation = "Baltrunas et al., arXiv:1505.03014 (2015); protocol and splits of NFM (He & Chua, SIGIR 2017)"
    license = "Frappe terms: research use only, cite the paper, no redistribution, no commercial use"
    files = (
        DataFile(
            "raw log",
            (
                FileVariant("frappe.csv", sha256("409edc12f4e2153c5dd58ae171938735911d9b0f70961d5f1086b241656b2cb5")),
                FileVariant("frappe.csv.gz", sha256("f07a0a396f3c42a8474ae772c56640c714572d548527f58154655be35ed81835")),
            ),
        ),
        DataFile(
            "validation",
            (
                FileVariant("frappe.validation.libfm", sha256("fdf4be563a7dd9b15f7a6e8b32671e90e6e7a2a2bd3af4e10bf13c5ad7e76e9e")),
                FileVariant("frappe.validation.libfm.gz", sha256("f5d3ba2c099144aca521f6eb019e536a82a47eb7485f08ea2f16ec96df565d0c")),
            ),
        ),
        DataFile(
            "test",
            (
                FileVariant("frappe.test.libfm", sha256("a2ebaef3a9af8e55f8bb0d08bc4923965e42e43760ebd7635ac2f8c5db99e097")),
                FileVariant("frappe.test.libfm.gz", sha256("5cd687ff4c5ab8019d388d80a41957026986987ffb7f2a7c46425157926eac45")),
            ),
        ),
    )

    def default_schema(self) -> Schema:
        return Schema(features=tuple(FeatureSpec(f) for f in FIELDS), labels=("label",))

    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        return read_frappe(paths, seed)[0]

    def encode(self, raw: RawSplits, schema: Schema, seed: int, where: str = "") -> TabularData:
        data = super().encode(raw, schema, seed, where)
        data.info["split"] = (
            "validation/test: the NFM authors' files (official Frappe_x1 rows); train: RE-CREATED from the raw log "
            f"with {NEGATIVES_PER_POSITIVE} sampled negatives per positive (seed {seed}), not the official train file"
        )
        data.info["train_rebuilt"] = True
        return data

    def download(self, data_dir: str | Path | None = None) -> None:
        folder = resolve_data_dir(data_dir) / self.folder
        with _cleanup_on_failure(folder):
            raw_log = self.files[0]
            if raw_log.locate(folder) is None:
                archive = folder / "Mobile_Frappe.zip"
                if not archive.is_file():
                    download(FRAPPE_ZIP, archive, sha256(FRAPPE_ZIP_SHA256))
                variant = raw_log.variants[0]
                extract_member(archive, "Mobile_Frappe/frappe/frappe.csv", folder / variant.filename)
                if variant.checksum.compute(folder / variant.filename) != variant.checksum.digest:
                    (folder / variant.filename).unlink()
                    raise DataError(f"extracted frappe.csv does not match its sha256 {variant.checksum.digest}", archive)
            for data_file in self.files[1:]:
                if data_file.locate(folder) is None:
                    variant = data_file.variants[0]
                    download(f"{NFM_RAW}/{variant.filename}", folder / variant.filename, variant.checksum)
