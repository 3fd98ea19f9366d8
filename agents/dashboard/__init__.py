"""Page-level reads of the operator's dashboard, one module per screen, so that the views
stay thin: `overview_page`, `list_page`, `agent_page`, `history_page` (a key's versions and diffs),
`replay_page` and `audit_page`, with shared `formatting` (JSON, durations, diffs) and `charts`.

Every function here runs a fixed number of queries whatever the number of rows (agents,
steps, keys, versions): lists are sliced or paginated, and related rows come from one
query each. Nothing here writes; actions go through `statehouse_agents.store.resume`.
"""

from statehouse_agents.dashboard.agent_page import agent_detail, agent_for_page, agent_live
from statehouse_agents.dashboard.audit_page import AuditPage, audit_log
from statehouse_agents.dashboard.cancel_page import (
    MAX_CANCEL_MATCHING,
    CancelMatchingPage,
    cancel_matching_preview,
    cancel_matching_selection,
    selected_pks,
)
from statehouse_agents.dashboard.formatting import (
    INLINE_FULL_LIMIT,
    ShownValue,
    diff_lines,
    duration_text,
    pretty_json,
)
from statehouse_agents.dashboard.history_page import KeyHistory, key_history
from statehouse_agents.dashboard.list_page import (
    PAGE_SIZE,
    TAB_ORDER,
    AgentListPage,
    Cursor,
    agent_list,
    checked_ids,
)
from statehouse_agents.dashboard.overview_page import overview
from statehouse_agents.dashboard.replay_page import REPLAY_PER_PAGE, ReplayPage, replay
from statehouse_agents.dashboard.storage_page import storage

__all__ = [
    "INLINE_FULL_LIMIT",
    "MAX_CANCEL_MATCHING",
    "PAGE_SIZE",
    "REPLAY_PER_PAGE",
    "TAB_ORDER",
    "AgentListPage",
    "AuditPage",
    "CancelMatchingPage",
    "Cursor",
    "KeyHistory",
    "ReplayPage",
    "ShownValue",
    "agent_detail",
    "agent_for_page",
    "agent_list",
    "agent_live",
    "audit_log",
    "cancel_matching_preview",
    "cancel_matching_selection",
    "checked_ids",
    "diff_lines",
    "duration_text",
    "key_history",
    "overview",
    "pretty_json",
    "replay",
    "selected_pks",
    "storage",
]
