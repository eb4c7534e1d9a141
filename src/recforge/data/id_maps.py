"""Raw-id vocabularies (raw id <-> internal id 0..n-1) and the run artefacts that keep them.

Internal ids are dense, 0..n-1, in ascending raw-id order: numeric order for integer ids (any
int64, also beyond 2**31), byte-wise lexicographic order for strings. That is the order the
registered raw GroupLens datasets use (``np.unique``), so an own log of MovieLens ratings gets
the same internal ids as ``movielens-100k``, and the order never depends on the rows' order.

Run artefacts of implicit-feedback runs (NCF, MF, ItemPop; written by
:func:`recforge.training.experiment.run_experiment`, read by ``recforge recommend``):

* ``interactions.npz``: ``train_users``, ``train_items`` (int64 [P] internal ids of the pairs the
  model trained on), ``num_users``, ``num_items`` (int64 scalars).
* ``user_ids.parquet`` / ``item_ids.parquet``: one column ``id`` holding the raw id; row index =
  internal id.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recforge.data.files import atomic_write
from recforge.errors import DataError

INTERACTIONS_FILE = "interactions.npz"
USER_IDS_FILE = "user_ids.parquet"
ITEM_IDS_FILE = "item_ids.parquet"


def encode_ids(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Map raw ids to internal ids 0..n-1 in ascending raw-id order.

    Args:
        column: [P] raw ids without nulls (integers or strings).

    Returns:
        (internal int64 [P], vocabulary [n]: the raw id of each internal id, ascending).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    dictionary = encoded.dictionary
    order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    internal = rank[encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)]
    return internal, dictionary.take(pa.array(order))


def write_run_artefacts(
    run_dir: str | Path,
    train_users: np.ndarray,
    train_items: np.ndarray,
    num_users: int,
    num_items: int,
    user_ids: pa.Array,
    item_ids: pa.Array,
) -> None:
    """Write ``interactions.npz``, ``user_ids.parquet`` and ``item_ids.parquet`` atomically (module doc)."""
    run = Path(run_dir)
    arrays = {
        "train_users": np.asarray(train_users, np.int64),
        "train_items": np.asarray(train_items, np.int64),
        "num_users": np.int64(num_users),
        "num_items": np.int64(num_items),
    }
    atomic_write(run / INTERACTIONS_FILE, lambda f: np.savez(f, **arrays))
    for name, ids in ((USER_IDS_FILE, user_ids), (ITEM_IDS_FILE, item_ids)):
        buffer = io.BytesIO()
        pq.write_table(pa.table({"id": ids}), buffer)
        atomic_write(run / name, lambda f, b=buffer: f.write(b.getvalue()))


def load_train_interactions(run_dir: str | Path) -> dict[str, np.ndarray | int]:
    """The run's ``interactions.npz``: ``train_users``, ``train_items`` (int64), ``num_users``, ``num_items`` (int).

    Raises:
        DataError: naming the file if it is missing, unreadable or lacks an array.
    """
    path = Path(run_dir) / INTERACTIONS_FILE
    if not path.is_file():
        raise DataError("missing (runs of implicit-feedback models write it; re-train the run)", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {
                "train_users": np.asarray(npz["train_users"], np.int64),
                "train_items": np.asarray(npz["train_items"], np.int64),
                "num_users": int(npz["num_users"]),
                "num_items": int(npz["num_items"]),
            }
    except KeyError as exc:
        raise DataError(f"missing array {exc}; expected train_users, train_items, num_users, num_items", path) from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"not a readable .npz file ({exc})", path) from None


def load_id_maps(run_dir: str | Path) -> tuple[pa.Array, pa.Array]:
    """The run's raw-id maps: (user ids, item ids), raw id at the index of each internal id.

    Raises:
        DataError: naming the file if it is missing, unreadable or has no ``id`` column.
    """
    out = []
    for name in (USER_IDS_FILE, ITEM_IDS_FILE):
        path = Path(run_dir) / name
        if not path.is_file():
            raise DataError("missing raw-id map (runs of implicit-feedback models write it; re-train the run)", path)
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"not a readable Parquet file ({exc})", path) from None
        if "id" not in table.column_names:
            raise DataError(f"expected a column 'id', found {table.column_names}", path)
        out.append(table.column("id").combine_chunks())
    return out[0], out[1]


__all__ = [
    "INTERACTIONS_FILE", "ITEM_IDS_FILE", "USER_IDS_FILE",
    "encode_ids", "load_id_maps", "load_train_interactions", "write_run_artefacts",
]
