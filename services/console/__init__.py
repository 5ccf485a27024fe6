"""The operator console: ``/console`` on the feed API (``services.console.router``).

Pages: Overview (ingest rate, consumer lag per partition, dead letters by reason with the newest
letters, feeds per second, event -> feed latency), Models & indexes (registry versions, gate decisions,
index recall; promote and roll back as admin), Drift (reports over time, what moved, the retrains they
triggered), Feed inspector (a user's history, segment and features; their feed explained item by item;
the candidates filtered out and why) and Experiments (the per-arm report).

Server-rendered HTML with inline SVG charts (``charts``): no script needed, nothing from a CDN. The
numbers come from the processes' ``/metrics`` (scraped by the console) or a Prometheus
(``console.prometheus_url``), the registry, Redis/Feast through the serving pipeline, and the
dead-letter topics.
"""
