"""TextArena's multi-player games in srl's text mode (``pip install textarena``).

TextArena games are text games already: a player reads the game's own prompt and answers in
the game's own format (``[4]``, ``[bet]``). :func:`textarena_env` makes one a PettingZoo
``ParallelEnv`` like the rest of srl, so the trainer and the evaluator play it::

    env = srl_envs.textarena_env("TicTacToe-v0")      # or srl_envs.make("srl/ta-tictactoe-v0")
    observations, infos = env.reset(seed=0)
    env.step({env.acting_agents[0]: "[4]"})

* Agents are ``player_0 ... player_{n-1}`` (TextArena's player ids); ``env.acting_agents`` is
  the player TextArena asks now; the others' answers are ignored and they see a short wait
  notice beside the last prompt they got.
* Invalid moves follow TextArena's own rules: the game tells the player why, and the same
  player answers again (``error_allowance`` times, then it loses). The bridge flags the turn
  (``infos[agent]["invalid_action"]``, the game's reason in ``invalid_reason``) and subtracts
  ``format_penalty``. An answer the game cannot even process (an exception inside TextArena)
  is flagged the same way and truncates the game, since its state is then unknown: nothing
  raises to the caller.
* Rewards: TextArena's at the end of the game (``+1``/``-1``/``0`` in most two-player games),
  for every player on the step that ends it.
* ``episode_length``: most answers per agent before the game is truncated (None: TextArena's
  own end). TextArena's games seed Python's global ``random``; the bridge keeps each env's
  generator state to itself, so seeded games replay exactly and nothing else is disturbed.

Registered ids (they need ``textarena``; a missing install fails with the command that adds
it): ``srl/ta-tictactoe-v0``, ``srl/ta-kuhn_poker-v0`` and ``srl/ta-prisoners_dilemma-v0``
(the iterated prisoner's dilemma, with a free chat turn before each decision: any text is a
valid chat message). Their scripted player ``random`` answers one of the bracketed moves the
prompt offers. Any other TextArena game plays through ``textarena_env("<id>")``; a game whose
prompt lists no bracketed moves (TextArena's connect four only gives an example) needs a
scripted player of its own to be an opponent.
"""

from __future__ import annotations

import random
import re
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from srl_envs.base import MAX_ACTION_CHARS, MAX_OBS_CHARS, TEXT_CHARSET, to_charset
from srl_envs.checks import check_float_range, check_int_range, episode_length_arg
from srl_envs.parsing import truncate_for_parsing
from srl_envs.policies import ScriptedPolicy

__all__ = ["TA_GAMES", "BracketedRandom", "TextArenaEnv", "textarena_env"]

# srl id -> (TextArena id, description)
TA_GAMES: dict[str, tuple[str, str]] = {
    "srl/ta-tictactoe-v0": ("TicTacToe-v0", "TextArena tic-tac-toe (2 players, answers like [4])."),
    "srl/ta-kuhn_poker-v0": ("KuhnPoker-v0", "TextArena Kuhn poker (2 players, 3 rounds)."),
    "srl/ta-prisoners_dilemma-v0": (
        "IteratedPrisonersDilemma-v0",
        "TextArena iterated prisoner's dilemma (2 players, a chat turn before each decision).",
    ),
}
_REASON_RE = re.compile(r"attempted an invalid move\. Reason: (.*?)(?: Please resubmit|$)", re.S)
_HEAD_CHARS = 3000  # a prompt over MAX_OBS_CHARS keeps its start (the rules) and its end


def _fit(text: str) -> str:
    text = to_charset(text)
    if len(text) <= MAX_OBS_CHARS:
        return text
    tail = MAX_OBS_CHARS - _HEAD_CHARS - 20
    return text[:_HEAD_CHARS] + "\n...(cut)...\n" + text[-tail:]


class TextArenaEnv(ParallelEnv):
    """A TextArena game as a PettingZoo ``ParallelEnv`` in srl's text mode (see the module
    docstring)."""

    metadata: dict[str, Any] = {"render_modes": ["human", "ansi"], "is_parallelizable": True}
    action_prefix: str | None = None  # the game's own answer format
    curriculum: Any = None
    teams: dict[str, str] | None = None

    def __init__(
        self,
        game: str | Any,
        *,
        num_players: int = 2,
        env_id: str | None = None,
        episode_length: int | None = None,
        max_cycles: int | None = None,
        format_penalty: float = 0.1,
        render_mode: str | None = None,
        **game_kwargs: Any,
    ) -> None:
        try:
            import textarena as ta
        except ImportError as exc:
            raise ImportError(
                f"TextArena games need the textarena package ({exc}); install it with "
                "pip install textarena (or srl's extra: pip install 'srl[games]')"
            ) from None
        if isinstance(game, str):
            try:
                self.env = ta.make(game, **game_kwargs)
            except Exception as exc:  # TextArena raises ValueError/KeyError for unknown ids
                raise ValueError(
                    f"TextArena cannot make {game!r} with {sorted(game_kwargs)} ({exc}); its "
                    "arguments are those of the TextArena game, and the bridge's are "
                    "num_players, episode_length/max_cycles, format_penalty, render_mode"
                ) from None
            self.game_name = game
        else:
            self.env = game
            self.game_name = type(getattr(game, "unwrapped", game)).__name__
        self.num_players = check_int_range("num_players", num_players, 1)
        # None: the game's own end
        self.episode_length = episode_length_arg(episode_length, max_cycles, None, 1, None)
        self.format_penalty = check_float_range("format_penalty", format_penalty, 0.0)
        if render_mode not in (None, "human", "ansi"):
            raise ValueError(
                f"render_mode must be one of [None, 'human', 'ansi'], got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.base_id = env_id
        self.metadata = {**self.metadata, "name": f"srl_textarena_{self.game_name}"}
        self.possible_agents = [f"player_{i}" for i in range(self.num_players)]
        self.agents: list[str] = []
        self._space = spaces.Text(max_length=MAX_OBS_CHARS, min_length=0, charset=TEXT_CHARSET)
        self._act = spaces.Text(max_length=MAX_ACTION_CHARS, min_length=0, charset=TEXT_CHARSET)
        self._rng = np.random.default_rng()
        self._random_state: Any = None
        self._mover: str | None = None
        self._last: dict[str, str] = {}
        self._answers: dict[str, int] = {}

    @property
    def turns_per_agent(self) -> int:
        return self.episode_length or 5

    def observation_space(self, agent: str) -> spaces.Space:
        return self._space

    def action_space(self, agent: str) -> spaces.Space:
        return self._act

    @property
    def acting_agents(self) -> list[str]:
        return [self._mover] if self.agents and self._mover in self.agents else []

    # ----------------------------------------------------------------- TextArena calls
    def _call(self, fn, *args, **kwargs):
        """Run a TextArena call with this env's own state of Python's ``random``."""
        outer = random.getstate()
        try:
            if self._random_state is not None:
                random.setstate(self._random_state)
            return fn(*args, **kwargs)
        finally:
            self._random_state = random.getstate()
            random.setstate(outer)

    def _state(self):
        return getattr(self.env, "state", None)

    def _read_mover(self) -> None:
        pid, observation = self._call(self.env.get_observation)
        self._mover = f"player_{int(pid)}"
        self._last[self._mover] = _fit(str(observation))

    # ----------------------------------------------------------------- PettingZoo API
    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        game_seed = int(self._rng.integers(2**31 - 1))
        self._random_state = None
        random_outer = random.getstate()
        try:
            random.seed(game_seed)
            self._random_state = random.getstate()
        finally:
            random.setstate(random_outer)
        self._call(self.env.reset, num_players=self.num_players, seed=game_seed)
        self.agents = list(self.possible_agents)
        self._last = {}
        self._answers = dict.fromkeys(self.possible_agents, 0)
        self._read_mover()
        infos = {a: {"to_move": a == self._mover} for a in self.agents}
        return {a: self._observe(a) for a in self.agents}, infos

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        live = list(self.agents)
        mover = self._mover
        given = actions.get(mover)
        text = truncate_for_parsing(given)
        state = self._state()
        errors_before = getattr(state, "error_count", 0)
        turn_before = getattr(state, "turn", None)
        invalid, reason, broken = False, "", False
        if given is None:  # no answer at all: the game gets an empty one, the turn is flagged
            invalid, reason = True, "no action given"
        try:
            done, _ = self._call(self.env.step, action=text)
        except Exception as exc:  # the game could not process the answer: its state is unknown
            done, broken, invalid = True, True, True
            reason = f"the game could not process the answer ({type(exc).__name__}: {exc})"
        self._answers[mover] += 1
        rewards = dict.fromkeys(live, 0.0)
        if not broken:
            state = self._state()
            same_turn = turn_before is not None and getattr(state, "turn", None) == turn_before
            if getattr(state, "error_count", 0) > errors_before or (
                not done and same_turn and getattr(state, "made_invalid_move", False)
            ):
                invalid = True
            if done:
                closed = self._call(self.env.close)
                scores = closed[0] if isinstance(closed, tuple) else closed
                info = closed[1] if isinstance(closed, tuple) and len(closed) > 1 else {}
                for pid, r in (scores or {}).items():
                    if f"player_{pid}" in rewards:
                        rewards[f"player_{pid}"] = float(r)
                if isinstance(info, dict) and info.get(int(mover.split("_")[1]), {}).get(
                    "invalid_move"
                ):
                    invalid, reason = True, str(info[int(mover.split("_")[1])].get("reason", ""))
            else:
                self._read_mover()
                if invalid and not reason:
                    found = _REASON_RE.findall(self._last.get(mover, ""))
                    reason = found[-1].strip() if found else ""
        if invalid and not reason:
            reason = "the game rejected the move"
        truncated = broken
        cap = self.episode_length
        if not done and cap is not None and self._answers.get(self._mover, 0) >= cap:
            done, truncated = True, True
        self.agents = [] if done else live
        penalty = self.format_penalty if invalid else 0.0
        out_rewards, infos = {}, {}
        for agent in live:
            p = penalty if agent == mover else 0.0
            out_rewards[agent] = rewards[agent] - p
            infos[agent] = {
                "raw_score": rewards[agent],
                "reward_components": {"game": rewards[agent], "format_penalty": -p},
                "invalid_action": invalid and agent == mover,
                "invalid_reason": reason if agent == mover else "",
                "action": text if agent == mover else None,
                "action_span": None,
                "acted": agent == mover,
                "to_move": bool(self.agents) and agent == self._mover,
            }
        terminations = {a: done and not truncated for a in live}
        truncations = {a: done and truncated for a in live}
        return {a: self._observe(a) for a in live}, out_rewards, terminations, truncations, infos

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        text = self._observe(self._mover) if self._mover else ""
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        pass

    def _observe(self, agent: str) -> str:
        last = self._last.get(agent, "")
        if not self.agents:
            return _fit(last + "\n\nThe game is over.")
        if agent == self._mover:
            return last
        notice = f"TextArena {self.game_name}: you are {agent}. It is {self._mover}'s turn; wait."
        return _fit((last + "\n\n" if last else "") + notice)


def textarena_env(game: str | Any, **options: Any) -> TextArenaEnv:
    """A TextArena game (its id, ``"TicTacToe-v0"``, or an env ``ta.make`` built) in srl's
    text mode (:class:`TextArenaEnv`)."""
    return TextArenaEnv(game, **options)


class BracketedRandom(ScriptedPolicy):
    """Answers one of the bracketed moves (``'[4]'``, ``'[bet]'``) the prompt offers last,
    at random; ``[0]`` when it offers none."""

    name = "random"
    _OFFER_RE = re.compile(r"'\[([^\]\n]{1,40})\]'")

    def act(self, observation: str) -> str:
        tail = observation[-1500:]
        offers = self._OFFER_RE.findall(tail)
        if not offers:
            return "[0]"
        # the last line that offers moves is the current one
        line = [ln for ln in tail.splitlines() if self._OFFER_RE.search(ln)][-1]
        options = self._OFFER_RE.findall(line)
        return f"[{self.rng.choice(options)}]"
