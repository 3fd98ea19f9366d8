"""Resuming the agents an operator checked, from the dashboard or the admin: how many
were queued, which an in-doubt `review` step held back, and how many were skipped
(`request_resumes` in agents/store/resume.py says why an agent is skipped)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from statehouse_agents.models import ResumeSource
from statehouse_agents.store.doubt import ReviewHold
from statehouse_agents.store.resume import request_resumes


@dataclass
class BulkResume:
    selected: int
    queued: int = 0
    needs_review: list[ReviewHold] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Not interrupted or failed any more, or a resume already requested."""
        return self.selected - self.queued - len(self.needs_review)


def resume_checked(agent_pks: Sequence[int], *, source: ResumeSource, actor: str) -> BulkResume:
    result = BulkResume(selected=len(agent_pks))
    result.queued = sum(
        request_resumes(
            agent_pks=agent_pks,
            source=source,
            requested_by=actor,
            needs_review=result.needs_review,
        )
    )
    return result
