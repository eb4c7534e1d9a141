"""Data layer: schemas, datasets, splits, negative sampling and batches."""
