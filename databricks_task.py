"""What a job of the `databricks-jobs` backend runs on the cluster's driver (pipeline/on_databricks/jobs.py submits it).

    databricks_task.py <entry file> [arguments...]      e.g. databricks_task.py main.py --pipeline-steps all ...

Databricks starts a Python task in its file's folder (Runtime 14 and above), this project's folder: the entry
point's file runs here as `python <entry file> <arguments>` would run it, but in this process, because only the
job's driver process holds the runtime's credentials and the cluster's Spark.
"""

import os
import runpy
import sys

if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd())
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
