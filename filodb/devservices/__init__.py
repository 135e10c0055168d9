"""Development services on real servers: Apache Kafka and Apache Cassandra, fetched with Maven.

``scripts/services up kafka cassandra`` (``python -m filodb.devservices``) obtains each server's
jars from Maven Central (cached under ``$FILODB_SERVICES_CACHE``, default
``~/.cache/filodb-services``), starts it on loopback on a free port with its data under a
temporary directory, waits until it really answers, and prints one ``export FILODB_...=...``
line per setting ``filodb`` needs to reach it. ``scripts/services down`` stops what it started.
Tests use the same code through :func:`filodb.devservices.base.ensure`.
"""
