"""Local dispatch: the availability index, a circuit breaker per picker, assignment with explanations,
escalation of work that does not move, per-zone strategies and a live A/B split.

Pure domain logic: plain views in, decisions out, time passed in by the caller. See `engine` for the
rules and `index` for the index formula.
"""

from gateway.domain.dispatch.breaker import Breaker
from gateway.domain.dispatch.engine import DispatchEngine, DispatchError, TaskStatus
from gateway.domain.dispatch.escalation import EscalationSchedule, LearnedThresholds, ScheduleEntry
from gateway.domain.dispatch.index import IndexBook, IndexSample, IntervalStats, compute_index
from gateway.domain.dispatch.settings import DispatchSettings
from gateway.domain.dispatch.strategy import ABSplit, StrategyTable, bucket
from gateway.domain.dispatch.types import (
    CLOSED,
    HALF_OPEN,
    HEALTH,
    OPENED,
    ROUND_ROBIN,
    Assign,
    BreakerChange,
    Candidate,
    Choice,
    Decision,
    Escalate,
    PickerStatus,
    PickerView,
    Reassign,
    Requeue,
    StrategyFigures,
    TaskView,
    task_view,
)

__all__ = [
    "CLOSED", "HALF_OPEN", "HEALTH", "OPENED", "ROUND_ROBIN", "ABSplit", "Assign", "Breaker", "BreakerChange",
    "Candidate", "Choice", "Decision", "DispatchEngine", "DispatchError", "DispatchSettings", "Escalate",
    "EscalationSchedule", "IndexBook", "IndexSample", "IntervalStats", "LearnedThresholds", "PickerStatus",
    "PickerView", "Reassign", "Requeue", "ScheduleEntry", "StrategyFigures", "StrategyTable", "TaskStatus",
    "TaskView", "bucket", "compute_index", "task_view",
]
