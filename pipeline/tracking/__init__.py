"""MLflow as the steps use it: a step's run, finding runs, reuse of finished ones, the internals we rely on."""
