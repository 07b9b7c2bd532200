"""Scripted players of the bridged PettingZoo games: they read the prompt, like an LLM.

* :class:`RandomLegal` (``"random"``): a uniformly random legal move, for any bridged game
  (PettingZoo's own random legal player, reading the prompt's ``Legal moves:`` line).
* One heuristic (``"heuristic"``) per named game: :class:`TicTacToeHeuristic` (win, else
  block, else centre, corner, side), :class:`ConnectFourHeuristic` (win, else block, else
  the most central column that does not hand the opponent a win), :class:`LeducHeuristic`
  (raise a pair or a King, call a Queen, check or fold a Jack), :class:`RPSHeuristic` (play
  what beats the opponent's last move).
"""

from __future__ import annotations

import re

from srl_envs.bridge.env import ACTION_KEYWORD
from srl_envs.policies import ScriptedPolicy

__all__ = [
    "BOTS",
    "ConnectFourHeuristic",
    "LeducHeuristic",
    "RPSHeuristic",
    "RandomLegal",
    "TicTacToeHeuristic",
    "read_legal",
]

_LEGAL_RE = re.compile(r"^Legal moves: (.*)$", re.MULTILINE)
_NUMBERED_RE = re.compile(r"\d+\) (\S+)")


def read_legal(observation: str) -> list[str]:
    """The legal move names of a bridge prompt (empty when the agent is not to move)."""
    m = _LEGAL_RE.search(observation)
    if m is None:
        return []
    listed = m.group(1)
    numbered = _NUMBERED_RE.findall(listed)
    return numbered if numbered else [s.strip() for s in listed.split(",") if s.strip()]


def _answer(move: str) -> str:
    return f"{ACTION_KEYWORD} {move}"


def _my_mark(observation: str) -> str:
    m = re.search(r"you are \S+ \(([XO])\)", observation)
    return m.group(1) if m else "X"


class RandomLegal(ScriptedPolicy):
    """A uniformly random legal move."""

    name = "random"

    def act(self, observation: str) -> str:
        legal = read_legal(observation)
        return _answer(str(self.rng.choice(legal))) if legal else ""


class TicTacToeHeuristic(ScriptedPolicy):
    """Win if a move wins, else block the opponent's win, else the centre, a corner, a side
    (ties broken at random)."""

    name = "heuristic"
    _LINES = (
        (0, 1, 2),
        (3, 4, 5),
        (6, 7, 8),
        (0, 3, 6),
        (1, 4, 7),
        (2, 5, 8),
        (0, 4, 8),
        (2, 4, 6),
    )

    def act(self, observation: str) -> str:
        legal = read_legal(observation)
        if not legal:
            return ""
        rows = re.findall(r"^ (\S) \| (\S) \| (\S)$", observation, re.MULTILINE)
        cells = [c for row in rows[:3] for c in row]  # reading order
        me = _my_mark(observation)
        them = "O" if me == "X" else "X"
        free = [i for i in range(9) if str(i + 1) in legal]
        for mark in (me, them):  # win, then block
            for i in self.rng.permutation(free):
                if any(
                    i in line and all(cells[j] == mark for j in line if j != i)
                    for line in self._LINES
                ):
                    return _answer(str(int(i) + 1))
        for group in ((4,), (0, 2, 6, 8), (1, 3, 5, 7)):
            options = [i for i in group if i in free]
            if options:
                return _answer(str(int(self.rng.choice(options)) + 1))
        return _answer(str(self.rng.choice(legal)))


class ConnectFourHeuristic(ScriptedPolicy):
    """Win if a drop wins, else block the opponent's winning drop, else the most central
    column whose drop does not let the opponent win on top of it."""

    name = "heuristic"

    def act(self, observation: str) -> str:
        legal = read_legal(observation)
        if not legal:
            return ""
        rows = re.findall(r"^ ([XO.](?: [XO.]){6})$", observation, re.MULTILINE)
        board = [row.split() for row in rows[:6]]
        if len(board) != 6:
            return _answer(str(self.rng.choice(legal)))
        me = _my_mark(observation)
        them = "O" if me == "X" else "X"
        cols = [int(c) - 1 for c in legal]
        for mark in (me, them):
            for c in cols:
                r = _drop_row(board, c)
                if r is not None and _wins(board, r, c, mark):
                    return _answer(str(c + 1))
        safe = []
        for c in cols:
            r = _drop_row(board, c)
            board[r][c] = me
            above = _drop_row(board, c)
            gives = above is not None and _wins(board, above, c, them)
            board[r][c] = "."
            if not gives:
                safe.append(c)
        options = safe or cols
        best = min(abs(c - 3) for c in options)
        central = [c for c in options if abs(c - 3) == best]
        return _answer(str(int(self.rng.choice(central)) + 1))


def _drop_row(board: list[list[str]], c: int) -> int | None:
    for r in range(5, -1, -1):
        if board[r][c] == ".":
            return r
    return None


def _wins(board: list[list[str]], r: int, c: int, mark: str) -> bool:
    """Whether ``mark`` at (r, c) makes four in a row (the cell itself assumed empty)."""
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        count = 1
        for sign in (1, -1):
            rr, cc = r + sign * dr, c + sign * dc
            while 0 <= rr < 6 and 0 <= cc < 7 and board[rr][cc] == mark:
                count += 1
                rr, cc = rr + sign * dr, cc + sign * dc
        if count >= 4:
            return True
    return False


class LeducHeuristic(ScriptedPolicy):
    """Raise with a pair or a King, call (or check) with a Queen, check or fold a Jack."""

    name = "heuristic"

    def act(self, observation: str) -> str:
        legal = read_legal(observation)
        if not legal:
            return ""
        card = re.search(r"^Your card: (\w+)", observation, re.MULTILINE)
        public = re.search(r"^Public card: (\w+)", observation, re.MULTILINE)
        mine = card.group(1) if card else ""
        pair = public is not None and public.group(1) == mine
        if pair or mine == "King":
            prefs = ("raise", "call", "check")
        elif mine == "Queen":
            prefs = ("check", "call")
        else:
            prefs = ("check", "fold")
        for move in prefs:
            if move in legal:
                return _answer(move)
        return _answer(str(self.rng.choice(legal)))


class RPSHeuristic(ScriptedPolicy):
    """Play what beats the opponent's last move (random in the first round)."""

    name = "heuristic"
    _BEATS = {"rock": "paper", "paper": "scissors", "scissors": "rock"}

    def act(self, observation: str) -> str:
        legal = read_legal(observation)
        if not legal:
            return ""
        last = re.findall(r"^  round \d+: \w+ vs (\w+)$", observation, re.MULTILINE)
        if last and self._BEATS.get(last[-1]) in legal:
            return _answer(self._BEATS[last[-1]])
        return _answer(str(self.rng.choice(legal)))


BOTS: dict[str, dict[str, type[ScriptedPolicy]]] = {
    "tictactoe_v3": {"random": RandomLegal, "heuristic": TicTacToeHeuristic},
    "connect_four_v3": {"random": RandomLegal, "heuristic": ConnectFourHeuristic},
    "leduc_holdem_v4": {"random": RandomLegal, "heuristic": LeducHeuristic},
    "rps_v2": {"random": RandomLegal, "heuristic": RPSHeuristic},
}
