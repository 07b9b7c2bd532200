"""Any PettingZoo game with ``Discrete`` actions, in srl's text mode: prompts in, text out.

:func:`text_env` wraps a PettingZoo AEC env (turn-based: tic-tac-toe, connect four, poker,
chess, go) or Parallel env (simultaneous: rock-paper-scissors) into a ``ParallelEnv`` whose
observations are prompts and whose actions are free text, like srl's own games, so the
trainer, the evaluator and any MARL code that speaks srl's text mode play it unchanged::

    from pettingzoo.classic import connect_four_v3
    import srl_envs

    env = srl_envs.text_env(connect_four_v3.env())
    observations, infos = env.reset(seed=0)
    print(observations[env.acting_agents[0]])          # the prompt of the agent to move
    env.step({env.acting_agents[0]: "MOVE: 4"})

**The prompt** of the agent to move: the game's rules in a few lines, the state as text (a
renderer per named game, :mod:`srl_envs.bridge.games`; any other game shows its ``ansi``
render or its observation vector), the legal actions by name, and the answer format
``MOVE: <action>``. The others see the state and whose turn it is.

**Turn order.** ``env.agents`` are the agents still in the game; ``env.acting_agents`` the
ones whose answer the next ``step`` reads: in a turn-based game only the agent to move (the
AEC env's ``agent_selection``), in a simultaneous game every live agent. Actions of the other
agents are ignored. Every live agent gets an observation, a reward (the game's reward of
this step: in a turn-based game the loser's -1 arrives on the winner's move) and its info
at every step, as PettingZoo's Parallel API asks. Agents leave ``env.agents`` when the game
terminates or truncates them; finished AEC agents are stepped with ``None`` by the bridge.
``infos[agent]["to_move"]`` tells whether the agent acts at the next step.

**Parsing** (:func:`parse_move`, never raises): the text after the first ``MOVE:`` (also
``ACTION:``/``ANSWER:``, any case) names the move: an action name (``5``, ``call``), or for
games whose actions are words, the number of the action in the prompt's numbered list
(``2`` for ``2) raise``). Without the keyword, an answer that names exactly one action
(``I play call.``) is read leniently; one naming several, or none, is invalid. Numbers follow
srl's number rule (:mod:`srl_envs.parsing`): ``-7``, ``1,000`` or ``5.5`` name no move. An action the
mask forbids (a taken cell, a full column, a check facing a bet) is invalid too.

**Invalid answers** never reach the game: the mover plays the fallback instead
(``fallback="random"``: a legal action drawn from the bridge's seeded generator, the
default; or an action name or id, played when it is legal, else a random legal one),
``infos[agent]["invalid_action"]`` is True with the reason in ``invalid_reason``, and
``format_penalty`` is subtracted from its reward.

**Options**: ``episode_length`` (``max_cycles``): most answers per agent, after which the
game truncates (None: play to the game's own end); ``seat_order="random"``: a seeded
permutation of who plays which seat at every reset (a policy trained on one agent then plays
both first and second), ``"fixed"`` (default) keeps PettingZoo's; ``format_penalty`` (0.1);
``fallback``; ``move_order="random"``: the legal moves listed in a seeded random order
each turn (a small model's likeliest answer is the first move listed, so with the default
``"fixed"`` order, the lowest cell or column first, or the game's own order of named
actions, its untrained greedy play is one fixed opening; shuffled, that first answer is a random legal move and only what the model reads
of the board can make one move likelier than another); ``render_mode``
(``"ansi"``/``"human"``: the state text of seat 0 and whose turn it is).
``reset(options=...)`` ignores keys it does not know (srl's trainer passes the cooperation
balance, which these games, with their own rewards, do not use).

``infos[agent]`` holds srl's keys (``raw_score``: the game's reward this step,
``reward_components``, ``invalid_action``, ``invalid_reason``, ``action``: the action id the
game received, None when the agent did not act, ``action_span``) and ``acted``, ``to_move``,
``seat``, ``action_name``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv

from srl_envs.base import MAX_ACTION_CHARS, MAX_OBS_CHARS, RENDER_MODES, TEXT_CHARSET, to_charset
from srl_envs.bridge.games import GameText, GameView, game_text_for
from srl_envs.checks import check_choice, check_float_range, episode_length_arg
from srl_envs.parsing import ParseResult, truncate_for_parsing

__all__ = ["ACTION_KEYWORD", "TextBridgeEnv", "parse_move", "text_env"]

ACTION_KEYWORD = "MOVE:"
SEAT_ORDERS = ("fixed", "random")
MOVE_ORDERS = ("fixed", "random")
_KEYWORD_RE = re.compile(r"\b(?:move|action|answer)\s*[:=]", re.IGNORECASE)
# A token is a number by srl's number rule (srl_envs.parsing: "-7", "1,000", "1e2" and "5.5"
# are one token each, and no move's name) or a word ("call", "b2", "lizard").
_TOKEN_RE = re.compile(
    r"(?<![\w.])[-+]?[0-9](?:[0-9A-Za-z_]|[.,](?=[0-9]))*|[A-Za-z_][A-Za-z0-9_]*(?:['-][A-Za-z0-9_]+)*"
)


def parse_move(
    text: object, names: list[str], legal: list[int], *, numbered: bool = False
) -> ParseResult:
    """An answer -> the action id it names (see the module docstring), never raising.

    ``names``: the name of every action id; ``legal``: the ids allowed now, in the order the
    prompt lists them (``numbered``: a number answer picks from that list)."""
    text = truncate_for_parsing(text)
    by_name = {name.lower(): i for i, name in enumerate(names)}
    shown = ", ".join(names[i] for i in legal)

    def lookup(token: str, *, by_number: bool) -> int | None:
        token = token.lower()
        if token in by_name:
            return by_name[token]
        if by_number and numbered and token.isdigit() and 1 <= int(token) <= len(legal):
            return legal[int(token) - 1]
        return None

    def checked(action: int, span: tuple[int, int]) -> ParseResult:
        if action not in legal:
            return ParseResult(
                None, f"{names[action]!r} is not a legal move now; legal moves: {shown}"
            )
        return ParseResult(action, "", span)

    key = _KEYWORD_RE.search(text)
    if key is not None:
        token = _TOKEN_RE.search(text, key.end())
        if token is None or text[key.end() : token.start()].strip(" \t*`\"'([") != "":
            return ParseResult(
                None, f"nothing readable after {key.group(0)!r}; answer {ACTION_KEYWORD} <move>"
            )
        action = lookup(token.group(0), by_number=True)
        if action is None:
            return ParseResult(
                None,
                f"{token.group(0)[:20]!r} after {key.group(0)!r} is no move; legal moves: {shown}",
            )
        return checked(action, token.span())
    tokens = list(_TOKEN_RE.finditer(text))
    if len(tokens) == 1:  # a bare answer: "5", "call", or a list number
        action = lookup(tokens[0].group(0), by_number=True)
        if action is not None:
            return checked(action, tokens[0].span())
    found: dict[int, tuple[int, int]] = {}
    for token in tokens:
        action = lookup(token.group(0), by_number=False)
        if action is not None:
            found.setdefault(action, token.span())
    if len(found) == 1:
        ((action, span),) = found.items()
        return checked(action, span)
    if not found:
        return ParseResult(None, f"no move found; answer {ACTION_KEYWORD} <move> ({shown})")
    several = ", ".join(names[a] for a in found)
    return ParseResult(
        None, f"names several moves ({several}); answer one: {ACTION_KEYWORD} <move>"
    )


class TextBridgeEnv(ParallelEnv):
    """A PettingZoo game with ``Discrete`` actions in srl's text mode (see the module
    docstring). Build it with :func:`text_env`."""

    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES), "is_parallelizable": True}
    #: The answer keyword (``MultiModelConfig.response_prefix="auto"`` prefills it).
    action_prefix: str | None = ACTION_KEYWORD
    #: No curriculum: every ``reset(seed=...)`` starts afresh.
    curriculum: Any = None
    teams: dict[str, str] | None = None

    def __init__(
        self,
        env: Any,
        *,
        game: GameText | None = None,
        env_id: str | None = None,
        episode_length: int | None = None,
        max_cycles: int | None = None,
        fallback: str | int = "random",
        format_penalty: float = 0.1,
        seat_order: str = "fixed",
        move_order: str = "fixed",
        render_mode: str | None = None,
    ) -> None:
        if isinstance(env, AECEnv):
            self.turn_based = True
        elif isinstance(env, ParallelEnv):
            self.turn_based = False
        else:
            raise ValueError(
                f"text_env needs a PettingZoo AECEnv or ParallelEnv, got {type(env).__name__}; "
                "pass the env itself, e.g. text_env(tictactoe_v3.env())"
            )
        self.env = env
        self.possible_agents: list[str] = list(env.possible_agents)
        for agent in self.possible_agents:
            space = env.action_space(agent)
            if not isinstance(space, spaces.Discrete):
                raise ValueError(
                    f"text_env needs Discrete action spaces; agent {agent!r} has {space}. Wrap "
                    "games with discrete actions only (a Box or MultiDiscrete action has no "
                    "list of named moves)"
                )
        name = str(getattr(env, "metadata", {}).get("name", ""))
        self.game: GameText = game if game is not None else game_text_for(name)
        self.base_id = env_id  # the registered id whose bots play this game (None: unregistered)
        self.metadata = {**self.metadata, "name": f"srl_text_{name}" if name else "srl_text"}
        # None: the game's own end
        self.episode_length = episode_length_arg(episode_length, max_cycles, None, 1, None)
        self.format_penalty = check_float_range("format_penalty", format_penalty, 0.0)
        self.seat_order = check_choice("seat_order", seat_order, SEAT_ORDERS)
        self.move_order = check_choice("move_order", move_order, MOVE_ORDERS)
        self.render_mode = check_choice("render_mode", render_mode, (None, *RENDER_MODES))
        self._names = {
            a: self.game.action_names(int(env.action_space(a).n)) for a in self.possible_agents
        }
        self.fallback = self._check_fallback(fallback)
        self._obs_space = spaces.Text(max_length=MAX_OBS_CHARS, min_length=0, charset=TEXT_CHARSET)
        self._act_space = spaces.Text(
            max_length=MAX_ACTION_CHARS, min_length=0, charset=TEXT_CHARSET
        )
        self.agents: list[str] = []
        self._rng = np.random.default_rng()
        self._seat: dict[str, int] = {a: i for i, a in enumerate(self.possible_agents)}
        self._pz_obs: dict[str, Any] = {}
        self._pz_infos: dict[str, dict] = {}
        self._history: list[tuple[int, int]] = []
        self._rounds: list[int] = []
        self._scores: list[float] = []
        self._moves: dict[str, int] = {}
        self._round = 0
        self._outcome: dict[str, str] = {}
        self._move_keys: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------- PettingZoo API
    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_space

    @property
    def acting_agents(self) -> list[str]:
        """The agents whose answer the next :meth:`step` reads (see the module docstring)."""
        if not self.agents:
            return []
        if not self.turn_based:
            return list(self.agents)
        mover = self._srl_of(self.env.agent_selection)
        return [mover] if mover in self.agents else []

    @property
    def turns_per_agent(self) -> int:
        """About how many answers each agent writes per game (the trainer sizes its batch of
        env copies by it): the game's typical count, at most ``episode_length``."""
        typical = {"tictactoe_v3": 4, "connect_four_v3": 10, "leduc_holdem_v4": 2}.get(
            self.game.pz_name
        )
        if typical is None:
            typical = int(getattr(self.env.unwrapped, "max_cycles", 0) or 5)
        return min(typical, self.episode_length or typical)

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, str], dict[str, dict]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        game_seed = int(self._rng.integers(2**31 - 1))
        order = (
            self._rng.permutation(len(self.possible_agents))
            if self.seat_order == "random"
            else np.arange(len(self.possible_agents))
        )
        # srl agent possible_agents[i] plays the game's agent possible_agents[order[i]]
        self._pz = {a: self.possible_agents[int(j)] for a, j in zip(self.possible_agents, order)}
        self._srl = {pz: a for a, pz in self._pz.items()}
        self._seat = {a: self.possible_agents.index(self._pz[a]) for a in self.possible_agents}
        self._history, self._rounds, self._round = [], [], 0
        self._scores = [0.0] * len(self.possible_agents)
        self._moves = dict.fromkeys(self.possible_agents, 0)
        self._outcome = {}
        self._pz_obs = {}
        if self.turn_based:
            self.env.reset(seed=game_seed)
            self._pz_infos = {pz: dict(self.env.infos.get(pz, {})) for pz in self.env.agents}
        else:
            obs, infos = self.env.reset(seed=game_seed)
            self._pz_obs, self._pz_infos = dict(obs), {k: dict(v) for k, v in infos.items()}
        self.agents = [self._srl[pz] for pz in self.env.agents]
        self.agents.sort(key=self.possible_agents.index)
        self._draw_move_order()
        observations = {a: self._observe(a) for a in self.agents}
        to_move = set(self.acting_agents)
        return observations, {
            a: {"to_move": a in to_move, "seat": self._seat[a]} for a in self.agents
        }

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        live = list(self.agents)
        acting = self.acting_agents
        chosen: dict[str, int] = {}
        invalid: dict[str, str] = {}
        spans: dict[str, tuple[int, int] | None] = {}
        for agent in acting:  # every answer is read before the game moves
            legal = self._legal(agent)
            result = self._interpret(agent, actions.get(agent), legal)
            if result.valid:
                chosen[agent], spans[agent] = int(result.action), result.span
            else:
                chosen[agent] = self._fallback_action(agent, legal)
                invalid[agent] = result.reason or "invalid action"
        raw = dict.fromkeys(live, 0.0)
        done: set[str] = set()
        truncated: set[str] = set()
        for agent, action in chosen.items():
            self._history.append((self._seat[agent], action))
            self._rounds.append(self._round)
            self._moves[agent] += 1
        if self.turn_based:
            (mover,) = acting
            self.env.step(chosen[mover])
            for pz in self.env.agents:
                if pz in self._srl and self._srl[pz] in raw:
                    raw[self._srl[pz]] += float(self.env.rewards.get(pz, 0.0))
            for pz in list(self.env.agents):
                if self.env.terminations.get(pz) or self.env.truncations.get(pz):
                    done.add(self._srl[pz])
                    if self.env.truncations.get(pz) and not self.env.terminations.get(pz):
                        truncated.add(self._srl[pz])
            while self.env.agents and (
                self.env.terminations.get(self.env.agent_selection)
                or self.env.truncations.get(self.env.agent_selection)
            ):
                self.env.step(None)  # an AEC env steps its finished agents out with None
            done |= {a for a in live if self._pz[a] not in self.env.agents}
            self._pz_infos = {pz: dict(self.env.infos.get(pz, {})) for pz in self.env.agents}
        else:
            obs, rewards, terms, truncs, infos = self.env.step(
                {self._pz[a]: act for a, act in chosen.items()}
            )
            self._pz_obs.update(obs)
            self._pz_infos = {k: dict(v) for k, v in infos.items()}
            for pz, r in rewards.items():
                if self._srl.get(pz) in raw:
                    raw[self._srl[pz]] += float(r)
            for pz in set(terms) | set(truncs):
                if terms.get(pz) or truncs.get(pz):
                    done.add(self._srl[pz])
                    if truncs.get(pz) and not terms.get(pz):
                        truncated.add(self._srl[pz])
            done |= {a for a in live if self._pz[a] not in self.env.agents}
        self._round += 1
        for agent, r in raw.items():
            self._scores[self._seat[agent]] += r
        if self.episode_length is not None:  # the answer cap truncates whoever is still in
            cap_hit = (
                all(self._moves[a] >= self.episode_length for a in self.acting_agents)
                if self.turn_based
                else self._round >= self.episode_length
            )
            if cap_hit:
                for agent in live:
                    if agent not in done:
                        done.add(agent)
                        truncated.add(agent)
        still = [a for a in live if a not in done]
        if not still:
            self._finish_outcomes(live)
        self.agents = still
        to_move = set(self.acting_agents)
        self._draw_move_order()
        rewards, infos, terminations, truncations = {}, {}, {}, {}
        for agent in live:
            penalty = self.format_penalty if agent in invalid else 0.0
            rewards[agent] = float(raw[agent] - penalty)
            action = chosen.get(agent)
            infos[agent] = {
                "raw_score": float(raw[agent]),
                "reward_components": {"game": float(raw[agent]), "format_penalty": -penalty},
                "invalid_action": agent in invalid,
                "invalid_reason": invalid.get(agent, ""),
                "action": action,
                "action_name": None if action is None else self._names[agent][action],
                "action_span": spans.get(agent),
                "acted": agent in chosen,
                "to_move": agent in to_move,
                "seat": self._seat[agent],
            }
            terminations[agent] = agent in done and agent not in truncated
            truncations[agent] = agent in truncated
        observations = {a: self._observe(a) for a in live}
        return observations, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        """The wrapped game's ``state()`` (PettingZoo's global state), where it has one."""
        return self.env.state()

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        seat0 = next(a for a in self.possible_agents if self._seat.get(a) == 0)
        view = self._state_text(seat0)
        whose = ", ".join(self.acting_agents) or "nobody (the game is over)"
        text = f"{view}\nTo move: {whose}"
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        self.env.close()

    # ----------------------------------------------------------------- helpers
    def _srl_of(self, pz_agent: str) -> str:
        return self._srl.get(pz_agent, pz_agent)

    def _check_fallback(self, fallback: Any) -> str | int:
        if fallback == "random":
            return "random"
        names = self._names[self.possible_agents[0]]
        if isinstance(fallback, str) and fallback.lower() in (n.lower() for n in names):
            return [n.lower() for n in names].index(fallback.lower())
        is_int = isinstance(fallback, int | np.integer) and not isinstance(fallback, bool)
        if is_int and 0 <= int(fallback) < len(names):
            return int(fallback)
        raise ValueError(
            f"fallback must be 'random' (a random legal action) or an action of the game: one "
            f"of the names {names} or an id in [0, {len(names) - 1}]; got {fallback!r}"
        )

    def _raw_observation(self, agent: str) -> tuple[Any, Any]:
        """(observation, action mask or None) of the agent, from the wrapped env."""
        pz = self._pz[agent]
        if self.turn_based:
            try:
                obs = self.env.observe(pz)
                self._pz_obs[pz] = obs
            except Exception:  # some games cannot observe a finished agent: its last view
                obs = self._pz_obs.get(pz)
        else:
            obs = self._pz_obs.get(pz)
        mask = self._pz_infos.get(pz, {}).get("action_mask")
        if isinstance(obs, dict) and "observation" in obs:
            mask = obs.get("action_mask", mask)
            obs = obs["observation"]
        return obs, mask

    def _legal(self, agent: str) -> list[int]:
        _, mask = self._raw_observation(agent)
        n = len(self._names[agent])
        if mask is None:
            mask = [1] * n
        legal = [i for i in range(n) if mask[i]] or list(range(n))
        names = self._names[agent]
        if self.move_order == "random":  # this turn's seeded order, as the prompt lists it
            keys = self._move_keys[agent]
            legal.sort(key=lambda i: keys[i])
        elif not self.game.numbered(names):  # numeric names are listed in their own order
            legal.sort(key=lambda i: int(names[i]))
        return legal

    def _draw_move_order(self) -> None:
        """With ``move_order="random"``: the order in which the next prompts list each agent's
        legal moves (and number them), drawn from the bridge's seeded generator."""
        if self.move_order == "random":
            self._move_keys = {
                a: self._rng.random(len(self._names[a])) for a in self.possible_agents
            }

    def _interpret(self, agent: str, action: Any, legal: list[int]) -> ParseResult:
        if action is None:
            return ParseResult(None, "no action given")
        try:
            names = self._names[agent]
            return parse_move(action, names, legal, numbered=self.game.numbered(names))
        except Exception as exc:  # an action object that cannot even be read is invalid
            return ParseResult(None, f"unreadable action of type {type(action).__name__}: {exc}")

    def _fallback_action(self, agent: str, legal: list[int]) -> int:
        if self.fallback != "random" and self.fallback in legal:
            return int(self.fallback)
        return int(self._rng.choice(legal))

    def _view(self, agent: str) -> GameView:
        obs, _ = self._raw_observation(agent)
        ansi = None
        if getattr(self.env, "render_mode", None) == "ansi":
            try:
                ansi = self.env.render()
            except Exception:  # a game whose ansi render fails still shows its vector
                ansi = None
        return GameView(
            agent=agent,
            seat=self._seat[agent],
            num_seats=len(self.possible_agents),
            observation=obs,
            to_move=agent in self.acting_agents,
            history=list(self._history),
            rounds=list(self._rounds),
            ansi=ansi if isinstance(ansi, str) else None,
            round=self._round,
            scores=list(self._scores),
        )

    def _state_text(self, agent: str) -> str:
        try:
            return self.game.render_state(self._view(agent))
        except Exception as exc:  # a renderer that fails on an odd state still gives a prompt
            return f"(state not shown: {type(exc).__name__})"

    def _finish_outcomes(self, agents: list[str]) -> None:
        for agent in agents:
            mine = self._scores[self._seat[agent]]
            others = [s for i, s in enumerate(self._scores) if i != self._seat[agent]]
            best = max(others) if others else 0.0
            self._outcome[agent] = "won" if mine > best else "lost" if mine < best else "drew"

    def _observe(self, agent: str) -> str:
        game = self.game
        seat = self._seat[agent]
        n = len(self.possible_agents)
        head = f"{game.title}: you are {agent}{game.seat_label(seat)}"
        if self.turn_based and n == 2 and game.fixed_turn_order:
            head += ", moving first" if seat == 0 else ", moving second"
        lines = [head + ".", f"Rules: {game.rules}", "", self._state_text(agent), ""]
        if agent in self._outcome or not self.agents:
            outcome = self._outcome.get(agent, "finished")
            lines.append(
                f"The game is over: you {outcome} (score {self._scores[seat]:+g})."
                if outcome != "finished"
                else "The game is over."
            )
        elif agent in self.acting_agents:
            names = self._names[agent]
            legal = self._legal(agent)
            if game.numbered(names):
                listed = "  ".join(f"{k}) {names[i]}" for k, i in enumerate(legal, 1))
            else:
                listed = ", ".join(names[i] for i in legal)
            lines += [
                "It is your turn." if self.turn_based else "Choose your move for this round.",
                f"Legal moves: {listed}",
                # no example move: a small model copies an example (the first legal move)
                # and training then only sharpens that copy
                f"Answer with one line: {ACTION_KEYWORD} <move>, with one of the legal moves.",
            ]
        else:
            movers = ", ".join(self.acting_agents)
            lines.append(f"It is {movers}'s turn; wait (no answer is read from you now).")
        return to_charset("\n".join(lines))[:MAX_OBS_CHARS]


def text_env(env: Any, **options: Any) -> TextBridgeEnv:
    """Wrap a PettingZoo AEC or Parallel env with ``Discrete`` actions into srl's text mode
    (:class:`TextBridgeEnv`; the options are in the module docstring)."""
    return TextBridgeEnv(env, **options)
