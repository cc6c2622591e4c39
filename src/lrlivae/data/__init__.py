"""Data sources and the aligned-array dataset."""
