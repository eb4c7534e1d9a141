"""UCI Census-Income (KDD), 1994/1995 US Current Population Survey: the MMoE census benchmark.

Only the 99,762-row test file ``census-income.test`` is used (the 199,523-row training file is not
in the shared data). Split: a seeded stratified random 8:1:1 of those rows, so results are NOT
comparable with published numbers, which train on ``census-income.data``.

Columns: the 41 attributes of ``census-income.names`` in file order, then the income label. Column
25, ``instance_weight`` (the CPS sampling weight), is kept in the raw table but is not a feature.
Missing values (``?``) become nulls (id 0). Features: the 33 categorical columns (code columns
such as ``detailed_industry_recode`` and ``year`` included) as sparse fields; the 7 numeric
columns as dense: ``age``, ``num_persons_worked_for_employer`` and ``weeks_worked_in_year``
standardised, the heavy-tailed money columns ``wage_per_hour``, ``capital_gains``,
``capital_losses`` and ``dividends_from_stocks`` with ``log1p_standardize``.

Labels (float 0/1 columns of the raw table):

* ``income``: income > 50K (``50000+.``), 6.2% positive; the default schema's only label.
* ``never_married``: ``marital_stat == "Never married"`` (43.2%): task 2 of both MMoE groups.
* ``education_college``: education is at least college (33.5%), task 1 of the second MMoE group.
  Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
  Mixture-of-Experts", KDD 2018, Sec. 6.2 (census-income): group 1 = income > $50K and marital
  status "never married"; group 2 = "education level is at least college" and "never married".
  The paper does not list which of the 17 education values count as "college"; here it is every
  value from ``Some college but no degree`` up (:data:`COLLEGE`: some college, both associate
  degrees, bachelors, masters, professional school, doctorate). That is an assumption: counting
  degrees only (without "Some college") would give 19.5% positives.

A label's source column must not be a feature of a model predicting it: :meth:`CensusIncome.task_schema`
drops ``marital_stat`` for ``never_married`` and ``education`` for ``education_college``
(``detailed_household_and_family_stat`` partly encodes marital status too and is kept, as in the
public MMoE implementations).

Citation: UCI Machine Learning Repository, Census-Income (KDD) (Lane & Kohavi, 2000).
Licence: CC BY 4.0 (UCI).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recforge.data.datasets.registry import register_dataset
from recforge.data.datasets.tabular import RawSplits, TabularSource
from recforge.data.files import DataFile, FileVariant, atomic_write, download, resolve_data_dir, sha256
from recforge.data.readers import cast_column, read_table
from recforge.data.schema import FeatureSpec, Schema
from recforge.errors import DataError

UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld"
#: The 41 attributes of census-income.names in file order, then the raw income label.
COLUMNS = (
    "age", "class_of_worker", "detailed_industry_recode", "detailed_occupation_recode", "education",
    "wage_per_hour", "enroll_in_edu_inst_last_wk", "marital_stat", "major_industry_code",
    "major_occupation_code", "race", "hispanic_origin", "sex", "member_of_a_labor_union",
    "reason_for_unemployment", "full_or_part_time_employment_stat", "capital_gains", "capital_losses",
    "dividends_from_stocks", "tax_filer_stat", "region_of_previous_residence",
    "state_of_previous_residence", "detailed_household_and_family_stat",
    "detailed_household_summary_in_household", "instance_weight", "migration_code_change_in_msa",
    "migration_code_change_in_reg", "migration_code_move_within_reg", "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer", "family_members_under_18",
    "country_of_birth_father", "country_of_birth_mother", "country_of_birth_self", "citizenship",
    "own_business_or_self_employed", "fill_inc_questionnaire_for_veterans_admin", "veterans_benefits",
    "weeks_worked_in_year", "year", "income_bracket",
)
STANDARDIZED = ("age", "num_persons_worked_for_employer", "weeks_worked_in_year")
LOG_STANDARDIZED = ("wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks")
NUMERIC = STANDARDIZED + LOG_STANDARDIZED
CATEGORICAL = tuple(c for c in COLUMNS[:-1] if c not in NUMERIC and c != "instance_weight")
#: Education values counted as "at least college" for the MMoE group-2 task (an assumption, see above).
COLLEGE = (
    "Some college but no degree", "Associates degree-occup /vocational", "Associates degree-academic program",
    "Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)", "Prof school degree (MD DDS DVM LLB JD)",
    "Doctorate degree(PhD EdD)",
)
LABELS = ("income", "never_married", "education_college")
#: Raw columns a label is derived from (never a feature of a model predicting that label).
LABEL_SOURCES = {"income": ("income_bracket",), "never_married": ("marital_stat",), "education_college": ("education",)}


def read_census(path: Path) -> pa.Table:
    """Parse ``census-income.test`` / ``.data`` (42 ``, ``-separated columns, no header, ``?`` = missing).

    Returns:
        The 41 attributes (numeric ones as float64, the rest as trimmed strings), ``income_bracket``
        and the float32 labels ``income``, ``never_married`` and ``education_college``.

    Raises:
        DataError: naming the file (and line) for a wrong column count, a non-numeric value in a
            numeric column or an unknown income label.
    """
    table = read_table(
        path,
        "42 comma-separated Census-Income columns",
        read_options=pacsv.ReadOptions(column_names=list(COLUMNS)),
        parse_options=pacsv.ParseOptions(delimiter=",", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS}, strings_can_be_null=False),
    )
    columns = {}
    for name in COLUMNS:
        col = pc.utf8_trim_whitespace(table.column(name))
        col = pc.if_else(pc.equal(col, "?"), pa.scalar(None, pa.string()), col)
        if name in NUMERIC or name == "instance_weight":
            col = cast_column(col, pa.float64(), path, name)
        columns[name] = col
    label = columns["income_bracket"]
    known = pc.is_in(label, value_set=pa.array(["- 50000.", "50000+."]))
    if not pc.all(known).as_py():
        row = int(np.flatnonzero(~known.to_numpy(zero_copy_only=False))[0])
        raise DataError(f"income label must be '- 50000.' or '50000+.', found {label[row].as_py()!r}", path, row + 1)
    columns["income"] = pc.cast(pc.equal(label, "50000+."), pa.float32())
    marital = columns["marital_stat"]
    never = pc.cast(pc.equal(marital, "Never married"), pa.float32())
    columns["never_married"] = pc.if_else(pc.is_null(marital), pa.scalar(None, pa.float32()), never)
    education = columns["education"]
    college = pc.cast(pc.is_in(education, value_set=pa.array(COLLEGE)), pa.float32())
    columns["education_college"] = pc.if_else(pc.is_null(education), pa.scalar(None, pa.float32()), college)
    return pa.table(columns)


@register_dataset
class CensusIncome(TabularSource):
    """UCI Census-Income (KDD) test file, income > 50K, seeded stratified 8:1:1 split."""

    name = "census-income"
    folder = "census-income-kdd"
    description = "UCI Census-Income KDD (99,762 test-file rows, random 8:1:1), income > 50K; MMoE extra labels"
    citation = "UCI Census-Income (KDD) (Lane & Kohavi, 2000); tasks as in MMoE (Ma et al., KDD 2018)"
    license = "CC BY 4.0 (UCI)"
    fractions = (0.8, 0.1, 0.1)
    label_sources = LABEL_SOURCES
    files = (
        DataFile(
            "census rows",
            (
                FileVariant("census-income.test", sha256("98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c")),
                FileVariant("census-income.test.gz", sha256("5ac4cacd3ca9f1ecb10de1a0a41e4ac68fdc419e3fec190f5c0c6cc03b2ea659")),
            ),
        ),
    )

    def default_schema(self) -> Schema:
        return self.task_schema(("income",))

    def task_schema(self, labels: tuple[str, ...]) -> Schema:
        """The default features minus the source columns of ``labels`` (for multi-task runs).

        Args:
            labels: a subset of ``income``, ``never_married``, ``education_college``, in task order.

        Raises:
            ValueError: for an unknown label name.
        """
        unknown = [label for label in labels if label not in LABEL_SOURCES]
        if unknown:
            raise ValueError(f"unknown census label(s) {unknown}; valid: {list(LABELS)}")
        dropped = {c for label in labels for c in LABEL_SOURCES[label]}
        features = [FeatureSpec(c) for c in CATEGORICAL if c not in dropped]
        features += [FeatureSpec(c, "dense", transform="standardize") for c in STANDARDIZED]
        features += [FeatureSpec(c, "dense", transform="log1p_standardize") for c in LOG_STANDARDIZED]
        return Schema(features=tuple(features), labels=tuple(labels))

    def read(self, paths: dict[str, Path], seed: int) -> RawSplits:
        return RawSplits(
            train=read_census(paths["census rows"]),
            info="UCI census-income.test only (99,762 rows; the training file is not used): random split, "
            "not comparable with published numbers",
        )

    def download(self, data_dir: str | Path | None = None) -> None:
        """Fetch ``census-income.test.gz`` from UCI and store it decompressed, verified by the
        sha256 of the decompressed file (a re-compressed ``.gz`` may differ byte-wise)."""
        folder = resolve_data_dir(data_dir) / self.folder
        data_file = self.files[0]
        if data_file.locate(folder) is not None:
            return
        variant = data_file.variants[0]
        packed = folder / f".{variant.filename}.gz.download"
        try:
            download(f"{UCI}/census-income.test.gz", packed)
            try:
                with gzip.open(packed, "rb") as src:
                    atomic_write(folder / variant.filename, lambda f: shutil.copyfileobj(src, f))
            except (OSError, EOFError) as exc:
                raise DataError(f"downloaded file is not a valid gzip: {exc}", packed) from None
        finally:
            packed.unlink(missing_ok=True)
        target = folder / variant.filename
        if variant.checksum.compute(target) != variant.checksum.digest:
            target.unlink(missing_ok=True)
            raise DataError(f"decompressed download does not match its sha256 {variant.checksum.digest}", target)
