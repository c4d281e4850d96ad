"""How good a model is: one metric implementation, the TF-IDF baseline, the choice of what to serve, the reports,
and the quality gate that decides which version serves."""
