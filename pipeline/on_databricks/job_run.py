"""A submitted Databricks job run, followed as MLflow's own Databricks backend follows one.

`wait()` polls Jobs API 2.2 `runs/get`; a run that did not succeed ends its MLflow run FAILED with the job's own reason
in `pipeline.error`, one line. Jobs 2.2 reports that reason in several places, most precise first: the task's output
(`runs/get-output` of the task run: `error`, the Python exception's last line), the run's
`status.termination_details` (code and message: a quota, no capacity for the node type, a library that did not
install, a checkout), the task's `state.state_message`, and the run's older `state.state_message`.
`get_status()` answers as MLflow's `DatabricksSubmittedRun.get_status` does; `cancel()` waits (bounded) until the job
has ended and ends the step runs it left RUNNING.
"""

import time

from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.projects.submitted_run import SubmittedRun
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.errors import first_line
from pipeline.tracking.runs import end_unfinished_run

TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
CANCEL_WAIT_SECONDS = 300  # a cluster takes a few minutes to stop; past that the job is left to Databricks
RUNS_GET = "/api/2.2/jobs/runs/get"


class DatabricksJobRun(SubmittedRun):
    poll_seconds = 30.0  # `pipeline.on_databricks.submit --poll-seconds` sets it

    def __init__(self, mlflow_run_id: str, job_run_id: int, workspace):
        self._run_id, self.job_run_id, self.workspace = mlflow_run_id, job_run_id, workspace

    @property
    def run_id(self) -> str:
        return self._run_id

    def job(self) -> dict:
        return self.workspace.api_client.do("GET", RUNS_GET, query={"run_id": self.job_run_id})

    def wait_until_ended(self, seconds: float | None = None) -> dict:
        deadline = None if seconds is None else time.monotonic() + seconds
        while (job := self.job())["state"]["life_cycle_state"] not in TERMINAL:
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(self.poll_seconds)
        return job

    def wait(self) -> bool:
        job = self.wait_until_ended()
        succeeded = job["state"].get("result_state") == "SUCCESS"
        if not succeeded:
            end_unfinished_run(self._run_id, "FAILED", job_failure(job, self.workspace))
        return succeeded

    def get_status(self) -> str:
        """MLflow's strings: RUNNING until the job ends, then FINISHED where it succeeded, else FAILED."""
        state = self.job()["state"]
        if state["life_cycle_state"] not in TERMINAL:
            return RunStatus.to_string(RunStatus.RUNNING)
        return RunStatus.to_string(RunStatus.FINISHED if state.get("result_state") == "SUCCESS" else RunStatus.FAILED)

    def cancel(self) -> None:
        self.workspace.jobs.cancel_run(self.job_run_id)
        ended = self.wait_until_ended(CANCEL_WAIT_SECONDS)["state"]["life_cycle_state"] in TERMINAL
        client = MlflowClient()
        experiment = client.get_run(self._run_id).info.experiment_id
        for step in client.search_runs([experiment], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self._run_id}' and attributes.status = 'RUNNING'"):
            end_unfinished_run(step.info.run_id, "KILLED", "cancelled with its Databricks job")
        end_unfinished_run(self._run_id, "KILLED", "cancelled" if ended else
                           f"cancelled; the job had not ended {CANCEL_WAIT_SECONDS} s later (Databricks run {self.job_run_id})")


def job_failure(job: dict, workspace) -> str:
    """The job's own reason, in one line; a checkout that failed says what a private repository needs."""
    termination = job.get("status", {}).get("termination_details", {})
    tasks = job.get("tasks", [])
    message = next(filter(None, [
        *(task_error(workspace, task) for task in tasks),
        f"{termination['code']}: {termination.get('message', '')}".rstrip(": ") if termination.get("code") not in (None, "SUCCESS") else "",
        *(task.get("state", {}).get("state_message", "") for task in tasks),
        job["state"].get("state_message", ""),
    ]), f"job ended {job['state']['life_cycle_state']}")
    if job["state"].get("result_state") == "TIMEDOUT":
        message = f"timed out ({job['state'].get('state_message') or 'the run passed its timeout_seconds'}); a longer run needs " \
                  "\"timeout_seconds\" in the backend config"
    message = first_line(Exception(message))
    if termination.get("code") == "REPOSITORY_CHECKOUT_FAILED" or "checkout" in message.lower() or "clone" in message.lower():
        return (f"Databricks could not check out the code ({message}): a private repository needs the workspace's git "
                "credential (User settings > Linked accounts) of the job's run-as user")
    return f"Databricks job: {message}"


def task_error(workspace, task: dict) -> str:
    """The last line of the exception that ended the task's code (`runs/get-output` of the task run), if any."""
    from databricks.sdk.errors import DatabricksError

    if task.get("state", {}).get("result_state") in (None, "SUCCESS") or "run_id" not in task:
        return ""
    try:
        output = workspace.api_client.do("GET", "/api/2.2/jobs/runs/get-output", query={"run_id": task["run_id"]})
    except DatabricksError:
        return ""  # the output is gone (runs/get-output keeps 60 days) or never was: the other fields still say why
    error = (output.get("error") or "").strip()
    trace = [line for line in (output.get("error_trace") or "").strip().splitlines() if line.strip()]
    return error or (trace[-1] if trace else "")
