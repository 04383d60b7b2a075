"""What a consumer group has committed, read through the admin API (joining no group)."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.polling import poll_async


async def committed_offset(
    bootstrap: str,
    group: str,
    tp: TopicPartition,
    *,
    until: Callable[[int | None], bool],
    timeout_s: float = 60,
) -> int | None:
    """The group's committed offset of ``tp``, asked until ``until`` accepts it (or the
    timeout); ``None`` while the group has committed nothing there."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:

        async def offset() -> int | None:
            found = (await admin.list_consumer_group_offsets(group, partitions=[tp])).get(tp)
            return None if found is None or found.offset < 0 else found.offset

        return await poll_async(offset, until=until, timeout_s=timeout_s, interval_s=0.2)
    finally:
        await admin.close()
