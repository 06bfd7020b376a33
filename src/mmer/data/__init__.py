"""Data layer: the batch type, in-memory splits, readers (one module per on-disk format) and transforms."""
