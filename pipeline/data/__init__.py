"""The reviews: their schema, the archive's download and checks, and the fine-tuning step's input data."""
