"""UCI Adult (Census Income 1994): the public dataset of the Wide & Deep tutorial.

Task: income > 50K (binary). Official split: ``adult.data`` (32,561 rows) for training and
``adult.test`` (16,281 rows) for testing; the validation set is a seeded stratified 1/9 of the
training rows. The default schema follows the TensorFlow Wide & Deep tutorial that accompanied
Cheng et al. (2016): categorical base columns, age buckets at 18, 25, ..., 65, the crossed columns
education x occupation, age_group x education x occupation and native_country x occupation,
and the continuous columns age, education_num, capital_gain, capital_loss, hours_per_week.

Citation: Kohavi, "Scaling Up the Accuracy of Naive-Bayes Classifiers: a Decision-Tree Hybrid",
KDD 1996. Licence: CC BY 4.0 (UCI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.datasets.registry import register_dataset
from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.files import DataFile, FileVariant, download, resolve_data_dir, sha256
from recforge.data.readers import cast_column, read_table
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import DataError

UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult"
COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "gender", "capital_gain", "capital_loss", "hours_per_week",
    "native_country", "income_bracket",
)
NUMERIC = ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week")
AGE_BOUNDARIES = (18, 25, 30, 35, 40, 45, 50, 55, 60, 65)  # the tutorial's age_buckets


def read_adult(path: Path, skip_rows: int = 0) -> pa.Table:
    """Parse one Adult file (``, ``-separated, ``?`` = missing, trailing ``.`` on test labels).

    Returns:
        A table with the 15 raw columns (numbers as int64, categories as trimmed strings), an
        ``age_group`` column (the tutorial's age buckets) and the label ``income`` (1.0 if > 50K).

    Raises:
        DataError: naming the file, for a wrong column count or an unknown label.
    """
    table = read_table(
        path,
        "15 comma-separated Adult columns",
        read_options=pacsv.ReadOptions(column_names=list(COLUMNS), skip_rows=skip_rows),
        parse_options=pacsv.ParseOptions(delimiter=","),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS}, strings_can_be_null=False),
        header=skip_rows > 0,
    )
    columns = {}
    for name in COLUMNS:
        col = pc.utf8_trim_whitespace(table.column(name))
        col = pc.if_else(pc.equal(col, "?"), pa.scalar(None, pa.string()), col)
        if name in NUMERIC:
            col = cast_column(col, pa.int64(), path, name, first_line=1 + skip_rows)
        columns[name] = col
    label = pc.utf8_rtrim(columns["income_bracket"], characters=".")
    known = pc.is_in(label, value_set=pa.array(["<=50K", ">50K"]))
    if not pc.all(known).as_py():
        row = int(np.flatnonzero(~known.to_numpy(zero_copy_only=False))[0])
        raise DataError(f"income label must be <=50K or >50K, row {row + 1 + skip_rows} has {label[row]}", path, row + 1 + skip_rows)
    columns["income"] = pc.cast(pc.equal(label, ">50K"), pa.float32())
    age = columns["age"].to_numpy(zero_copy_only=False)
    columns["age_group"] = pa.array(np.searchsorted(np.asarray(AGE_BOUNDARIES), age, side="right"))
    return pa.table(columns)


@register_dataset
class Adult(TabularSource):
    """UCI Adult, income > 50K; official train/test files, Wide & Deep tutorial features."""

    name = "uci-adult"
    folder = "uci-adult"
    description = "UCI Adult census income (48,842 rows), Wide & Deep tutorial features and crosses"
    citation = "Kohavi, KDD 1996; features as in the Wide & Deep tutorial (Cheng et al. 2016)"
    license = "CC BY 4.0 (UCI)"
    fractions = (0.8, 0.1, 0.1)
    label_sources = {"income": ("income_bracket",)}  # income = income_bracket is ">50K" (read_adult)
    files = (
        DataFile(
            "training rows",
            (
                FileVariant("adult.data", sha256("5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d")),
                FileVariant("adult.data.gz", sha256("c7a2b4716a97f930123e0baf879188d701e798172631a654fc703d4b082907f3")),
            ),
        ),
        DataFile(
            "test rows",
            (
                FileVariant("adult.test", sha256("a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05")),
                FileVariant("adult.test.gz", sha256("8a2c1bffa6e7ce5abfa43881ae5e87c4311ebc2b3cd526c9c40a43f19f06f799")),
            ),
        ),
    )

    def default_schema(self) -> Schema:
        categorical = ["workclass", "education", "marital_status", "occupation", "relationship", "race", "gender", "native_country", "age_group"]
        features = [FeatureSpec(c) for c in categorical]
        features += [
            FeatureSpec("education_x_occupation", cross=("education", "occupation")),
            FeatureSpec("age_x_education_x_occupation", cross=("age_group", "education", "occupation")),
            FeatureSpec("native_country_x_occupation", cross=("native_country", "occupation")),
        ]
        features += [FeatureSpec(c, "dense", transform="standardize") for c in ("age", "education_num", "hours_per_week")]
        features += [FeatureSpec(c, "dense", transform="log1p_standardize") for c in ("capital_gain", "capital_loss")]
        return Schema(features=tuple(features), labels=("income",))

    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        return RawSplits(
            train=read_adult(paths["training rows"]),
            test=read_adult(paths["test rows"], skip_rows=1),
            info="official adult.data / adult.test files",
        )

    def download(self, data_dir: str | Path | None = None) -> None:
        folder = resolve_data_dir(data_dir) / self.folder
        for data_file, member in zip(self.files, ("adult.data", "adult.test")):
            if data_file.locate(folder) is None:
                variant = data_file.variants[0]
                download(f"{UCI}/{member}", folder / variant.filename, variant.checksum)
