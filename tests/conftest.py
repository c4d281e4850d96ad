"""Shared fixtures: a tiny BERT saved with `save_pretrained`, review data sets, a zip server on 127.0.0.1, a tracking store."""

import contextlib
import csv
import functools
import http.server
import inspect
import os
import random
import signal
import subprocess
import sys
import threading
import time
import types
import zipfile
from pathlib import Path

import click.testing
import mlflow
import pandas as pd
import psutil
import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]

# Hypothesis budgets: `ci` (the default) a fixed number of examples per property, `fuzz` (`make fuzz`) many more.
settings.register_profile("ci", max_examples=100, deadline=None, print_blob=True)
settings.register_profile("fuzz", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
SAMPLE = REPO / "data" / "sample" / "uci-sentences"

POSITIVE = ["great", "wonderful", "excellent", "superb", "delightful", "brilliant", "moving", "charming", "perfect", "beautiful"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "horrible", "dull", "clumsy", "painful", "stupid", "worst"]
NEUTRAL = ["the film", "this movie", "the plot", "the acting", "the ending", "the script", "the cast", "the music"]


def cli_runner() -> click.testing.CliRunner:
    """click's test runner with stderr kept apart: on click 8.1 (the Databricks runtime's) that takes
    `mix_stderr=False`, from 8.2 on it is always so."""
    if "mix_stderr" in inspect.signature(click.testing.CliRunner).parameters:
        return click.testing.CliRunner(mix_stderr=False)
    return click.testing.CliRunner()


def easy_reviews(rows: int, seed: int) -> pd.DataFrame:
    """Short reviews whose sentiment a bag of words decides: a learned model must score far above chance."""
    rng = random.Random(seed)
    records = []
    for index in range(rows):
        label = "positive" if index % 2 == 0 else "negative"
        words = POSITIVE if label == "positive" else NEGATIVE
        text = f"{rng.choice(NEUTRAL)} was {rng.choice(words)} and {rng.choice(NEUTRAL)} felt {rng.choice(words)}"
        records.append({"review": text, "sentiment": label})
    return pd.DataFrame(records).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def verdict_last_reviews(rows: int, seed: int) -> pd.DataFrame:
    """Long reviews whose sentiment only their last sentence gives: the rest is filler that says nothing."""
    rng = random.Random(seed)
    records = []
    for index in range(rows):
        label = "positive" if index % 2 == 0 else "negative"
        filler = " ".join(f"{rng.choice(NEUTRAL)} ran long and {rng.choice(NEUTRAL)} came after." for _ in range(6))
        records.append({"review": f"{filler} in short it was {rng.choice(POSITIVE if label == 'positive' else NEGATIVE)}",
                        "sentiment": label})
    return pd.DataFrame(records)


def write_splits(folder: Path, frames: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        frame.to_csv(folder / f"{split}.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    return folder


def leftovers(parent: Path) -> list[str]:
    """What a data folder holds besides `imdb` and the version folder it links to: staging or backup remains."""
    kept = {"imdb", (parent / "imdb").resolve().name}
    return sorted(path.name for path in parent.iterdir() if path.name not in kept)


def zip_folder(folder: Path, archive: Path, top: str = "imdb") -> Path:
    """A zip in the book's layout: `imdb/{train,valid,test}.csv`."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.glob("*.csv")):
            bundle.write(path, f"{top}/{path.name}")
    return archive


SECRETS = {"DATABRICKS_TOKEN": "dapi-e2e-secret-0123456789", "AWS_SECRET_ACCESS_KEY": "aws-e2e-secret-0123456789",
           "MLFLOW_TRACKING_PASSWORD": "tracking-e2e-secret-0123456789"}


STOP_HOOKS = REPO / "tests" / "stop_hooks"  # its sitecustomize stops a process at a named point


def stopping_at(point: str, env: dict[str, str], marker: Path) -> dict[str, str]:
    """`env` for a command that stops itself at `point` (tests/stop_hooks) and then writes `marker`."""
    return env | {"PYTHONPATH": os.pathsep.join(filter(None, [str(STOP_HOOKS), env.get("PYTHONPATH")])),
                  "PIPELINE_TEST_STOP_AT": point, "PIPELINE_TEST_STOPPED": str(marker)}


def stopping_after_first_epoch(env: dict[str, str], marker: Path) -> dict[str, str]:
    """`env` for a command whose training processes stop themselves once epoch 0's last.ckpt is saved."""
    return stopping_at("first_checkpoint", env, marker)


def wait_for_stop(marker: Path, process: subprocess.Popen, seconds: float = 600) -> None:
    """Until `process` (or a process under it) has stopped itself (the marker exists); fails if it ends first."""
    deadline = time.monotonic() + seconds
    while not marker.exists():
        assert process.poll() is None, f"the command ended (exit code {process.returncode}) before training stopped"
        assert time.monotonic() < deadline, "training never reached its first checkpoint"
        time.sleep(0.1)


def termination_pending(pid: int) -> bool:
    """SIGTERM waits for the (stopped) process `pid`: in its own or its process's pending signals (/proc, Linux)."""
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    return any(int(status[mask], 16) & (1 << (signal.SIGTERM - 1)) for mask in ("SigPnd", "ShdPnd"))


def ctrl_c_while_stopped(process: subprocess.Popen, seconds: float = 300) -> int:
    """A terminal's Ctrl-C (SIGINT to the process group of `process`, started with start_new_session) while a process
    under it has stopped itself at a stop hook's point; that one goes on once the SIGTERM meant for it (`main` ends a
    step so) is pending, and handles it. Every process of the tree must end; returns the exit code of `process`."""
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + seconds
    while process.poll() is None or [member for member in tree if alive(member)]:
        assert time.monotonic() < deadline, f"processes outlived Ctrl-C: {[m.cmdline() for m in tree if alive(m)]}"
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                if member.status() == psutil.STATUS_STOPPED and termination_pending(member.pid):
                    member.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    return process.returncode


def alive(member: psutil.Process) -> bool:
    try:
        return member.is_running() and member.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL to `process` and every process under it at once (a power cut, the OOM killer): nothing cleans up."""
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    process.wait()
    psutil.wait_procs(tree, timeout=30)


def client_env(tracking_uri: str, **variables: str) -> dict[str, str]:
    """The environment of a client subprocess: this venv first on PATH, no hub downloads, the given tracking URI,
    and none of the run or experiment an enclosing `mlflow run` may have set."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for variable in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(variable, None)
    return env | variables


def mlflow_run(tracking_uri: str, *args: str, experiment: str = "e2e", uri: str = str(REPO),
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`mlflow run <this repo>` (the active environment: MLproject declares none) in a subprocess, from `cwd` (default: a SQLite store's folder),
    with secrets in the environment (which must never reach the store)."""
    env = client_env(tracking_uri, **SECRETS)
    command = [sys.executable, "-m", "mlflow", "run", uri, "--experiment-name", experiment, *args]
    cwd = cwd or tracking_uri.removeprefix("sqlite:///").rpartition("/")[0]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=cwd)


@contextlib.contextmanager
def tracking_at(uri: str):
    """Point MLflow's fluent API (`mlflow.search_runs`, `mlflow.pyfunc.load_model`) at `uri` for the block."""
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)


def params(**values) -> list[str]:
    return [item for key, value in values.items() for item in ("-P", f"{key}={value}")]


def runs_by_entry_point(uri: str, experiment: str = "e2e") -> dict[str, list]:
    """Runs of the experiment by MLproject entry point (the parent is `main`), oldest first; runs no `mlflow run`
    started (a step run as a plain command) are left out."""
    client = mlflow.MlflowClient(uri)
    found: dict[str, list] = {}
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], order_by=["attributes.start_time ASC"])
    for run in runs:
        if "mlflow.project.entryPoint" in run.data.tags:
            found.setdefault(run.data.tags["mlflow.project.entryPoint"], []).append(run)
    return found


def pipeline_runs(uri: str, result) -> dict[str, list]:
    """The runs of the `mlflow run` that printed `result`: its parent run (named in its output) and that run's steps,
    whatever other tests added to the experiment since."""
    parents = {run.info.run_id: run for run in runs_by_entry_point(uri)["main"]}
    (parent_id,) = {run_id for run_id in parents if f"=== Run (ID '{run_id}') succeeded ===" in result.stderr}
    children = {step: [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent_id]
                for step, runs in runs_by_entry_point(uri).items() if step != "main"}
    return {"main": [parents[parent_id]], **children}


@pytest.fixture(scope="session")
def easy_data(tmp_path_factory) -> Path:
    """train/valid/test folder of easy generated reviews (400/100/100 rows)."""
    folder = tmp_path_factory.mktemp("easy") / "imdb"
    return write_splits(folder, {"train": easy_reviews(400, 1), "valid": easy_reviews(100, 2), "test": easy_reviews(100, 3)})


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> Path:
    """A small slice of the committed real sentences (200/60/60 rows)."""
    folder = tmp_path_factory.mktemp("sample") / "imdb"
    sizes = {"train": 200, "valid": 60, "test": 60}
    return write_splits(folder, {split: pd.read_csv(SAMPLE / f"{split}.csv").head(rows) for split, rows in sizes.items()})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT and a WordPiece tokenizer trained here, saved like a hub model."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    corpus = pd.read_csv(SAMPLE / "train.csv")["review"].tolist() + [" ".join(POSITIVE + NEGATIVE + NEUTRAL)] * 5
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(corpus, vocab_size=1500, min_frequency=2)
    wordpiece.save_model(str(folder))  # vocab.txt, which from_pretrained reads in transformers 4 and 5 alike
    tokenizer = BertTokenizerFast.from_pretrained(folder, do_lower_case=True, model_max_length=128)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)  # the same weights whichever test builds it first
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer GPT-2 and a byte-level BPE tokenizer trained here: a decoder-only backbone,
    whose tokenizer has an end-of-sequence token and no pad token, as GPT-2's."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    corpus = pd.read_csv(SAMPLE / "train.csv")["review"].tolist() + [" ".join(POSITIVE + NEGATIVE + NEUTRAL)] * 5
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=800, min_frequency=2, special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                        unk_token="<|endoftext|>", model_max_length=64)
    tokenizer.save_pretrained(folder)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    GPT2Model(config).save_pretrained(folder)
    return folder


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def http_root(tmp_path_factory):
    """(folder, base URL) of a real HTTP server on 127.0.0.1 serving the folder."""
    folder = tmp_path_factory.mktemp("www")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def easy_zip_url(http_root, easy_data) -> str:
    folder, base = http_root
    zip_folder(easy_data, folder / "easy.zip")
    return f"{base}/easy.zip"


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> str:
    """A fresh SQLite tracking store and registry for one test, also seen by subprocesses."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)  # the store puts artifacts in ./mlruns
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def mlflow_server_folder(tmp_path_factory) -> Path:
    """Where the session's tracking server keeps its SQLite store and artifacts."""
    return tmp_path_factory.mktemp("mlflow-server")


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_folder):
    """A real `mlflow server` (SQLite store, proxied artifacts) on a free 127.0.0.1 port; yields its http URI."""
    from servers import mlflow_server as start_mlflow_server

    with start_mlflow_server(mlflow_server_folder) as uri:
        yield uri


@pytest.fixture(scope="session")
def served_pipeline(mlflow_server, tiny_model, easy_zip_url, tmp_path_factory):
    """`mlflow run .` of the whole pipeline against the real tracking server, over HTTP only, with local model and
    data, in experiment `e2e`; it serves the blend of transformer and baseline. Yields (tracking URI, the -P values, the CompletedProcess); `pipeline_runs` holds its runs."""
    folder = tmp_path_factory.mktemp("e2e")
    values = dict(download_url=easy_zip_url, local_folder=folder / "data", foundation_model=tiny_model,
                  checkpoint_dir=folder / "checkpoints", cache_dir=folder / "cache", epochs=3, batch_size=16,
                  learning_rate=3e-3, max_length=32, registered_model_name="e2e_sentiment", serve="blend",
                  beat_baseline="false")  # the TF-IDF baseline is perfect on these reviews: the gate's champion tests need it off
    # Read-only: the tests that share it derive their own values (`values | {...}`), never change these.
    yield mlflow_server, types.MappingProxyType(values), mlflow_run(mlflow_server, *params(**values), cwd=folder)


def git(*args: str, cwd: Path) -> str:
    import subprocess

    identity = ["-c", "user.name=tests", "-c", "user.email=tests@127.0.0.1"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def git_remote(tmp_path_factory):
    """This repository's committed HEAD served by a real `git daemon` on 127.0.0.1, twice.

    `sentiment.git`: a bare clone with one newer commit on top that breaks `main.py`, so only a run of the
    pinned commit (`pinned`) can succeed. `monorepo.git`: the same files in the subdirectory `ml/sentiment`
    (commit `nested`). Yields a dict with `url` (git://127.0.0.1:<port>), `pinned` and `nested`.
    """
    from servers import git_daemon

    base = tmp_path_factory.mktemp("git")
    served, work = base / "served", base / "work"
    served.mkdir()
    git("clone", "--quiet", str(REPO), str(work), cwd=base)
    pinned = git("rev-parse", "HEAD", cwd=work)
    (work / "main.py").write_text('raise SystemExit("not the pinned version")\n')
    git("commit", "--quiet", "-am", "A newer commit that must not run", cwd=work)
    git("clone", "--quiet", "--bare", str(work), str(served / "sentiment.git"), cwd=base)

    monorepo = base / "monorepo"
    (monorepo / "ml" / "sentiment").mkdir(parents=True)
    git("init", "--quiet", cwd=monorepo)
    git("--work-tree", str(monorepo / "ml" / "sentiment"), "checkout", pinned, "--", ".", cwd=work)
    (monorepo / "README.md").write_text("Several projects; the sentiment one is in ml/sentiment.\n")
    git("add", ".", cwd=monorepo)
    git("commit", "--quiet", "-m", "Project in a subdirectory", cwd=monorepo)
    nested = git("rev-parse", "HEAD", cwd=monorepo)
    git("clone", "--quiet", "--bare", str(monorepo), str(served / "monorepo.git"), cwd=base)

    with git_daemon(served) as url:
        yield {"url": url, "pinned": pinned, "nested": nested}
