"""The logged MLflow model: raw review text in, `label` and `probability` out.

Takes what a user reaches for first: a list of strings, one string, a pandas Series, or a DataFrame with a
`review` column (`mlflow models serve`: `{"inputs": [...]}` or `{"dataframe_records": [{"review": ...}]}`).

Logged as a model from code (`mlflow.pyfunc.log_model(python_model=<this file>)`), so loading it needs only
MLflow, torch and transformers, not this repository: `pipeline/truncation.py` travels with it, so the served model
keeps the same tokens of a long review as training did. The fine-tuned network and its tokenizer travel as
the artifact `classifier` (a `save_pretrained` folder).
"""

import mlflow
import pandas as pd
import torch
from mlflow.models import set_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

try:  # pipeline/truncation.py, which the model carries (code_paths): MLflow puts it on sys.path when loading
    from truncation import encode
except ModuleNotFoundError:  # MLflow also runs this file while logging, from this repository
    from pipeline.truncation import encode


BATCH_SIZE = 64  # reviews per forward pass when serving


class SentimentModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        folder = context.artifacts["classifier"]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        # The tokenization the run trained with, all of it logged with the model: no defaults to drift from it.
        self.max_length = int(context.model_config["max_length"])
        self.truncation = context.model_config["truncation"]

    def predict(self, context, model_input, params=None):
        texts = review_texts(model_input)
        labels, probabilities = [], []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH_SIZE):
                ids = encode(self.tokenizer, texts[start : start + BATCH_SIZE], self.max_length, self.truncation)
                batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")  # as training's collator pads
                scores = self.model(**batch).logits.softmax(dim=-1)
                best = scores.max(dim=-1)
                labels += [self.model.config.id2label[int(index)] for index in best.indices]
                probabilities += best.values.tolist()
        return pd.DataFrame({"label": labels, "probability": probabilities})


def review_texts(model_input: pd.DataFrame) -> list[str]:
    """The reviews in what MLflow hands over. The signature's input is one unnamed string column, so MLflow passes
    a list, a Series or one string as a one-column frame, and a DataFrame as its first column (name it `review`)."""
    return model_input.iloc[:, 0].astype(str).tolist()


set_model(SentimentModel())
