"""Out-of-core columns: the block-shuffled epoch order, shards, streaming scores, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from recforge.config import TrainConfig
from recforge.data import mapped_columns
from recforge.data.criteo import criteo_schema, encode_criteo_file, generate_criteo, open_encoded
from recforge.data.mapped_columns import MappedColumns, split_columns
from recforge.data.preprocessing import EncodedColumns
from recforge.data.row_order import block_order
from recforge.data.schema import FeatureSpec, Schema
from recforge.data.tabular import TensorColumns
from recforge.errors import ConfigError, DataError
from recforge.evaluation.protocols import score_rows
from recforge.models import build_model
from recforge.models.deepfm import DeepFMConfig
from recforge.training import pointwise
from recforge.training.pointwise import PointwiseTrainer


def _mapped(folder, n, sequences=False):
    """A split of ``n`` rows saved as .npy and memory-mapped; every column encodes its row id."""
    ids = np.arange(n, dtype=np.int64)
    arrays = {
        "sparse": np.stack([ids, ids % 7], 1).astype(np.int32),
        "dense": np.stack([ids, -ids], 1).astype(np.float32),
        "labels": (ids % 2).astype(np.float32)[:, None],
    }
    if sequences:
        arrays["seq.hist"] = np.stack([ids, ids + 1, ids + 2], 1)
        arrays["len.hist"] = ids % 3
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        np.save(folder / f"{name}.npy", a)
    return EncodedColumns.from_arrays({name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in arrays})


def _ids(batch):
    """Row ids of a batch, after checking that every column of it belongs to the same rows."""
    ids = batch.sparse_features[:, 0].long()
    assert torch.equal(batch.dense_features[:, 0].long(), ids) and torch.equal(batch.sparse_features[:, 1].long(), ids % 7)
    assert torch.equal(batch.labels[:, 0].long(), ids % 2)
    if batch.sequence_features:
        assert torch.equal(batch.sequence_features["hist"][:, 1], ids + 1) and torch.equal(batch.sequence_lengths["hist"], ids % 3)
    return ids.numpy()


def _epoch(cols, batch_size, seed=0, shuffle=True, shard=(0, 1)):
    return [_ids(b) for b in cols.batches(batch_size, torch.Generator().manual_seed(seed), shuffle=shuffle, shard=shard)]


@pytest.mark.parametrize(
    "n, batch_size, block_rows, buffer_rows",
    [(1000, 64, 50, 200), (1001, 100, 64, 256), (257, 256, 10, 1000), (10, 4, 3, 3), (1, 8, 4, 8), (5000, 333, 1000, 1500)],
)
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_row_exactly_once_with_tensor_columns_batch_sizes(tmp_path, n, batch_size, block_rows, buffer_rows, shuffle):
    cols = _mapped(tmp_path, n, sequences=True)
    batches = _epoch(MappedColumns(cols, block_rows, buffer_rows), batch_size, shuffle=shuffle)
    expected_sizes = [len(b) for b in TensorColumns(cols).batches(batch_size, torch.Generator().manual_seed(0))]
    assert [len(b) for b in batches] == expected_sizes  # the last partial batch, a trailing one row joined
    order = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    if not shuffle:
        np.testing.assert_array_equal(order, np.arange(n))
    if n == 257:  # 256 + 1: the single trailing row joins the batch before
        assert [len(b) for b in batches] == [257]


@pytest.mark.parametrize("n, batch_size, world", [(10, 4, 3), (10, 2, 3), (1001, 64, 4), (5000, 333, 3), (3, 8, 5)])
def test_shards_tile_the_same_global_batches_for_any_world(tmp_path, n, batch_size, world):
    cols = MappedColumns(_mapped(tmp_path, n), block_rows=100, buffer_rows=400)
    whole = _epoch(cols, batch_size, seed=3)
    parts = [_epoch(cols, batch_size, seed=3, shard=(rank, world)) for rank in range(world)]
    assert all(len(p) == len(whole) for p in parts)  # every rank steps the same number of times
    for k, batch in enumerate(whole):
        expected = np.array_split(batch, world)
        for rank in range(world):
            np.testing.assert_array_equal(parts[rank][k], expected[rank])
    counts = [sum(len(b) for b in p) for p in parts]
    assert max(counts) - min(counts) <= len(whole) and sum(counts) == n
    if (n, batch_size, world) == (10, 4, 3):  # batches of 4, 4, 2 rows: ranks get 2+2+1, 1+1+1, 1+1+0
        assert counts == [5, 3, 2] and [len(b) for b in parts[2]] == [1, 1, 0]


def test_new_order_every_epoch_and_the_same_order_from_the_same_seed(tmp_path):
    cols = MappedColumns(_mapped(tmp_path, 3000), block_rows=100, buffer_rows=500)
    g = torch.Generator().manual_seed(11)
    first = np.concatenate([_ids(b) for b in cols.batches(128, g)])
    second = np.concatenate([_ids(b) for b in cols.batches(128, g)])
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(second), np.arange(3000))
    again = torch.Generator().manual_seed(11)
    np.testing.assert_array_equal(np.concatenate([_ids(b) for b in cols.batches(128, again)]), first)
    np.testing.assert_array_equal(np.concatenate(_epoch(cols, 128, seed=11)), first)
    assert not np.array_equal(np.concatenate(_epoch(cols, 128, seed=12)), first)


def test_buffers_hold_whole_permuted_blocks_read_contiguously(tmp_path, monkeypatch):
    n, block, buffer = 10_050, 100, 1000  # 101 blocks, the last of 50 rows; 10 blocks a buffer
    cols = MappedColumns(_mapped(tmp_path, n), block_rows=block, buffer_rows=buffer)
    reads = []
    real_read = mapped_columns._Column.read

    def spy(self, start, stop, out, handle):
        if out.dtype == np.int32 and out.ndim == 2:  # the sparse column
            reads.append((start, stop))
        return real_read(self, start, stop, out, handle)

    monkeypatch.setattr(mapped_columns._Column, "read", spy)
    order = np.concatenate(_epoch(cols, 64, seed=5))
    sizes = [b.size for b in block_order(n, torch.Generator().manual_seed(5), True, block, buffer)]
    assert len(sizes) == 11 and sum(sizes) == n  # ten buffers of 10 blocks (one holds the 50-row block), then one block
    position = 0
    for size in sizes:
        window = order[position : position + size]
        blocks, counts = np.unique(window // block, return_counts=True)
        assert len(blocks) == -(-size // block) <= 10  # a buffer is whole blocks, not scattered rows
        assert all(c == min(block, n - b * block) for b, c in zip(blocks, counts))
        assert not np.array_equal(window, np.sort(window))  # rows are shuffled within the buffer
        position += size
    assert sorted(reads) == sorted(set(reads)) and sum(b - a for a, b in reads) == n  # each row read once
    assert all(a % block == 0 and (b % block == 0 or b == n) for a, b in reads) and len(reads) <= 101
    first_blocks = order[:1000] // block
    assert set(first_blocks) != set(range(10))  # the blocks were permuted, not read in file order


@pytest.mark.parametrize("block_rows, buffer_rows", [(5000, 5000), (100, 5000), (700, 1 << 20)])
def test_one_buffer_of_the_whole_split_is_exactly_the_full_shuffle(tmp_path, block_rows, buffer_rows):
    cols = _mapped(tmp_path, 3001)
    mapped = np.concatenate(_epoch(MappedColumns(cols, block_rows, buffer_rows), 256, seed=9))
    full = np.concatenate([b.sparse_features[:, 0].numpy() for b in TensorColumns(cols).batches(256, torch.Generator().manual_seed(9))])
    np.testing.assert_array_equal(mapped, full)
    # and data-parallel parts are the in-memory class's parts, batch by batch
    for rank in range(3):
        parts = _epoch(MappedColumns(cols, block_rows, buffer_rows), 256, seed=9, shard=(rank, 3))
        tensor = TensorColumns(cols).batches(256, torch.Generator().manual_seed(9), shard=(rank, 3))
        assert [p.tolist() for p in parts] == [b.sparse_features[:, 0].tolist() for b in tensor]


def test_several_buffers_are_not_the_full_shuffle(tmp_path):
    cols = _mapped(tmp_path, 3001)
    mapped = np.concatenate(_epoch(MappedColumns(cols, 100, 1000), 256, seed=9))
    full = np.concatenate([b.sparse_features[:, 0].numpy() for b in TensorColumns(cols).batches(256, torch.Generator().manual_seed(9))])
    assert not np.array_equal(mapped, full)


def test_batch_reads_rows_and_scores_stream_equal_in_memory_scores(tmp_path):
    cols = _mapped(tmp_path, 1234, sequences=True)
    mapped = MappedColumns(cols, 100, 300)
    assert len(mapped) == 1234 and mapped.labels.shape == (1234, 1)
    np.testing.assert_array_equal(_ids(mapped.batch(1200, 1300)), np.arange(1200, 1234))  # end clipped as a slice
    assert len(mapped.batch(1234, 2000)) == 0
    schema = Schema(features=(FeatureSpec("id", vocab_size=1234), FeatureSpec("mod", vocab_size=7)), labels=("click",))
    model = build_model("deepfm", schema, DeepFMConfig(embedding_dim=4, hidden_units=(8,)))
    small = EncodedColumns(cols.sparse, np.zeros((1234, 0), np.float32), cols.labels)
    expected = score_rows(model, TensorColumns(small), ("click",), batch_size=500)
    np.testing.assert_allclose(score_rows(model, MappedColumns(small), ("click",), batch_size=500), expected, rtol=0, atol=1e-6)


def test_epoch_memory_is_bounded_by_the_buffer_not_the_file(tmp_path):
    n = 2_000_000
    cols = _mapped(tmp_path, n)
    file_bytes = sum(a.nbytes for a in cols.arrays().values())  # 2 M rows x 20 bytes = 40 MB
    mapped = MappedColumns(cols, block_rows=16_384, buffer_rows=65_536)
    mapped_before = _rss_file_bytes()
    tracemalloc.start()
    try:
        seen = 0
        for batch in mapped.batches(4096, torch.Generator().manual_seed(0)):
            seen += len(batch)
        scored = sum(len(mapped.batch(s, s + 16_384)) for s in range(0, n, 16_384))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == scored == n
    buffer_bytes = 65_536 * 20
    assert peak < 3 * buffer_bytes < file_bytes / 10, (peak, buffer_bytes, file_bytes)
    if mapped_before is not None:  # Linux: reads bypass the mapping, so its pages never join the RSS
        assert _rss_file_bytes() - mapped_before < file_bytes / 4


def _rss_file_bytes():
    """File-backed resident memory of this process (``RssFile`` in /proc/self/status), None off Linux."""
    try:
        with open("/proc/self/status") as f:
            line = next((x for x in f if x.startswith("RssFile:")), None)
    except OSError:
        return None
    return None if line is None else int(line.split()[1]) * 1024


def test_truncated_file_and_bad_arguments_fail_clearly(tmp_path):
    cols = _mapped(tmp_path, 1000)
    mapped = MappedColumns(cols, 100, 200)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        mapped.batches(0)
    with pytest.raises(ValueError, match="0 <= rank < world"):
        mapped.batches(8, shard=(3, 3))
    with pytest.raises(ValueError, match="block_rows and buffer_rows"):
        MappedColumns(cols, 0)
    with open(tmp_path / "dense.npy", "r+b") as f:
        f.truncate(f.seek(0, 2) - 8 * 500)
    with pytest.raises(DataError, match="ended .* early"):
        mapped.batch(900, 1000)
    with pytest.raises(ConfigError, match="train.shuffle must be one of auto, full, block"):
        TrainConfig(shuffle="window")
    with pytest.raises(ConfigError, match="train.shuffle"):
        split_columns(cols, "window")


def test_views_and_copy_on_write_maps_are_read_through_the_array(tmp_path):
    cols = _mapped(tmp_path, 500)
    changed = np.load(tmp_path / "dense.npy", mmap_mode="c")
    changed[7] = -1.0  # in this process only: the file still holds row 7
    view = EncodedColumns(cols.sparse[100:], cols.dense[100:], cols.labels[100:])
    np.testing.assert_array_equal(_ids(MappedColumns(view, 64, 128).batch(0, 10)), np.arange(100, 110))
    edited = MappedColumns(EncodedColumns(cols.sparse, changed, cols.labels), 64, 128)
    assert edited.batch(7, 8).dense_features.tolist() == [[-1.0, -1.0]]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared (encoded, memory-mapped) Criteo-format folder of 3000 generated rows."""
    folder = tmp_path_factory.mktemp("prepared")
    generate_criteo(folder / "gen.tsv", 3000, seed=2)
    encode_criteo_file(folder / "gen.tsv", folder / "out", criteo_schema(min_count=3), chunk_rows=3000, seed=1)
    return folder / "out"


def _fit(folder, shuffle):
    data = open_encoded(folder, mmap=True)
    torch.manual_seed(0)
    model = build_model("deepfm", data.schema, DeepFMConfig(embedding_dim=4, hidden_units=(16,), dropout=0.1))
    trainer = PointwiseTrainer(model, data, TrainConfig(epochs=2, batch_size=128, lr=0.003, shuffle=shuffle), seed=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: on a loaded 2-core box two threads run 10x slower, not faster
    try:
        return trainer, trainer.fit()
    finally:
        torch.set_num_threads(threads)


def test_trainer_block_shuffle_on_a_prepared_folder_matches_the_full_shuffle_with_one_block(prepared, monkeypatch):
    block, result = _fit(prepared, "block")
    assert all(isinstance(block.columns[s], MappedColumns) for s in ("train", "valid", "test"))
    summary = result.summary
    assert np.isfinite([summary["test/auc"], summary["test/log_loss"], summary["valid/auc"]]).all()
    assert summary["rows"]["train"] == len(open_encoded(prepared).train) > 2000
    # 2400 training rows are one block (65,536 rows), so the order is the full shuffle's, exactly.
    full, again = _fit(prepared, "full")
    assert all(isinstance(full.columns[s], TensorColumns) for s in ("train", "valid", "test"))
    assert again.summary["test/auc"] == summary["test/auc"] and again.summary["test/log_loss"] == summary["test/log_loss"]
    assert [r["train/loss"] for r in again.history] == [r["train/loss"] for r in result.history]
    # Blocks of 256 rows, 4 a buffer: 10 buffers, another order, still a model that learns.
    small = lambda columns, shuffle: split_columns(columns, shuffle, block_rows=256, buffer_rows=1024)  # noqa: E731
    monkeypatch.setattr(pointwise, "split_columns", small)
    blocked, third = _fit(prepared, "block")
    assert blocked.columns["train"].block_rows == 256
    assert third.history[0]["train/loss"] != result.history[0]["train/loss"]
    losses = [r["train/loss"] for r in third.history]
    assert losses[1] < losses[0] and np.isfinite(third.summary["test/log_loss"]) and third.summary["test/auc"] > 0.55


def test_auto_picks_block_for_large_memory_mapped_splits_only(prepared, monkeypatch):
    data = open_encoded(prepared, mmap=True)
    in_memory = open_encoded(prepared, mmap=False)
    assert isinstance(split_columns(data.train, "auto"), TensorColumns)  # 2400 rows: small
    monkeypatch.setattr(mapped_columns, "AUTO_BLOCK_MIN_ROWS", 1000)
    assert isinstance(split_columns(data.train, "auto"), MappedColumns)
    assert isinstance(split_columns(data.valid, "auto"), TensorColumns)  # 300 rows
    assert isinstance(split_columns(in_memory.train, "auto"), TensorColumns)
    assert isinstance(split_columns(in_memory.train, "block"), MappedColumns)  # block order also over in-memory arrays
