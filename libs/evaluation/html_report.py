"""``report.html``: the report as one self-contained page (inline CSS and SVG, no script, no
external asset), so that it opens from a CI artifact as it is."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

from libs.evaluation import scoring
from libs.evaluation.report import AnswerRow, EvalReport, Headline

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d2430}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccd3dd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef2f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b3261e}.ok{color:#1b6e3a}.small{font-size:12px;color:#555}
pre{white-space:pre-wrap;margin:0;max-width:40em}
"""

_HEADLINE_LABELS = {
    "precision": "KF precision",
    "recall": "KF recall",
    "sentiment_accuracy": "Sentiment acc.",
    "faithfulness": "Faithfulness",
    "grounding_before": "Grounded (1st)",
    "grounding_after": "Grounded (final)",
}


def _number(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)


def bar_chart(headline: Headline) -> str:
    """Horizontal bars of the headline metrics (each in [0, 1]) as inline SVG."""
    bars = [
        (label, getattr(headline, field))
        for field, label in _HEADLINE_LABELS.items()
        if getattr(headline, field) is not None
    ]
    row_h, label_w, bar_w = 26, 130, 320
    height = row_h * len(bars) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 60}" '
        f'height="{height}" role="img" aria-label="headline metrics">'
    ]
    for i, (label, value) in enumerate(bars):
        y = 5 + i * row_h
        width = round(bar_w * max(0.0, min(1.0, value)), 1)
        parts.append(
            f'<text x="0" y="{y + 16}" font-size="13">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="16" fill="#eef2f7"/>'
            f'<rect x="{label_w}" y="{y + 3}" width="{width}" height="16" fill="#3b6fb6"/>'
            f'<text x="{label_w + bar_w + 6}" y="{y + 16}" font-size="13">{value:.3f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: object, *, numeric: bool = False) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f'<td class="n">{escape(_number(value))}</td>'
    text = "-" if value is None else str(value)
    return f"<td{' class=n' if numeric else ''}>{escape(text)}</td>"


def _answer_cell(row: AnswerRow) -> str:
    if not row.usable:
        return f'<td class="bad"><pre>{escape(row.reason or "")}</pre></td>'
    if row.key_figures is not None:
        shown = "\n".join(f"{f.name}: {f.value}" for f in row.key_figures)
    elif row.sentiment is not None:
        shown = f"{row.sentiment.label}: {row.sentiment.reason}"
    else:
        shown = row.answer or ""
    return f"<td><pre>{escape(shown)}</pre></td>"


def _expected(row: AnswerRow) -> str:
    if row.expected_key_figures is not None:
        return "\n".join(f"{f.name}: {f.value}" for f in row.expected_key_figures)
    return row.expected_sentiment or ""


def render(report: EvalReport) -> str:
    c = report.config
    answered_by = sorted({r.model for r in report.answers if r.model})
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>PAS evaluation {escape(report.eval_id)}</title><style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>PAS evaluation {escape(report.eval_id)}</h1>",
        f'<p class="small">{escape(c.url)} · model {escape(c.model or "(server default)")} · '
        f"answered by {escape(', '.join(answered_by) or 'no model')} · "
        f"split {escape(c.split)} · tasks {escape(', '.join(c.tasks))} · "
        f"{report.started_at:%Y-%m-%d %H:%M:%S}Z → {report.finished_at:%H:%M:%S}Z"
        + (
            f" · workflow {escape(c.workflow or '')} {escape(str(c.version or c.alias or ''))}"
            if c.workflow
            else ""
        )
        + (f" · experiment {escape(c.experiment)}" if c.experiment else "")
        + "</p>",
    ]
    if report.gate_failures:
        out.append(
            '<p class="bad">Gate failed: '
            + "; ".join(escape(f) for f in report.gate_failures)
            + "</p>"
        )
    elif c.thresholds:
        out.append('<p class="ok">Gate passed.</p>')
    out += ["<h2>Headline</h2>", bar_chart(report.headline), "<h2>Tasks</h2>"]
    out.append(
        _table(
            [
                "task",
                "documents",
                "usable",
                "p50 ms",
                "p95 ms",
                "prompt tok",
                "completion tok",
                "grounded 1st",
                "grounded final",
            ],
            [
                [
                    _cell(s.task),
                    _cell(s.documents),
                    _cell(s.usable),
                    _cell(_ms(s.latency_p50_ms)),
                    _cell(_ms(s.latency_p95_ms)),
                    _cell(s.prompt_tokens),
                    _cell(s.completion_tokens),
                    _cell(s.grounded_before),
                    _cell(s.grounded_after),
                ]
                for s in report.tasks
            ],
        )
    )
    if report.key_figures is not None:
        k = report.key_figures
        out += [
            "<h2>Key figures</h2>",
            _table(
                ["matched", "predicted", "expected", "precision", "recall", "F1", "mean doc F1"],
                [
                    [
                        _cell(k.matched),
                        _cell(k.predicted),
                        _cell(k.expected),
                        _cell(k.precision),
                        _cell(k.recall),
                        _cell(k.f1),
                        _cell(k.mean_document_f1),
                    ]
                ],
            ),
        ]
    if report.sentiment is not None:
        s = report.sentiment
        out += [
            f"<h2>Sentiment</h2><p>accuracy {_number(s.accuracy)} ({s.correct}/{s.documents}); "
            "rows expected, columns predicted</p>",
            _table(
                ["", *s.labels],
                [
                    [f"<th>{escape(label)}</th>", *(_cell(n) for n in counts)]
                    for label, counts in zip(s.labels, s.confusion, strict=True)
                ],
            ),
        ]
    if report.summary is not None:
        m = report.summary
        out.append(
            f"<h2>Summaries</h2><p>faithfulness {_number(m.faithfulness)} over "
            f"{m.with_numbers} summaries stating numbers; {m.without_numbers} state none; "
            f"repetition {_number(m.repetition)}, {m.repetitive} repetitive (over "
            f"{scoring.REPETITIVE} of their word trigrams said before)</p>"
        )
    unusable = [u for s in report.tasks for u in s.unusable]
    if unusable:
        out += [
            "<h2>Unusable answers</h2>",
            _table(
                ["doc", "task", "reason"],
                [[_cell(u.doc_id), _cell(u.task), _cell(u.reason)] for u in unusable],
            ),
        ]
    out += [
        "<h2>Answers</h2>",
        _table(
            [
                "doc",
                "task",
                "version",
                "answer",
                "expected",
                "grounded 1st/final",
                "ungrounded",
                "score",
                "ms",
            ],
            [
                [
                    _cell(r.doc_id),
                    _cell(r.task),
                    _cell(
                        f"v{r.workflow_version} {r.variant or ''}" if r.workflow_version else None
                    ),
                    _answer_cell(r),
                    f"<td><pre>{escape(_expected(r))}</pre></td>",
                    _cell(f"{r.grounded_first}/{r.grounded}" if r.grounded is not None else None),
                    _cell("; ".join(r.ungrounded + r.unfounded) or None),
                    _cell(r.score),
                    _cell(_ms(r.latency_ms)),
                ]
                for r in report.answers
            ],
        ),
        "</body></html>",
    ]
    return "\n".join(out)


def write_html(report: EvalReport, path: Path) -> None:
    path.write_text(render(report), encoding="utf-8")
