"""The logged MLflow model: raw review text in, `label` and `probability` out.

Takes what a user reaches for first: a list of strings, one string, a pandas Series, or a DataFrame with a
`review` column (`mlflow models serve`: `{"inputs": [...]}` or `{"dataframe_records": [{"review": ...}]}`).

Logged as a model from code (`mlflow.pyfunc.log_model(python_model=<this file>)`), so loading it needs only
MLflow, torch, transformers (and scikit-learn for a blend), not this repository: `pipeline/serving/inference.py` and
`pipeline/serving/truncation.py` travel with it, so the served model keeps the same tokens of a long review as training
did. The fine-tuned network and its tokenizer travel as the artifact `classifier` (a `save_pretrained` folder).
A blend (`pipeline.evaluation.serving_choice`) also carries the fitted TF-IDF baseline as the artifact `baseline` (an MLflow
sklearn model in skops format) and its weight in the model config, and adds each part's positive probability.
On a CPU the transformer serves in the precision its config asks (`serve_precision`); `auto`: the first of bf16, int8, fp32
(`inference.auto_order`: int8 before bf16 on a CPU without AMX) among those the logging step found to change at most 0.5 % of fp32's validation labels
(`safe_precisions`) that this CPU runs at speed. A CUDA GPU serves fp32, or bf16 where the card has bf16 tensor cores
and bf16 is asked or recorded safe (a model trained there is checked in bf16 too). A model logged before these keys
existed serves fp32.
"""

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import torch
from mlflow.models import set_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

try:  # pipeline/serving/inference.py, which the model carries (code_paths): MLflow puts it on sys.path when loading
    from inference import blend, class_probabilities, in_precision, labels_of, native_bf16, native_cpu_bf16, served_precision
except ModuleNotFoundError:  # MLflow also runs this file while logging, from this repository
    from pipeline.serving.inference import (blend, class_probabilities, in_precision, labels_of, native_bf16, native_cpu_bf16,
                                            served_precision)


class SentimentModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context, cpu_bf16: bool | None = None, cpu_amx: bool | None = None):
        """`cpu_bf16`, `cpu_amx`: whether this CPU has native bf16 and AMX (default: detected), given by tests that stand
        in for another CPU."""
        folder = context.artifacts["classifier"]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        asked, safe = context.model_config.get("serve_precision", "fp32"), context.model_config.get("safe_precisions", ["fp32"])
        if torch.cuda.is_available():  # served where a GPU is: scoring moves each batch to the network's device
            self.precision = served_precision(asked, safe, native_bf16(torch.cuda.get_device_capability()), "cuda")
            self.model = in_precision(self.model.cuda(), self.precision)
        else:
            self.precision = served_precision(asked, safe, native_cpu_bf16() if cpu_bf16 is None else cpu_bf16, amx=cpu_amx)
            self.model = in_precision(self.model, self.precision)
        # The tokenization the run trained with, all of it logged with the model: no defaults to drift from it.
        self.max_length = int(context.model_config["max_length"])
        self.truncation = context.model_config["truncation"]
        self.weight = context.model_config.get("blend_weight")  # absent: the transformer alone
        self.baseline = mlflow.sklearn.load_model(context.artifacts["baseline"]) if self.weight is not None else None

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        texts = review_texts(model_input)
        labels = [self.model.config.id2label[index] for index in range(self.model.config.num_labels)]
        transformer = class_probabilities(self.tokenizer, self.model, texts, self.max_length, self.truncation)
        if self.baseline is None:
            best = transformer.argmax(axis=1)
            return pd.DataFrame({"label": [labels[index] for index in best], "probability": transformer.max(axis=1)})
        positive_column = list(self.baseline.classes_).index(labels[1])
        parts = {"transformer_positive_probability": transformer[:, 1],
                 "baseline_positive_probability": self.baseline.predict_proba(texts)[:, positive_column]}
        positive = blend(*parts.values(), self.weight)
        return pd.DataFrame({"label": labels_of(positive, labels),
                             "probability": np.maximum(positive, 1 - positive)} | parts)


def review_texts(model_input: pd.DataFrame) -> list[str]:
    """The reviews in what MLflow hands over. The signature's input is one unnamed string column, so MLflow passes
    a list, a Series or one string as a one-column frame, and a DataFrame as its first column (name it `review`)."""
    return [str(text) for text in model_input.to_numpy()[:, 0]]


set_model(SentimentModel())
