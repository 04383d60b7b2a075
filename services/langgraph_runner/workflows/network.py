"""Network: a pre-trade check where agents hand off to each other by conditional routing, with
no central supervisor, and a person approves what breaches a limit.

- ``pricing`` prices the trade from the last close (notional);
- ``risk`` needs a price, else hands off to ``pricing``; computes the one-day 99% parametric
  VaR of the position from the daily volatility and checks it against the limit;
- ``compliance`` needs price and risk, else hands off to whichever is missing; checks the
  notional and VaR limits;
- each agent, its own work done, hands off to the first agent whose work is missing; when all
  is known, a breach goes to ``human_review`` (an ``interrupt``: the run pauses until
  ``POST /runs/{id}/resume`` answers ``{"approved": bool, "reviewer": str, "comment": str}``),
  and then, or without a breach at once, to ``desk_note``, where the model writes the note.

The entry agent is ``compliance`` unless the input names another, so a default run shows
hand-offs both ways: compliance -> pricing -> risk -> compliance -> desk_note.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

import msgspec
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from libs.common.schemas.json_schema import inline_schema
from services.langgraph_runner.errors import InvalidWorkflowInput
from services.langgraph_runner.market_data import Z_99, MarketData, UnknownTicker
from services.langgraph_runner.workflows.base import (
    RunContext,
    WorkflowDeps,
    WorkflowSpec,
    parameters_of,
    prompt_of,
)

Agent = Literal["pricing", "risk", "compliance"]
AGENTS: tuple[Agent, ...] = ("pricing", "risk", "compliance")
WORK_OF: dict[Agent, str] = {"pricing": "price", "risk": "risk", "compliance": "compliance"}
"""The state key each agent's work lands in."""
NEXT_NODES = (*AGENTS, "human_review", "desk_note")

PROMPTS = {
    "desk_note": "You write desk notes for a trading desk. In one or two plain sentences, state "
    "the trade, its risk and the decision.",
}


class TradeInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    ticker: Annotated[str, msgspec.Meta(min_length=1, max_length=10, pattern=r"^[A-Za-z.]+$")]
    side: Literal["buy", "sell"]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
    desk: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "equities"
    notional_limit: Annotated[float, msgspec.Meta(gt=0)] = 5_000_000.0
    var_limit: Annotated[float, msgspec.Meta(gt=0)] = 250_000.0
    days: Annotated[int, msgspec.Meta(ge=3, le=250)] = 20
    """Closes the daily volatility is measured over."""
    first_agent: Agent = "compliance"


class ReviewDecision(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    approved: bool
    reviewer: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    comment: Annotated[str, msgspec.Meta(max_length=500)] = ""


REVIEW_SCHEMA = inline_schema(ReviewDecision)


class TradeState(TypedDict, total=False):
    trade: dict[str, Any]
    price: dict[str, Any]
    risk: dict[str, Any]
    compliance: dict[str, Any]
    review: dict[str, Any]
    handoffs: Annotated[list[str], operator.add]
    next_agent: str
    decision: str
    note: str


def _next(state: TradeState) -> str:
    """Who takes over once the current agent's work is in the state."""
    for agent in AGENTS:
        if WORK_OF[agent] not in state:
            return agent
    if state["compliance"]["breaches"] and "review" not in state:
        return "human_review"
    return "desk_note"


class TradeDesk:
    """The deterministic agents, over the market data."""

    def __init__(self, market: MarketData) -> None:
        self._market = market

    def pricing(self, state: TradeState) -> TradeState:
        trade = state["trade"]
        last = self._market.last_close(trade["ticker"])
        price = {
            "close": last.close,
            "date": last.date.isoformat(),
            "notional": round(last.close * trade["quantity"], 2),
        }
        return {
            "price": price,
            "handoffs": ["pricing"],
            "next_agent": _next({**state, "price": price}),
        }

    def risk(self, state: TradeState) -> TradeState:
        if "price" not in state:
            return {"handoffs": ["risk"], "next_agent": "pricing"}
        trade = state["trade"]
        daily_vol = self._market.daily_volatility(trade["ticker"], trade["days"])
        var_99 = round(state["price"]["notional"] * daily_vol * Z_99, 2)
        assessed = {
            "daily_volatility": daily_vol,
            "var_99_1d": var_99,
            "var_limit": trade["var_limit"],
        }
        return {
            "risk": assessed,
            "handoffs": ["risk"],
            "next_agent": _next({**state, "risk": assessed}),
        }

    @staticmethod
    def compliance(state: TradeState) -> TradeState:
        for needed in ("price", "risk"):
            if needed not in state:
                return {
                    "handoffs": ["compliance"],
                    "next_agent": "pricing" if needed == "price" else "risk",
                }
        trade = state["trade"]
        breaches = []
        notional = state["price"]["notional"]
        if notional > trade["notional_limit"]:
            breaches.append(
                f"notional {notional:,.2f} above the limit of {trade['notional_limit']:,.2f}"
            )
        var_99 = state["risk"]["var_99_1d"]
        if var_99 > trade["var_limit"]:
            breaches.append(
                f"1-day 99% VaR {var_99:,.2f} above the limit of {trade['var_limit']:,.2f}"
            )
        checked = {"breaches": breaches}
        return {
            "compliance": checked,
            "handoffs": ["compliance"],
            "next_agent": _next({**state, "compliance": checked}),
        }


def human_review(state: TradeState) -> TradeState:
    problem = None
    while True:
        # Each invalid answer asks again (a new interrupt), saying what was wrong with it.
        answer = interrupt(
            {
                "question": "Approve this trade despite the limit breaches?",
                "trade": state["trade"],
                "breaches": state["compliance"]["breaches"],
                "problem": problem,
            },
            response_schema=REVIEW_SCHEMA,
        )
        try:
            decision = msgspec.convert(answer, ReviewDecision)
        except msgspec.ValidationError as exc:
            problem = f"the answer {answer!r} is not a review decision: {exc}"
            continue
        return {
            "review": msgspec.to_builtins(decision),
            "handoffs": ["human_review"],
            "next_agent": "desk_note",
        }


def hand_off(state: TradeState) -> str:
    return state["next_agent"]


def build(deps: WorkflowDeps) -> StateGraph[TradeState, RunContext, Any, Any]:
    desk = TradeDesk(deps.market)

    async def desk_note(state: TradeState, runtime: Runtime[RunContext]) -> TradeState:
        trade, price, assessed = state["trade"], state["price"], state["risk"]
        breaches = state["compliance"]["breaches"]
        review = state.get("review")
        if review is None:
            decision = "auto_approved"
        else:
            decision = "approved" if review["approved"] else "rejected"
        facts = (
            f"{trade['side']} {trade['quantity']} {trade['ticker']} at {price['close']} "
            f"(notional {price['notional']:,.2f}) for desk {trade['desk']}; one-day 99% VaR "
            f"{assessed['var_99_1d']:,.2f}; breaches: {'; '.join(breaches) or 'none'}; "
            f"decision: {decision}" + (f" by {review['reviewer']}" if review else "")
        )
        note = await deps.llm.text(
            [("system", prompt_of(runtime, PROMPTS, "desk_note")), ("user", facts)],
            parameters_of(runtime),
            max_tokens=80,
        )
        return {"decision": decision, "note": note, "handoffs": ["desk_note"]}

    graph = StateGraph(TradeState, context_schema=RunContext)
    graph.add_node("pricing", desk.pricing)
    graph.add_node("risk", desk.risk)
    graph.add_node("compliance", desk.compliance)
    graph.add_node("human_review", human_review)
    graph.add_node("desk_note", desk_note, retry_policy=deps.retry)
    graph.add_conditional_edges(START, lambda state: state["trade"]["first_agent"], list(AGENTS))
    for agent in AGENTS:
        graph.add_conditional_edges(agent, hand_off, [n for n in NEXT_NODES if n != agent])
    graph.add_edge("human_review", "desk_note")
    graph.add_edge("desk_note", END)
    return graph


def initial_state(trade: TradeInput, deps: WorkflowDeps) -> dict[str, Any]:
    ticker = trade.ticker.upper()
    try:
        deps.market.last_close(ticker)
    except UnknownTicker as exc:
        raise InvalidWorkflowInput(f"input.ticker: {exc}") from exc
    if trade.days > deps.market.max_days:
        raise InvalidWorkflowInput(
            f"input.days: {trade.days} is more than the {deps.market.max_days} days held"
        )
    return {"trade": {**msgspec.to_builtins(trade), "ticker": ticker}, "handoffs": []}


def output(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "decision": state.get("decision"),
        "note": state.get("note"),
        "handoffs": state.get("handoffs", []),
        "price": state.get("price"),
        "risk": state.get("risk"),
        "breaches": state.get("compliance", {}).get("breaches", []),
        "review": state.get("review"),
    }


SPEC = WorkflowSpec(
    id="network",
    title="Pre-trade check network",
    description="Pricing, risk and compliance agents hand off to each other by conditional "
    "routing until the trade is priced, its VaR known and its limits checked; a breach waits "
    "for a person's approval (interrupt), then the model writes the desk note.",
    input_type=TradeInput,
    build=build,
    initial_state=initial_state,
    output=output,
    prompts=PROMPTS,
)
