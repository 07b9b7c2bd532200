"""PettingZoo's games for LLM agents: the text bridge and the registered ``srl/pz-*`` ids.

:func:`text_env` wraps any PettingZoo AEC or Parallel env with ``Discrete`` actions into
srl's text mode (see :mod:`srl_envs.bridge.env`). Four of PettingZoo's classic games are
registered, each under its PettingZoo name and version, with a renderer of their own and two
scripted players (``random``: a random legal move; ``heuristic``: one per game, see
:mod:`srl_envs.bridge.bots`):

* ``srl/pz-tictactoe-v3``, ``srl/pz-connect_four-v3``, ``srl/pz-leduc_holdem-v4`` (turn-based),
* ``srl/pz-rps-v2`` (simultaneous rock-paper-scissors).

TextArena's games (text games already, in their own answer format) come through
:func:`textarena_env` (:mod:`srl_envs.bridge.textarena`): ``srl/ta-tictactoe-v0``,
``srl/ta-kuhn_poker-v0``, ``srl/ta-prisoners_dilemma-v0``.

``srl_envs.make("srl/pz-tictactoe-v3", seat_order="random")``: the bridge's options
(``episode_length``/``max_cycles``, ``seat_order``, ``move_order``, ``fallback``,
``format_penalty``, ``render_mode``) go to the bridge, every other keyword to the PettingZoo
constructor (``num_actions=5`` for rock-paper-scissors-lizard-spock; for rps ``max_cycles``
is the game's own round count). They need PettingZoo's classic extra
(``pip install 'pettingzoo[classic]'``, in srl's ``test`` and ``games`` extras).

:func:`register_pettingzoo` registers another game the same way, so the trainer, the
evaluator and ``--env`` take it by id.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from srl_envs.bridge.bots import BOTS, RandomLegal, read_legal
from srl_envs.bridge.env import ACTION_KEYWORD, TextBridgeEnv, parse_move, text_env
from srl_envs.bridge.games import GAMES, GameText, GameView, GenericText, game_text_for
from srl_envs.bridge.textarena import TA_GAMES, BracketedRandom, TextArenaEnv, textarena_env
from srl_envs.policies import ScriptedPolicy
from srl_envs.registry import EnvSpec, register

__all__ = [
    "ACTION_KEYWORD",
    "BOTS",
    "GAMES",
    "PZ_GAMES",
    "TA_GAMES",
    "BracketedRandom",
    "GameText",
    "GameView",
    "GenericText",
    "RandomLegal",
    "TextArenaEnv",
    "TextBridgeEnv",
    "game_text_for",
    "parse_move",
    "read_legal",
    "register_pettingzoo",
    "text_env",
    "textarena_env",
]

BRIDGE_OPTIONS = frozenset(
    {
        "episode_length",
        "max_cycles",
        "seat_order",
        "move_order",
        "fallback",
        "format_penalty",
        "render_mode",
    }
)

# srl id -> (PettingZoo module, how to build the env from it, description)
PZ_GAMES: dict[str, tuple[str, str, str]] = {
    "srl/pz-tictactoe-v3": (
        "pettingzoo.classic.tictactoe_v3",
        "env",
        "PettingZoo tic-tac-toe (turn-based, 2 players), cells numbered 1-9.",
    ),
    "srl/pz-connect_four-v3": (
        "pettingzoo.classic.connect_four_v3",
        "env",
        "PettingZoo connect four (turn-based, 2 players), columns numbered 1-7.",
    ),
    "srl/pz-leduc_holdem-v4": (
        "pettingzoo.classic.leduc_holdem_v4",
        "env",
        "PettingZoo Leduc hold'em poker (turn-based, 2 players): call, raise, fold, check.",
    ),
    "srl/pz-rps-v2": (
        "pettingzoo.classic.rps_v2",
        "parallel_env",
        "PettingZoo rock-paper-scissors (simultaneous, 2 players, 15 rounds by default).",
    ),
}


def _bridge_factory(env_id: str, make: Callable[..., Any]) -> Callable[..., TextBridgeEnv]:
    def entry_point(**kwargs: Any) -> TextBridgeEnv:
        bridge = {k: v for k, v in kwargs.items() if k in BRIDGE_OPTIONS}
        game = {k: v for k, v in kwargs.items() if k not in BRIDGE_OPTIONS}
        if env_id == "srl/pz-rps-v2" and "max_cycles" in bridge:
            game["max_cycles"] = bridge.pop("max_cycles")  # rps: the game's own round count
        try:
            inner = make(**game)
        except TypeError as exc:
            try:
                accepted = sorted(inspect.signature(make).parameters)
            except (TypeError, ValueError):
                accepted = []
            raise ValueError(
                f"{env_id}: the PettingZoo game has no argument among {sorted(game)} ({exc}); "
                f"its arguments are {accepted}, and the bridge's are {sorted(BRIDGE_OPTIONS)}"
            ) from None
        return text_env(inner, env_id=env_id, **bridge)

    return entry_point


def _lazy(module: str, attr: str) -> Callable[..., Any]:
    def make(**kwargs: Any) -> Any:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(
                f"{module} needs PettingZoo's classic games ({exc}); install them with "
                "pip install 'pettingzoo[classic]' (or srl's extra: pip install 'srl[games]')"
            ) from None
        return getattr(mod, attr)(**kwargs)

    return make


def register_pettingzoo(
    env_id: str,
    make: Callable[..., Any],
    *,
    bots: dict[str, type[ScriptedPolicy]] | None = None,
    default_bot: str | None = None,
    description: str = "",
) -> None:
    """Register a PettingZoo game under ``env_id`` (``srl/<name>-v<N>``) through the bridge:
    ``make(**kwargs)`` builds the PettingZoo env (AEC or Parallel, ``Discrete`` actions) from
    the keywords that are not the bridge's. Its bots default to the random legal player."""
    bots = dict(bots) if bots else {"random": RandomLegal}
    register(
        EnvSpec(
            id=env_id,
            entry_point=_bridge_factory(env_id, make),
            bots=bots,
            default_bot=default_bot or ("heuristic" if "heuristic" in bots else "random"),
            description=description,
            trainer_episode_length=None,
        )
    )


for _id, (_module, _attr, _description) in PZ_GAMES.items():
    _pz_name = _module.rsplit(".", 1)[1]
    register_pettingzoo(
        _id,
        _lazy(_module, _attr),
        bots=BOTS[_pz_name],
        default_bot="heuristic",
        description=_description,
    )


def _textarena_factory(env_id: str, game: str) -> Callable[..., TextArenaEnv]:
    def entry_point(**kwargs: Any) -> TextArenaEnv:
        return TextArenaEnv(game, env_id=env_id, **kwargs)

    return entry_point


for _id, (_game, _description) in TA_GAMES.items():
    register(
        EnvSpec(
            id=_id,
            entry_point=_textarena_factory(_id, _game),
            bots={"random": BracketedRandom},
            default_bot="random",
            description=_description,
            trainer_episode_length=None,
        )
    )
