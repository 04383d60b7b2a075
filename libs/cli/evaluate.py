"""``pas eval``: the evaluation (``libs/evaluation/``) under the operator's command, its options
passed through unchanged (``pas eval --help`` lists them)."""

from __future__ import annotations

import click


@click.command(
    "eval",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def evaluate(arguments: tuple[str, ...]) -> None:
    """Score answers on the evaluation set (key figures, sentiment, summaries) through any
    OpenAI-compatible endpoint; exits 1 under the thresholds given (a CI gate)."""
    # Imported when asked for: the evaluation loads the processor's modules.
    from libs.evaluation.cli import main  # noqa: PLC0415

    raise SystemExit(main(list(arguments)))
