"""The stages, in order: corpus -> tokenize -> unigrams -> cipher -> cooccurrences -> vectors.
Each is a transformation of DataFrames (or a NumPy step on the driver for the cipher)."""
