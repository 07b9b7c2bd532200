"""How a PettingZoo game reads as text: its rules, its action names and its state.

A :class:`GameText` turns what one agent observes into the state part of its prompt and names
the game's ``Discrete`` actions. There is one per named game (board grids with coordinates,
cards and chips for poker, the last moves for rock-paper-scissors) and a generic one
(:class:`GenericText`) for any other PettingZoo game: its ``ansi`` render when it has one,
else the observation vector, with actions named by their numbers. The bridge
(:mod:`srl_envs.bridge.env`) adds the header, the legal actions and the answer format.

Renderers read only what the agent may see: its own observation (and, for the board games,
nothing else, since both players see the whole board), the bridge's record of the moves so
far and whose turn it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "GAMES",
    "ConnectFourText",
    "GameText",
    "GameView",
    "GenericText",
    "LeducText",
    "RPSText",
    "TicTacToeText",
    "game_text_for",
]

MAX_VECTOR_CHARS = 1500  # a generic observation vector longer than this is cut


@dataclass
class GameView:
    """What one agent sees now, handed to :meth:`GameText.render_state`.

    ``seat`` is the agent's index in the game's own turn order (0 moves first in the board
    games); ``observation`` its PettingZoo observation (the ``"observation"`` part of a
    masked dict); ``history``: every move so far, ``(seat, action_id)`` in order (in a
    simultaneous game, the moves of one round share their round number in ``rounds``).
    """

    agent: str
    seat: int
    num_seats: int
    observation: Any
    to_move: bool
    history: list[tuple[int, int]] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    ansi: str | None = None
    round: int = 0
    scores: list[float] = field(default_factory=list)


class GameText(ABC):
    """The text of one game. Subclasses set the class attributes and ``render_state``."""

    #: The PettingZoo module name (``env.metadata["name"]``) this text is for.
    pz_name: str = ""
    title: str = "a PettingZoo game"
    rules: str = ""
    #: Names of the seats in turn order (``X``/``O``), or empty.
    seat_names: tuple[str, ...] = ()
    #: Whether seat 0 always moves first (board games); poker deals who starts.
    fixed_turn_order: bool = False

    def action_names(self, n: int) -> list[str]:
        """The name of every action id ``0..n-1``; names are unique, lower case, without
        spaces. Numeric names (board cells, columns) are read as numbers too."""
        return [str(i) for i in range(n)]

    def numbered(self, names: list[str]) -> bool:
        """Whether the prompt numbers the legal actions (``1) call 2) raise``): when names are
        words, a number answer picks the action of that number in the list."""
        return not all(name.isdigit() for name in names)

    @abstractmethod
    def render_state(self, view: GameView) -> str:
        """The state as this agent sees it (a few lines)."""

    def seat_label(self, seat: int) -> str:
        return f" ({self.seat_names[seat]})" if seat < len(self.seat_names) else ""


# --------------------------------------------------------------------- tic-tac-toe
class TicTacToeText(GameText):
    """Cells are numbered 1-9 in reading order (``1 2 3`` on the top row); PettingZoo numbers
    them by column (action ``3`` is the top middle cell), the bridge maps the two."""

    pz_name = "tictactoe_v3"
    title = "Tic-tac-toe"
    rules = (
        "Two players take turns writing their mark (X moves first, then O) in an empty cell "
        "of a 3x3 board. Three of your marks in a row, a column or a diagonal wins; a full "
        "board without a line is a draw."
    )
    seat_names = ("X", "O")
    fixed_turn_order = True

    def action_names(self, n: int) -> list[str]:
        # PettingZoo cell i is row i % 3, column i // 3; its name is the reading-order number
        return [str((i % 3) * 3 + i // 3 + 1) for i in range(n)]

    def render_state(self, view: GameView) -> str:
        planes = np.asarray(view.observation).reshape(9, 2)  # index = PettingZoo cell id
        mine, theirs = self.seat_names[view.seat], self.seat_names[1 - view.seat]
        names = self.action_names(9)
        cells = [[""] * 3 for _ in range(3)]
        for i in range(9):
            mark = mine if planes[i, 0] else theirs if planes[i, 1] else names[i]
            cells[i % 3][i // 3] = mark
        rows = [" " + " | ".join(row) for row in cells]
        return "Board (free cells show their number):\n" + "\n---+---+---\n".join(rows)


# --------------------------------------------------------------------- connect four
class ConnectFourText(GameText):
    """Columns are numbered 1-7 from the left; PettingZoo's action ``c`` drops in column
    ``c + 1``."""

    pz_name = "connect_four_v3"
    title = "Connect Four"
    rules = (
        "Two players take turns dropping a disc into one of 7 columns of a 6-row board; it "
        "falls to the lowest free row. Four of your discs in a row (across, down or "
        "diagonal) wins; a full board is a draw."
    )
    seat_names = ("X", "O")
    fixed_turn_order = True

    def action_names(self, n: int) -> list[str]:
        return [str(i + 1) for i in range(n)]

    def render_state(self, view: GameView) -> str:
        board = np.asarray(view.observation)  # (6, 7, 2), row 0 on top, plane 0 mine
        mine, theirs = self.seat_names[view.seat], self.seat_names[1 - view.seat]
        lines = ["Board (row 1 is the top; '.' is empty):", " " + " ".join("1234567")]
        for r in range(6):
            lines.append(
                " "
                + " ".join(
                    mine if board[r, c, 0] else theirs if board[r, c, 1] else "." for c in range(7)
                )
            )
        return "\n".join(lines)


# --------------------------------------------------------------------- Leduc hold'em
class LeducText(GameText):
    """Cards from the observation vector (hand, public card) and the chips each player has
    put in the pot."""

    pz_name = "leduc_holdem_v4"
    title = "Leduc hold'em"
    rules = (
        "Poker with a six-card deck (two each of Jack, Queen, King). Each player holds one "
        "private card; after a betting round one public card is shown, then a second betting "
        "round. A pair with the public card wins, else the higher card; folding loses the "
        "chips you put in. At most two raises per round."
    )
    _CARDS = ("Jack", "Queen", "King")
    _ACTIONS = ("call", "raise", "fold", "check")

    def action_names(self, n: int) -> list[str]:
        return list(self._ACTIONS[:n]) + [str(i) for i in range(len(self._ACTIONS), n)]

    def render_state(self, view: GameView) -> str:
        obs = np.asarray(view.observation, dtype=float).reshape(-1)
        hand = [self._CARDS[i] for i in range(3) if obs[i] > 0]
        public = [self._CARDS[i] for i in range(3) if obs[3 + i] > 0]
        mine = int(np.argmax(obs[6:21])) if obs[6:21].any() else 0
        theirs = int(np.argmax(obs[21:36])) if obs[21:36].any() else 0
        return "\n".join(
            [
                f"Your card: {hand[0] if hand else 'none'}.",
                f"Public card: {public[0] if public else 'not shown yet'}.",
                f"Chips in the pot: yours {mine}, your opponent's {theirs}.",
            ]
        )


# --------------------------------------------------------------------- rock-paper-scissors
class RPSText(GameText):
    """The moves of the rounds so far (from the bridge's record) and the score."""

    pz_name = "rps_v2"
    title = "Rock-paper-scissors"
    _MOVES = ("rock", "paper", "scissors", "spock", "lizard")
    rules = (
        "Both players choose a move at the same time, every round. Rock beats scissors, "
        "scissors beats paper, paper beats rock. A win scores +1, a loss -1."
    )

    def action_names(self, n: int) -> list[str]:
        return list(self._MOVES[:n])

    def render_state(self, view: GameView) -> str:
        names = self._MOVES
        rounds: dict[int, dict[int, int]] = {}
        for (seat, action), r in zip(view.history, view.rounds):
            rounds.setdefault(r, {})[seat] = action
        lines = [f"Round {view.round + 1}."]
        recent = sorted(rounds)[-5:]
        if recent:
            lines.append("Last rounds (you vs opponent):")
            for r in recent:
                moves = rounds[r]
                other = next((a for s, a in moves.items() if s != view.seat), None)
                lines.append(
                    f"  round {r + 1}: {names[moves.get(view.seat, 0)]} vs "
                    f"{names[other] if other is not None else '?'}"
                )
        if view.scores:
            lines.append(f"Your score so far: {view.scores[view.seat]:+g}.")
        return "\n".join(lines)


# --------------------------------------------------------------------- any other game
class GenericText(GameText):
    """Any game: its ``ansi`` render if it has one, else its observation vector; actions are
    named by their numbers."""

    def __init__(self, name: str = "") -> None:
        self.pz_name = name
        self.title = f"the PettingZoo game {name}" if name else "a PettingZoo game"
        self.rules = "Choose one of the legal actions each time it is your turn."

    def render_state(self, view: GameView) -> str:
        if view.ansi:
            return "State:\n" + view.ansi.rstrip()
        obs = view.observation
        try:
            arr = np.asarray(obs)
            text = np.array2string(
                arr.reshape(-1) if arr.ndim > 1 else arr, separator=",", threshold=10**6
            )
        except Exception:  # an observation numpy cannot hold
            text = repr(obs)
        if len(text) > MAX_VECTOR_CHARS:
            text = text[:MAX_VECTOR_CHARS] + " ...(cut)"
        return f"Observation: {text}"


GAMES: dict[str, type[GameText]] = {
    cls.pz_name: cls for cls in (TicTacToeText, ConnectFourText, LeducText, RPSText)
}


def game_text_for(pz_name: str) -> GameText:
    """The text of the PettingZoo game ``pz_name`` (``env.metadata["name"]``): its own, or the
    generic one."""
    cls = GAMES.get(pz_name)
    return cls() if cls is not None else GenericText(pz_name)
