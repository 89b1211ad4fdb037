"""``rlgen tune``: Optuna studies over search spaces declared in ``agents/tune.yml``."""
