"""Supervisor: a supervisor agent routes among specialists with ``Command`` until it decides
the question is answered, then writes the brief.

Specialists: ``quant`` (price figures from the market data), ``risk`` (volatility and drawdown
flags) and ``analyst`` (the model's written view). The supervisor asks the model who works next,
from the specialists not yet heard plus ``FINISH`` once one has reported; each specialist
reports back to the supervisor. A grammar limits the model's answer to those choices, so the
loop ends after at most one turn per specialist.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict, cast

import msgspec
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from services.langgraph_runner.errors import InvalidWorkflowInput
from services.langgraph_runner.market_data import UnknownTicker
from services.langgraph_runner.workflows.base import (
    RunContext,
    WorkflowDeps,
    WorkflowSpec,
    parameters_of,
    prompt_of,
)

Specialist = Literal["quant", "risk", "analyst"]
SPECIALISTS: tuple[Specialist, ...] = ("quant", "risk", "analyst")
FINISH = "FINISH"
HIGH_VOLATILITY_PCT = 35.0
DEEP_DRAWDOWN_PCT = 8.0

PROMPTS = {
    "supervisor": "You supervise a trading desk team: quant gives price figures, risk flags "
    "volatility and drawdowns, analyst writes a view. Pick who works next, or FINISH when the "
    "question is answered. Answer in JSON.",
    "analyst": "You are a markets analyst. Answer the question in two or three plain "
    "sentences, using the figures given.",
}

Ticker = Annotated[str, msgspec.Meta(min_length=1, max_length=10, pattern=r"^[A-Za-z.]+$")]


class BriefInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    tickers: Annotated[list[Ticker], msgspec.Meta(min_length=1, max_length=3)]
    days: Annotated[int, msgspec.Meta(ge=3, le=250)] = 20


class BriefState(TypedDict, total=False):
    question: str
    tickers: list[str]
    days: int
    route: Annotated[list[str], operator.add]
    figures: dict[str, dict[str, Any]]
    flags: dict[str, list[str]]
    view: str
    brief: str


def _figures_text(state: BriefState) -> str:
    figures = state.get("figures") or {}
    return "; ".join(
        f"{t}: return {f['total_return_pct']:.2f}%, volatility "
        f"{f['annualized_volatility_pct']:.1f}%, max drawdown {f['max_drawdown_pct']:.2f}%"
        for t, f in figures.items()
    )


def build(deps: WorkflowDeps) -> StateGraph[BriefState, RunContext, Any, Any]:
    market = deps.market

    async def supervisor(
        state: BriefState, runtime: Runtime[RunContext]
    ) -> Command[Specialist | Literal["__end__"]]:
        heard = state.get("route", [])
        options: list[str] = [s for s in SPECIALISTS if s not in heard]
        if heard:
            options.append(FINISH)
        done = ", ".join(heard) or "nobody yet"
        choice = await deps.llm.choose(
            [
                ("system", prompt_of(runtime, PROMPTS, "supervisor")),
                (
                    "user",
                    f"Question: {state['question']}\nTickers: {', '.join(state['tickers'])}\n"
                    f"Already reported: {done}\nChoose one of: {', '.join(options)}",
                ),
            ],
            parameters_of(runtime),
            options,
        )
        if choice == FINISH:
            return Command(goto="__end__", update={"brief": _brief(state)})
        specialist = cast(Specialist, choice)
        return Command(goto=specialist, update={"route": [specialist]})

    def quant(state: BriefState) -> BriefState:
        return {
            "figures": {
                t: msgspec.to_builtins(market.metrics(t, state["days"])) for t in state["tickers"]
            }
        }

    def risk(state: BriefState) -> BriefState:
        flags: dict[str, list[str]] = {}
        for ticker in state["tickers"]:
            m = market.metrics(ticker, state["days"])
            found = []
            if m.annualized_volatility_pct > HIGH_VOLATILITY_PCT:
                found.append(f"volatility {m.annualized_volatility_pct:.1f}% above 35%")
            if m.max_drawdown_pct > DEEP_DRAWDOWN_PCT:
                found.append(f"drawdown {m.max_drawdown_pct:.2f}% deeper than 8%")
            flags[ticker] = found
        return {"flags": flags}

    async def analyst(state: BriefState, runtime: Runtime[RunContext]) -> BriefState:
        figures = _figures_text(state)
        view = await deps.llm.text(
            [
                ("system", prompt_of(runtime, PROMPTS, "analyst")),
                (
                    "user",
                    f"Question: {state['question']}\n"
                    + (f"Figures: {figures}" if figures else f"Tickers: {state['tickers']}"),
                ),
            ],
            parameters_of(runtime),
            max_tokens=96,
        )
        return {"view": view}

    graph = StateGraph(BriefState, context_schema=RunContext)
    graph.add_node(
        "supervisor", supervisor, retry_policy=deps.retry, destinations=(*SPECIALISTS, END)
    )
    graph.add_node("quant", quant)
    graph.add_node("risk", risk)
    graph.add_node("analyst", analyst, retry_policy=deps.retry)
    graph.add_edge(START, "supervisor")
    for specialist in SPECIALISTS:
        graph.add_edge(specialist, "supervisor")
    return graph


def _brief(state: BriefState) -> str:
    lines = [f"Question: {state['question']}"]
    if figures := _figures_text(state):
        lines.append(f"Figures ({state['days']} days): {figures}")
    if "flags" in state:
        flagged = {t: f for t, f in state["flags"].items() if f}
        lines.append(
            "Risk: " + ("; ".join(f"{t}: {', '.join(f)}" for t, f in flagged.items()) or "no flags")
        )
    if view := state.get("view"):
        lines.append(f"View: {view}")
    return "\n".join(lines)


def initial_state(brief: BriefInput, deps: WorkflowDeps) -> dict[str, Any]:
    tickers = list(dict.fromkeys(t.upper() for t in brief.tickers))
    for ticker in tickers:
        try:
            deps.market.last_close(ticker)
        except UnknownTicker as exc:
            raise InvalidWorkflowInput(f"input.tickers: {exc}") from exc
    if brief.days > deps.market.max_days:
        raise InvalidWorkflowInput(
            f"input.days: {brief.days} is more than the {deps.market.max_days} days held"
        )
    return {"question": brief.question, "tickers": tickers, "days": brief.days, "route": []}


def output(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "route": state.get("route", []),
        "figures": state.get("figures"),
        "flags": state.get("flags"),
        "view": state.get("view"),
        "brief": state.get("brief", ""),
    }


SPEC = WorkflowSpec(
    id="supervisor",
    title="Supervisor market brief",
    description="A supervisor routes among specialists (quant figures, risk flags, an "
    "analyst's view) with Command until it decides the question is answered, then writes the "
    "brief.",
    input_type=BriefInput,
    build=build,
    initial_state=initial_state,
    output=output,
    prompts=PROMPTS,
)
