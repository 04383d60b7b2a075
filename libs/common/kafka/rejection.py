"""Why a consumer dead-letters a record, said once for every PAS consumer: a ``Rejection`` is
what its letter says (``kind``, ``reason``, whether anything of the record could be read), and
an ``Unreadable`` (``unreadable.py``) becomes one here, the same way for each of them."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import ConsumerRecord

from libs.common.kafka.records import dead_letter
from libs.common.kafka.unreadable import Unreadable
from libs.common.schemas.documents import DeadLetter


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record goes to its dead letter."""

    kind: str
    """The letter's ``error_type`` (a consumer's metrics count letters by it)."""
    reason: str
    original_known: bool = True
    """False for a record of which nothing could be read (in a corrupt batch)."""

    @classmethod
    def of_unreadable(cls, item: Unreadable) -> Rejection:
        """A record aiokafka could not build: its letter says why, and holds what of it was
        read (nothing when it was not ``recovered``)."""
        return cls(item.error_type, item.reason, original_known=item.recovered)

    def letter(self, record: ConsumerRecord[bytes, bytes], *, attempts: int) -> DeadLetter:
        """The dead letter of ``record``, rejected for this after ``attempts`` tries of its work
        (0: refused before any, see ``DeadLetter.attempts``)."""
        return dead_letter(
            record,
            error=self.reason,
            error_type=self.kind,
            attempts=attempts,
            original_known=self.original_known,
        )
