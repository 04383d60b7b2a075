"""``pas`` finds the topics where the services are: one environment, read by the command and by
each service's own settings, names the same topics to both, whichever of a service's names
(its own prefixed one, the spec's shared one) the environment uses."""

from __future__ import annotations

import pytest

from libs.cli.settings import CLISettings
from libs.common.settings import load_settings
from services.analytics.settings import AnalyticsSettings
from services.kafka_llm_processor.settings import ProcessorSettings
from services.langgraph_runner.settings import RunnerSettings
from services.versioning.settings import VersioningSettings

# Each environment, and the topics of it the command must use.
ENVIRONMENTS: dict[str, tuple[dict[str, str], set[str]]] = {
    "defaults": ({}, set()),
    "shared names": (
        {"INPUT_TOPIC": "in-a", "OUTPUT_TOPIC": "out-a", "DLQ_TOPIC": "dlq-a"},
        {"in-a", "out-a", "dlq-a"},
    ),
    "the processor's own names": (
        {
            "PROCESSOR_INPUT_TOPIC": "in-b",
            "PROCESSOR_OUTPUT_TOPIC": "out-b",
            "PROCESSOR_DLQ_TOPIC": "dlq-b",
        },
        {"in-b", "out-b", "dlq-b"},
    ),
    "both, the processor's own first": (
        {
            "INPUT_TOPIC": "in-a",
            "PROCESSOR_INPUT_TOPIC": "in-b",
            "DLQ_TOPIC": "dlq-a",
            "PROCESSOR_DLQ_TOPIC": "dlq-b",
        },
        {"in-b", "dlq-b"},
    ),
    "every other service's": (
        {
            "RUNNER_EVENTS_TOPIC": "events-c",
            "RUNNER_RESULTS_TOPIC": "results-c",
            "RUNNER_DLQ_TOPIC": "runner-dlq-c",
            "ANALYTICS_DLQ_TOPIC": "analytics-dlq-c",
            "VERSIONING_DLQ_TOPIC": "versioning-dlq-c",
        },
        {"events-c", "results-c", "runner-dlq-c", "analytics-dlq-c", "versioning-dlq-c"},
    ),
}


@pytest.mark.parametrize(("environ", "used"), ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
def test_the_command_reads_and_writes_the_topics_each_service_uses(
    environ: dict[str, str], used: set[str]
) -> None:
    cli = load_settings(CLISettings, environ, env_file="")
    processor = load_settings(ProcessorSettings, environ, env_file="")
    runner = load_settings(RunnerSettings, environ, env_file="")
    analytics = load_settings(AnalyticsSettings, environ, env_file="")
    versioning = load_settings(VersioningSettings, environ, env_file="")

    assert (cli.processor_input_topic, cli.processor_output_topic, cli.processor_dlq_topic) == (
        processor.input_topic,
        processor.output_topic,
        processor.dlq_topic,
    )
    assert (cli.runner_events_topic, cli.runner_results_topic) == (
        runner.events_topic,
        runner.results_topic,
    )
    assert cli.dead_letter_queues() == {
        processor.dlq_topic: "kafka_llm_processor",
        runner.dlq_topic: "langgraph_runner",
        analytics.dlq_topic: "analytics",
        versioning.dlq_topic: "versioning",
    }
    assert used <= {
        *cli.dead_letter_queues(),
        cli.processor_input_topic,
        cli.processor_output_topic,
        cli.runner_events_topic,
        cli.runner_results_topic,
    }
