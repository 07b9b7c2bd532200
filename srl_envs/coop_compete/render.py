"""Presentation of the commons game: state -> the prompt one agent sees (plain ASCII).

The prompt is all an LLM agent sees, so it states the rules briefly, the current stock,
the regrowth rule, a sustainable-harvest hint in plain numbers, the last rounds and the
others' messages, and ends with the answer format and an example (with ``safe_hint`` off:
no hint, and the format without an example number). It stays short so that
small (135M-parameter) models can follow it. The bots in :mod:`.bots` read it back, so
the line prefixes below (``Round``, ``Stock now:``, ``Safe total this round:``) are a
contract: change them together with the bots (and bump the env version).
"""

from __future__ import annotations

from srl_envs.coop_compete.core import Params, RoundRecord, State, safe_total_harvest

__all__ = ["HISTORY_ROUNDS", "Renderer", "agent_name"]

HISTORY_ROUNDS = 3  # how many past rounds a prompt shows


def agent_name(index: int) -> str:
    return f"player_{index}"


class Renderer:
    """Builds prompts; the parts that never change within a game are built once."""

    def __init__(self, params: Params, safe_hint: bool = True) -> None:
        self.params = params
        self.safe_hint = safe_hint
        p = params
        n = p.num_agents
        self._names = [agent_name(i) for i in range(n)]
        factor = f"{1.0 + p.regen_rate:g}"
        self._rules = (
            f"Rules: each round every fisher picks a harvest from 0 to {p.max_harvest}. "
            "If the requests add up to more than the stock, the stock is shared in "
            f"proportion to the requests. What is left is then multiplied by {factor} "
            f"(rounded down), up to the capacity of {p.capacity}. If less than "
            f"{p.collapse_threshold} is left, the lake collapses and the game ends for "
            "everyone. Your score is your own total harvest."
        )
        self._headers = [
            f"You are {name}, one of {n} fishers sharing a lake. Round " for name in self._names
        ]
        # With the hint, the example answer is the safe per-head share; without it the
        # prompt shows the format only (any number there would be a hint of its own).
        number = "<number>" if safe_hint else f"<number from 0 to {p.max_harvest}>"
        ending = " Example:\nHARVEST: " if safe_hint else ""
        if p.message_max_chars > 0:
            self._answer = (
                f'Reply with a line "HARVEST: {number}" and, if you like, a line '
                f'"MESSAGE: <note to the others, at most {p.message_max_chars} characters>".'
                + ending
            )
        else:
            self._answer = f'Reply with one line "HARVEST: {number}".' + ending
        self._safe_cache: dict[int, int] = {}

    def safe_total(self, stock: int) -> int:
        safe = self._safe_cache.get(stock)
        if safe is None:
            safe = self._safe_cache[stock] = safe_total_harvest(self.params, stock)
        return safe

    def prompt(self, state: State, index: int) -> str:
        """The full prompt of agent ``index`` in ``state``."""
        p = self.params
        n = p.num_agents
        done = state.done(p)
        shown_round = state.round if done else state.round + 1
        lines = [
            f"{self._headers[index]}{shown_round} of {p.episode_length}.",
            self._rules,
            f"Stock now: {state.stock} (capacity {p.capacity}).",
        ]
        if not done and self.safe_hint:
            safe = self.safe_total(state.stock)
            each = safe // n
            lines.append(
                f"Safe total this round: {safe} (about {each} each). Taking more shrinks the stock."
            )
        if state.history:
            lines.append("Last rounds:")
            lines.extend(self._history_line(r, index) for r in state.history[-HISTORY_ROUNDS:])
        if not done and p.message_max_chars > 0:
            said = [
                f'{self._names[j]}: "{m}"' for j, m in enumerate(state.messages) if m and j != index
            ]
            if said:
                lines.append("Messages from last round:")
                lines.extend(said)
        if done:
            if state.collapsed:
                lines.append("Game over: the lake collapsed.")
            else:
                lines.append(f"Game over: all {p.episode_length} rounds played.")
        elif not self.safe_hint:
            lines.append(self._answer)
        else:
            example = self._answer + str(each)
            if p.message_max_chars > 0:
                example += f"\nMESSAGE: let's each take {each}"
            lines.append(example)
        return "\n".join(lines)

    def _history_line(self, r: RoundRecord, index: int) -> str:
        names = self._names
        others = ", ".join(f"{names[j]} {h}" for j, h in enumerate(r.received) if j != index)
        rationed = (
            " Requests exceeded the stock: shared in proportion."
            if r.received != r.requested
            else ""
        )
        if r.collapsed:
            end = f"left {r.left}: collapsed."
        else:
            end = f"left {r.left}, regrew to {r.stock_after}."
        return (
            f"Round {r.round}: stock {r.stock_before}; you took {r.received[index]}; "
            f"{others}; total {r.total};{rationed} {end}"
        )

    def global_view(self, state: State) -> str:
        """A human-readable view of the whole game (``render_mode="ansi"``)."""
        p = self.params
        status = "collapsed" if state.collapsed else ("over" if state.done(p) else "running")
        lines = [
            f"Commons: round {state.round}/{p.episode_length}, stock {state.stock}/{p.capacity}, {status}"
        ]
        for r in state.history[-HISTORY_ROUNDS:]:
            asked = " ".join(f"{h}" for h in r.requested)
            got = " ".join(f"{h}" for h in r.received)
            lines.append(
                f"  round {r.round}: stock {r.stock_before} asked [{asked}] got [{got}] "
                f"left {r.left} -> {r.stock_after}{' COLLAPSED' if r.collapsed else ''}"
            )
        for j, m in enumerate(state.messages):
            if m:
                lines.append(f'  {self._names[j]}: "{m}"')
        return "\n".join(lines)
