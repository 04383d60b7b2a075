"""Answer quality as numbers: the evaluation behind ``python -m libs.evaluation`` (docs/quality.md).

- ``eval_set``: the documents and their expected answers (``libs/evaluation/data/documents.jsonl``);
- ``scoring``: the metrics, pure functions;
- ``runner``: asking an OpenAI-compatible endpoint the way the Kafka processor does;
- ``versions``: prompts from the version manager, experiment assignments and outcomes;
- ``report``: the report's wire types, its metrics, JSON and HTML;
- ``analytics``: the per-answer scores sent to the analytics collector.
"""
