"""The logged model: `sentiment_model.py`, `inference.py` and `truncation.py` travel with it and import nothing of
this project (tests/test_architecture.py); `model_logging` logs them."""
