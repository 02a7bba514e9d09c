"""The Kubernetes operator (kopf): admission of TuningStudies, and later their reconciliation.

Only this package imports kopf (checked by import-linter). The checks themselves live in
``hwtune.api`` (models, ``validate_study_against_pools``) so the CLI and the operator refuse the
same things; the handlers here feed them what only a running operator knows.
"""

from hwtune.controller.settings import (
    DEFAULT_WEBHOOK_CONFIGURATION,
    FailurePolicy,
    LogFormat,
    OperatorSettings,
    SettingsError,
)

__all__ = [
    "DEFAULT_WEBHOOK_CONFIGURATION",
    "FailurePolicy",
    "LogFormat",
    "OperatorSettings",
    "SettingsError",
]
