"""Steps of the sentiment fine-tuning pipeline (one module per MLproject entry point) and their library code."""
