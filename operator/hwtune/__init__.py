"""hwtune: hardware-aware, multi-objective hyperparameter tuning."""
