"""Fine-tuning: the LightningModule and DataModule, the device choice, and the launchers that run a training job in
processes of its own (`launcher.launch`: one machine, or several through Spark). Its processes never talk to our
MLflow helpers (tests/test_architecture.py)."""
