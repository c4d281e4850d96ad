"""pipeline/reuse.py: one definition of "the same run" for reuse and resume, and one-line errors for bad run ids."""

import mlflow
import pytest

from pipeline import fine_tuning_model
from pipeline.errors import PipelineError
from pipeline.reuse import data_run_for, run_identity, step_run_by_id
from pipeline.tracking import STEP_TAG

PARAMS = {"epochs": "3", "learning_rate": "0.0001", "checkpoint_dir": "./checkpoints", "cache_dir": "~/.cache/x",
          "data_path": "runs:/abc/imdb"}
DIGESTS = {"train": "1", "valid": "2", "test": "3"}


def test_placement_and_data_reference_do_not_make_another_run(tmp_path):
    moved = PARAMS | {"checkpoint_dir": "/elsewhere", "cache_dir": "/tmp/cache", "data_path": "runs:/def/imdb"}
    assert run_identity(moved, DIGESTS) == run_identity(PARAMS, DIGESTS)
    assert run_identity(PARAMS | {"epochs": "4"}, DIGESTS) != run_identity(PARAMS, DIGESTS)
    assert run_identity(PARAMS, DIGESTS | {"test": "4"}) != run_identity(PARAMS, DIGESTS)
    # Resume uses the same identity: re-downloaded identical data (another data_path) finds the same checkpoints.
    for params in (PARAMS, moved):
        params["checkpoint_dir"] = str(tmp_path)
    assert fine_tuning_model.checkpoint_folder(PARAMS, DIGESTS) == fine_tuning_model.checkpoint_folder(moved, DIGESTS)


def test_unknown_or_wrong_run_ids_are_one_line(tracking):
    with mlflow.start_run() as run:
        mlflow.set_tag(STEP_TAG, "fine_tuning_model")
    with pytest.raises(PipelineError, match=r"^data_path='runs:/0123456789abcdef/imdb': no run '0123456789abcdef' in sqlite:"):
        data_run_for("runs:/0123456789abcdef/imdb", "0")
    with pytest.raises(PipelineError, match=rf"^data_path='runs:/{run.info.run_id}/imdb': run {run.info.run_id} is a "
                                            r"fine_tuning_model run, not a download_data run$"):
        data_run_for(f"runs:/{run.info.run_id}/imdb", "0")
    assert step_run_by_id(run.info.run_id, "fine_tuning_model", "x").info.run_id == run.info.run_id
