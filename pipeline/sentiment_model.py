"""The logged MLflow model: raw review text in, `label` and `probability` out.

Takes what a user reaches for first: a list of strings, one string, a pandas Series, or a DataFrame with a
`review` column (`mlflow models serve`: `{"inputs": [...]}` or `{"dataframe_records": [{"review": ...}]}`).

Logged as a model from code (`mlflow.pyfunc.log_model(python_model=<this file>)`), so loading it needs only
MLflow, torch and transformers, not this repository. The fine-tuned network and its tokenizer travel as
the artifact `classifier` (a `save_pretrained` folder).
"""

import mlflow
import pandas as pd
import torch
from mlflow.models import set_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer


class SentimentModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        folder = context.artifacts["classifier"]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.max_length = int(context.model_config.get("max_length", 256))
        self.batch_size = int(context.model_config.get("batch_size", 64))

    def predict(self, context, model_input, params=None):
        texts = review_texts(model_input)
        labels, probabilities = [], []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start : start + self.batch_size], truncation=True,
                                       max_length=self.max_length, padding=True, return_tensors="pt")
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
