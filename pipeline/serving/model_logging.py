"""Logging the served model (the fine-tuned network, alone or blended with the baseline) as an MLflow pyfunc
model that predicts from raw review text."""

import os
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
import sklearn
import torch
import transformers
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from pipeline.contract import MODEL_ARTIFACT
from pipeline.errors import PipelineError

HERE = Path(__file__).parent
# One unnamed string column: MLflow then accepts a list of strings, a Series, one string or a one-column DataFrame
# (a named `review` column would refuse all but the DataFrame); `sentiment_model.review_texts` reads them.
INPUTS = Schema([ColSpec("string")])
OUTPUTS = [ColSpec("string", "label"), ColSpec("double", "probability")]
PART_OUTPUTS = [ColSpec("double", "transformer_positive_probability"), ColSpec("double", "baseline_positive_probability")]
INPUT_EXAMPLE = ["A moving story with wonderful acting.", "Dull, predictable and far too long."]
# MLflow 3.18: `false` refuses to load PyFunc models that carry code (models from code, `code_paths`), as this one does.
CODE_EXECUTION_VARIABLE = "MLFLOW_ALLOW_MODEL_CODE_EXECUTION"


def refuse_without_code_execution(action: str) -> None:
    """The served model is a model from code (`sentiment_model.py`, with `inference.py` and `truncation.py` as
    `code_paths`): where MLflow is told to run no model code, say so in one line before `action`, not in MLflow's words
    after the GPU time (the step itself loads the model it logs, to check its input example)."""
    if os.environ.get(CODE_EXECUTION_VARIABLE, "true").strip().lower() in ("false", "0"):
        raise PipelineError(f"{action}: this project's model carries code (sentiment_model.py, inference.py, truncation.py), "
                            f"which {CODE_EXECUTION_VARIABLE}=false forbids MLflow to load; unset it, or set it to true where "
                            "you trust the model's source (your own runs or registry)")


def log_sentiment_model(network, tokenizer, tokenization: dict, precisions: dict | None = None, baseline=None,
                        blend_weight: float | None = None):
    """Save `network` and `tokenizer` with `save_pretrained` and log them behind `pipeline/serving/sentiment_model.py`,
    with the modules it scores through beside it and the run's whole tokenization config
    (`FineTuning.tokenization`), so serving keeps the tokens training kept. `precisions`: what a CPU may serve it in
    (`pipeline.evaluation.precision_choice.PrecisionCheck.model_config`; without it, fp32). With `baseline` (a fitted
    scikit-learn pipeline) and `blend_weight`, the model serves their blend."""
    blended = baseline is not None
    with tempfile.TemporaryDirectory(prefix="classifier-") as scratch:
        folder = Path(scratch) / "classifier"
        network.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        artifacts = {"classifier": str(folder)}
        # Inferring requirements would import every package in sight (and fail on torchvision): name them.
        requirements = [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
                        f"transformers=={transformers.__version__}", f"pandas=={pd.__version__}"]
        if blended:  # scikit-learn's safe format, written and read by MLflow's sklearn flavour (skops comes with MLflow)
            sklearn_requirements = [f"scikit-learn=={sklearn.__version__}", f"skops=={version('skops')}"]
            artifacts["baseline"] = str(Path(scratch) / "baseline")
            mlflow.sklearn.save_model(baseline, artifacts["baseline"], serialization_format="skops",
                                      pip_requirements=sklearn_requirements)
            requirements += sklearn_requirements
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(HERE / "sentiment_model.py"),
            artifacts=artifacts,
            # MLflow also logs the config as the run's params: `blend_weight` only where it is the step's param too;
            # `serve_precision` is the step's, the safe list and `precision_valid_{accuracy,changed}/<precision>` are new names.
            model_config=tokenization | (precisions or {}) | ({"blend_weight": blend_weight} if blended else {}),
            code_paths=[str(HERE / "inference.py"), str(HERE / "truncation.py")],
            signature=ModelSignature(inputs=INPUTS, outputs=Schema(OUTPUTS + (PART_OUTPUTS if blended else []))),
            input_example=INPUT_EXAMPLE,
            pip_requirements=requirements,
        )
