"""Recording and alerting rules: Prometheus's rule files, templates, evaluation, notification.

``files`` (parse and validate rule files), ``template`` (Go's template language, the subset
Prometheus users write), ``alerting``/``group`` (pure evaluation over a querier and an
appender), ``state`` (what ``/api/v1/rules`` and ``/api/v1/alerts`` show, in Redis),
``notifier`` (Alertmanager's v2 API), ``manager`` (the evaluating process: lease, schedule,
reload), ``promtool_tests`` (promtool's ``test rules`` format).
"""
