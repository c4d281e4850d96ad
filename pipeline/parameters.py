"""Each step's parameters, declared once: name, type, default, range, choices and help.

One frozen dataclass per step (as `HfArgumentParser` dataclasses hold them). From it come the step's command
line (`command_line`), `main`'s check of each `-P` value (`check_value`), and MLproject's entry points
(`tools/mlproject.py`; tests/test_parameters.py holds MLproject to them). The steps receive the dataclass,
not a dict. This module imports nothing heavy, so `main` checks values without loading torch.

Adding a parameter is one field here; `make mlproject` (tools/mlproject.py) then writes its MLproject lines.
"""

import dataclasses
from dataclasses import dataclass, field

import click

from pipeline.contract import BATCH, DOWNLOAD, FINE_TUNING, LATEST, OPTIONAL_STEPS, REGISTER, STEPS, TEST_METRICS, serving_uri
from pipeline.errors import PipelineError
from pipeline.serving.truncation import TRUNCATIONS

IMDB_URL = "https://pl-flash-data.s3.amazonaws.com/imdb.zip"
STRATEGIES = ("no_freeze", "freeze", "freeze_unfreeze")
SERVES = ("auto", "transformer", "blend")  # pipeline.evaluation.serving_choice
SERVE_PRECISIONS = ("auto", "fp32", "int8", "bf16")  # pipeline.serving.inference.SERVE_PRECISIONS, and auto
ACCELERATORS = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")
SWITCHES = ("auto", "true", "false")
GATE_METRICS = TEST_METRICS  # the gate judges the served model's test metric of that name


def parameter(default, help: str = "", *, choices: tuple[str, ...] | None = None, min: float | None = None,
              max: float | None = None, min_open: bool = False, tokens: bool = False, identity: bool = True):
    """A step parameter. `tokens`: it shapes the tokens of a review (the token cache key and the served model's
    tokenization come from exactly these fields). `identity=False`: it says where files go, where training runs
    or how fast, or names data compared by content; two runs that differ only in such fields are the same run,
    for reuse and resume alike (`pipeline.tracking.reuse.run_identity`)."""
    return field(default=default, metadata={"help": help, "choices": choices, "min": min, "max": max,
                                            "min_open": min_open, "tokens": tokens, "identity": identity})


def parse_steps(text: str) -> list[str]:
    """A comma list of step names, also the OPTIONAL_STEPS, where `all` stands for STEPS (`all,batch_inference`),
    returned in pipeline order."""
    asked = [name for step in text.split(",") if step.strip() for name in (STEPS if step.strip() == "all" else [step.strip()])]
    known = STEPS + OPTIONAL_STEPS
    unknown = [step for step in asked if step not in known]
    if unknown or not asked:
        raise PipelineError(f"pipeline_steps={text!r}: unknown step(s) {unknown or [text]}; "
                            f"valid: all, or a comma list of {', '.join(known)}")
    return [step for step in known if step in asked]


@dataclass(frozen=True)
class MainParameters:
    """`main`'s own parameters; every other `-P` goes to the steps that take it."""

    pipeline_steps: str = parameter("all", "'all' (download_data, fine_tuning_model, register_model) or a comma list of steps, "
                                           "also batch_inference (e.g. all,batch_inference).")
    reuse_completed: bool = parameter(True, "Skip a step whose finished run had the same parameters, commit and input data.")


@dataclass(frozen=True)
class DownloadData:
    download_url: str = parameter(IMDB_URL, "http(s):// or file:// URL, or a local path, of the zip.")
    local_folder: str = parameter("./data", "Where the CSVs are unpacked (into <folder>/imdb).")
    sha256: str = parameter("none", "Expected SHA-256 of the zip; 'none' skips the check.")


@dataclass(frozen=True)
class FineTuning:
    foundation_model: str = parameter("prajjwal1/bert-tiny", "Hub id or local save_pretrained folder.", tokens=True)
    fine_tuning_strategy: str = parameter("no_freeze", choices=STRATEGIES)
    data_path: str = parameter(LATEST, "Folder of CSVs, or MLflow artifact URI such as runs:/<id>/imdb; "
                                       "'latest': the latest download_data run's data.", identity=False)
    epochs: int = parameter(3, min=1)
    batch_size: int = parameter(32, min=1)
    learning_rate: float = parameter(1e-4, min=0, min_open=True)
    weight_decay: float = parameter(0.01, "AdamW weight decay (not on biases and LayerNorm weights).", min=0)
    max_length: int = parameter(256, "Tokens kept per review.", min=8, tokens=True)
    truncation: str = parameter("head_tail", "Which tokens of a longer review: its head, its tail, or a quarter head + "
                                             "three quarters tail.", choices=TRUNCATIONS, tokens=True)
    serve: str = parameter("auto", "What the logged model serves: the fine-tuned transformer, or its blend with the TF-IDF "
                                   "baseline (weight chosen on validation); 'auto': the blend when it beats the transformer "
                                   "alone on validation.", choices=SERVES)
    serve_precision: str = parameter("auto", "The served transformer's precision on a CPU: fp32, int8 (dynamic quantization) "
                                             "or bf16 (CPUs with native bf16); 'auto': the first of bf16, int8, fp32 (int8 first without AMX) the serving CPU "
                                             "runs natively among those that changed at most 0.5 % of fp32's validation labels. "
                                             "A GPU serves fp32, or bf16 on cards with bf16 tensor cores.",
                                     choices=SERVE_PRECISIONS)
    seed: int = parameter(42)
    unfreeze_epoch: int = parameter(1, "freeze_unfreeze: epoch the backbone starts training.", min=0)
    patience: int = parameter(2, "Epochs without validation gain before stopping early.", min=1)
    accelerator: str = parameter("auto", choices=ACCELERATORS, identity=False)
    devices: str = parameter("auto", "'auto' (all GPUs of the node; one per node with num_nodes > 1) or a number.", identity=False)
    precision: str = parameter("auto", choices=PRECISIONS)
    compile: str = parameter("auto", "torch.compile the model ('auto': on GPUs).", choices=SWITCHES, identity=False)
    checkpoint_dir: str = parameter("./checkpoints", "Where unfinished runs keep checkpoints to resume from.", identity=False)
    cache_dir: str = parameter("~/.cache/sentiment-finetuning", "Tokenized data, reused by later runs.", identity=False)
    num_nodes: int = parameter(1, "Machines to train on; above 1, Spark's TorchDistributor (cache_dir and checkpoint_dir: "
                                  "folders they share).", min=1, identity=False)
    spark_master: str = parameter("auto", "num_nodes > 1: Spark master URL, e.g. local-cluster[2,1,1024]; 'auto': "
                                          "SPARK_MASTER, else the cluster's own Spark.", identity=False)

    def tokenization(self) -> dict:
        """The fields that shape a review's tokens, by name."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self) if item.metadata["tokens"]}


@dataclass(frozen=True)
class RegisterModel:
    mlflow_run_id: str = parameter(LATEST, "Fine-tuning run whose model to register; 'latest': the latest finished one.")
    registered_model_name: str = parameter("dl_finetuned_model")
    alias: str = parameter("champion", "Alias of the version to serve (models:/<name>@<alias>).")
    challenger_alias: str = parameter("challenger", "Alias of a version that failed the gate.")
    gate_metric: str = parameter("test_macro_f1", choices=GATE_METRICS)
    min_score: float = parameter(0.7, "Lowest gate metric a model may serve with.", min=0, max=1)
    beat_baseline: bool = parameter(True, "Serve only a model whose gate metric beats the run's TF-IDF + logistic "
                                          "regression baseline.")


@dataclass(frozen=True)
class BatchInference:
    model_uri: str = parameter(serving_uri(RegisterModel.registered_model_name, RegisterModel.alias),
                               "models:/, runs:/ or local model URI; main turns this default into "
                               "models:/<registered_model_name>@<alias> of the values it was given.")
    input_path: str = parameter(LATEST, "CSV or Parquet file or folder, or MLflow artifact URI such as runs:/<id>/imdb/test.csv; "
                                        "on Databricks also a Unity Catalog table catalog.schema.table or a /Volumes/ path; "
                                        "'latest': the test split of the latest download_data run.")
    text_column: str = parameter("review", "Column of the texts to score; a null in it is refused (the count is given).")
    output_path: str = parameter("./predictions", "Parquet folder, or on Databricks a Unity Catalog table (Delta) or a /Volumes/ "
                                                  "path: the input's columns plus label and probability. Replaced only when it "
                                                  "is a previous output of this step.")
    rows_per_batch: int = parameter(1024, "Rows handed to the model at a time (Arrow batch).", min=1)
    spark_master: str = parameter("auto", "Spark master URL, e.g. local[2]; 'auto': Spark Connect where SPARK_REMOTE is "
                                          "set, else SPARK_MASTER, else the cluster's own Spark (on a laptop local[*]).",
                                  identity=False)


STEP_PARAMETERS = {DOWNLOAD: DownloadData, FINE_TUNING: FineTuning, REGISTER: RegisterModel, BATCH: BatchInference}
OUTSIDE_IDENTITY = frozenset(item.name for config_class in STEP_PARAMETERS.values() for item in dataclasses.fields(config_class)
                             if not item.metadata["identity"])


class Number(click.ParamType):
    """An int or float parameter that says in plain words what it expects ("a whole number of at least 1"), where
    click's own types answer "'abc' is not a valid integer range"."""

    def __init__(self, kind: type, minimum: float | None, maximum: float | None, min_open: bool):
        self.kind, self.minimum, self.maximum, self.min_open = kind, minimum, maximum, min_open
        if minimum is not None and maximum is not None and not min_open:
            bounds = f"from {minimum:g} to {maximum:g}"
        else:
            low = "" if minimum is None else f"greater than {minimum:g}" if min_open else f"of at least {minimum:g}"
            high = "" if maximum is None else f"at most {maximum:g}" if low else f"of at most {maximum:g}"
            bounds = " and ".join(filter(None, [low, high]))
        self.name = f"{'a whole number' if kind is int else 'a number'}{' ' + bounds if bounds else ''}"

    def convert(self, value, param, ctx):
        try:
            number = self.kind(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not {self.name}", param, ctx)
        low = self.minimum is not None and (number <= self.minimum if self.min_open else number < self.minimum)
        if low or (self.maximum is not None and number > self.maximum):
            self.fail(f"{value!r} is not {self.name}", param, ctx)
        return number


class TrueOrFalse(click.types.BoolParamType):
    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{value!r} is neither true nor false", param, ctx)


def click_type(item: dataclasses.Field) -> click.ParamType:
    """The click type that converts and checks one field's value."""
    meta = item.metadata
    if meta["choices"]:
        return click.Choice(meta["choices"])
    if item.type in (int, float):
        return Number(item.type, meta["min"], meta["max"], meta["min_open"])
    if item.type is bool:  # true/false on the command line and in MLproject, a bool in the dataclass
        return TrueOrFalse()
    return click.STRING


def as_text(value) -> str:
    """A parameter value as the command line and MLflow's params write it (`true`, not `True`)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def logged_params(config) -> dict[str, str]:
    """A step's parameters as its run logs them: the strings `mlflow run` logs for the same values."""
    return {name: as_text(value) for name, value in dataclasses.asdict(config).items()}


def command_line(config_class):
    """Decorator: the click options of every field of `config_class` (`--max-length` for `max_length`)."""

    def decorate(command):
        for item in reversed(dataclasses.fields(config_class)):
            command = click.option(f"--{item.name.replace('_', '-')}", item.name, type=click_type(item), default=item.default,
                                   show_default=True, help=item.metadata["help"] or None)(command)
        return command

    return decorate


def declaring_steps(key: str) -> list[str]:
    """The steps that take parameter `key`."""
    return [step for step, config_class in STEP_PARAMETERS.items() if key in {item.name for item in dataclasses.fields(config_class)}]


def check_value(step: str, key: str, value: str) -> None:
    """Convert `value` as step `step` converts its parameter `key`; click.BadParameter where it refuses it."""
    (item,) = [item for item in dataclasses.fields(STEP_PARAMETERS[step]) if item.name == key]
    click_type(item).convert(value, None, None)


def mlproject_type(item: dataclasses.Field) -> str:
    """The MLproject type of a field (`int`, `float` or `str`; MLflow has no bool: `true`/`false` as text)."""
    return {int: "int", float: "float", str: "str", bool: "str"}[item.type]
