"""Logging the fine-tuned network as an MLflow pyfunc model that predicts from raw review text."""

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import torch
import transformers
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from pipeline.contract import MODEL_ARTIFACT

# One unnamed string column: MLflow then accepts a list of strings, a Series, one string or a one-column DataFrame
# (a named `review` column would refuse all but the DataFrame); `sentiment_model.review_texts` reads them.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string")]),
    outputs=Schema([ColSpec("string", "label"), ColSpec("double", "probability")]),
)
INPUT_EXAMPLE = ["A moving story with wonderful acting.", "Dull, predictable and far too long."]


def log_sentiment_model(network, tokenizer, tokenization: dict):
    """Save `network` and `tokenizer` with `save_pretrained` and log them behind `pipeline/sentiment_model.py`,
    with `pipeline/truncation.py` beside it and the run's whole tokenization config (`FineTuning.tokenization`),
    so serving keeps the tokens training kept."""
    with tempfile.TemporaryDirectory(prefix="classifier-") as scratch:
        folder = Path(scratch) / "classifier"
        network.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(Path(__file__).with_name("sentiment_model.py")),
            artifacts={"classifier": str(folder)},
            model_config=tokenization,
            code_paths=[str(Path(__file__).with_name("truncation.py"))],
            signature=SIGNATURE,
            input_example=INPUT_EXAMPLE,
            # Inferring requirements would import every package in sight (and fail on torchvision): name them.
            pip_requirements=[
                f"mlflow=={mlflow.__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
                f"transformers=={transformers.__version__}",
                f"pandas=={pd.__version__}",
            ],
        )
