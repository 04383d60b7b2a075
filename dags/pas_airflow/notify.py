"""``PASFailureNotifier``: tell people when a PAS task has failed for good.

Use it as a DAG's or task's ``on_failure_callback``: Airflow calls that once per task instance,
after its last try (a try that will be retried calls ``on_retry_callback`` instead), so each
failure is one message, not one per try. It sends to every target that is configured and skips
the others (``None`` as a connection id turns that target off):

- a Slack-compatible incoming webhook: Airflow connection ``pas_slack`` (type ``slackwebhook``;
  the webhook URL as its password, or host + path), e.g. ``AIRFLOW_CONN_PAS_SLACK='{"conn_type":
  "slackwebhook", "password": "https://hooks.example/services/T/B/X"}'``;
- mail: Airflow connection ``pas_smtp`` (type ``smtp``: host, port, login, password; extras
  ``from_email``, ``disable_tls``, ``disable_ssl``) to ``to`` (default ``PAS_ALERT_EMAIL``).

A target that fails to answer is logged and the others still get the message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from html import escape
from typing import Any

from airflow.providers.common.compat.notifier import BaseNotifier
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException


class PASFailureNotifier(BaseNotifier):
    template_fields: Sequence[str] = ("to",)

    def __init__(
        self,
        *,
        slack_webhook_conn_id: str | None = "pas_slack",
        smtp_conn_id: str | None = "pas_smtp",
        to: str | list[str] | None = None,
    ) -> None:
        super().__init__()
        self.slack_webhook_conn_id = slack_webhook_conn_id
        self.smtp_conn_id = smtp_conn_id
        self.to = to

    def notify(self, context: Any) -> None:
        ti = context["ti"]
        exception = context.get("exception")
        subject = f"PAS: {ti.dag_id}.{ti.task_id} failed"
        text = (
            f"{subject} (run {context.get('run_id')}, try {ti.try_number}): "
            f"{type(exception).__name__ if exception else 'failed'}: {exception}"
        )
        if self._configured(self.slack_webhook_conn_id):
            self._send(self._to_webhook, text)
        recipients = self.to or os.environ.get("PAS_ALERT_EMAIL")
        if recipients and self._configured(self.smtp_conn_id):
            self._send(self._by_mail, recipients, subject, text)

    def _configured(self, conn_id: str | None) -> bool:
        if not conn_id:
            return False
        try:
            BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            self.log.info("no Airflow connection %r: not notifying there", conn_id)
            return False
        return True

    def _send(self, how: Any, *args: Any) -> None:
        try:
            how(*args)
        except Exception:
            self.log.exception("could not send a failure notification (%s)", how.__name__)

    def _to_webhook(self, text: str) -> None:
        from airflow.providers.slack.hooks.slack_webhook import (  # noqa: PLC0415
            SlackWebhookHook,
        )

        SlackWebhookHook(slack_webhook_conn_id=self.slack_webhook_conn_id).send_text(text)

    def _by_mail(self, to: str | list[str], subject: str, text: str) -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook  # noqa: PLC0415

        with SmtpHook(smtp_conn_id=self.smtp_conn_id) as smtp:
            smtp.send_email_smtp(to=to, subject=subject, html_content=f"<pre>{escape(text)}</pre>")
