"""The PettingZoo text bridge: parsing, masking, fallbacks, turn order, seats, bots, and a
game no renderer knows. Conformance (``parallel_api_test``, ``parallel_seed_test``), the
shared fuzz and the golden playthroughs run on the bridged games in test_conformance.py,
test_fuzz.py and test_golden.py; this file adds the AEC view and what is the bridge's own."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.classic import chess_v6, connect_four_v3, texas_holdem_v4, tictactoe_v3
from pettingzoo.test import parallel_api_test, parallel_seed_test
from pettingzoo.utils.conversions import parallel_to_aec

import srl_envs
from srl_envs.bridge import PZ_GAMES, RandomLegal, parse_move, read_legal, text_env
from tests.envs.test_fuzz import adversarial_strings

NAMES = [str(i) for i in range(1, 10)]


# ------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("MOVE: 5", 4),
        ("move:5", 4),
        ("**MOVE:** 7", 6),
        ("Action = 3", 2),
        ("MOVE: 5.", 4),
        ("MOVE: 5\nMOVE: 6", 4),  # the first keyword decides
        ("5", 4),
        ("I take the centre, cell 5, obviously", 4),  # one move named: clear intent
        ("answer: 9 because 9 wins", 8),
    ],
)
def test_a_move_is_read_by_name_leniently(text, action):
    result = parse_move(text, NAMES, list(range(9)))
    assert result.action == action, result
    assert text[slice(*result.span)] == NAMES[action]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("MOVE: 10", "is no move"),
        ("MOVE: 0", "is no move"),
        ("MOVE: -5", "is no move"),  # the number rule: -5 is no 5
        ("MOVE: 5.5", "is no move"),
        ("MOVE: 1e2", "is no move"),
        ("MOVE:", "nothing readable"),
        ("MOVE: the centre", "is no move"),
        ("I like 3 and 7", "several moves"),
        ("", "no move found"),
        ("HARVEST: 1,000", "no move found"),
        ("MOVE: 2", "not a legal move"),  # masked out below
    ],
)
def test_a_bad_answer_is_invalid_with_its_reason(text, reason):
    result = parse_move(text, NAMES, [0, 2, 4, 6, 8])
    assert result.action is None and reason in result.reason, result


def test_word_actions_are_read_by_name_or_by_their_number_in_the_list():
    names = ["call", "raise", "fold", "check"]
    legal = [0, 1, 2]  # listed as 1) call 2) raise 3) fold
    assert parse_move("MOVE: Raise", names, legal, numbered=True).action == 1
    assert parse_move("MOVE: 3", names, legal, numbered=True).action == 2
    assert parse_move("2", names, legal, numbered=True).action == 1
    assert parse_move("I will fold.", names, legal, numbered=True).action == 2
    assert "not a legal move" in parse_move("MOVE: check", names, legal, numbered=True).reason
    assert parse_move("MOVE: 4", names, legal, numbered=True).action is None


# ------------------------------------------------------------------------------- the env
class SpyTicTacToe:
    """Wraps tic-tac-toe's AEC env and records (and checks) every action it receives."""

    @staticmethod
    def make(**kw):
        env = srl_envs.make("srl/pz-tictactoe-v3", **kw)
        inner = env.env
        received = []
        step = inner.step

        def checked_step(action):
            if action is not None:
                mask = inner.observe(inner.agent_selection)["action_mask"]
                assert mask[action], f"the game received the illegal action {action}"
            received.append(action)
            step(action)

        inner.step = checked_step
        return env, received


def test_only_the_agent_to_move_is_prompted_and_the_others_wait():
    env = srl_envs.make("srl/pz-tictactoe-v3")
    obs, infos = env.reset(seed=3)
    assert env.acting_agents == ["player_1"] and infos["player_1"]["to_move"]
    assert "Legal moves: 1, 2, 3, 4, 5, 6, 7, 8, 9" in obs["player_1"]
    assert "It is player_1's turn; wait" in obs["player_2"]
    obs, _rewards, _terms, _truncs, infos = env.step({"player_1": "MOVE: 5", "player_2": "MOVE: 1"})
    assert infos["player_1"]["action"] == 4 and infos["player_1"]["acted"]
    assert infos["player_2"]["action"] is None and not infos["player_2"]["acted"]
    assert not infos["player_2"]["invalid_action"]  # its answer was not read at all
    assert env.acting_agents == ["player_2"]
    assert (
        " 4 | X | 6" in obs["player_2"] and "Legal moves: 1, 2, 3, 4, 6, 7, 8, 9" in obs["player_2"]
    )


def test_an_illegal_move_never_reaches_the_game_and_gets_the_fallback():
    env, received = SpyTicTacToe.make(fallback="9")
    env.reset(seed=0)
    env.step({"player_1": "MOVE: 5"})
    _, rewards, _, _, infos = env.step({"player_2": "MOVE: 5"})  # taken
    info = infos["player_2"]
    assert info["invalid_action"] and "not a legal move" in info["invalid_reason"]
    assert info["action"] == 8 and received[-1] == 8  # the configured default, legal here
    assert rewards["player_2"] == pytest.approx(-0.1)  # the format penalty
    _, _, _, _, infos = env.step({"player_1": "pass"})
    assert infos["player_1"]["invalid_action"] and infos["player_1"]["action"] != 8


def test_fuzzed_answers_never_raise_and_never_reach_the_game_illegal():
    env, received = SpyTicTacToe.make(seat_order="random")
    inputs = adversarial_strings(seed=5, n=3000)
    inputs += [f"MOVE: {i}" for i in range(-3, 13)] * 20  # near misses and taken cells
    env.reset(seed=0)
    flagged = 0
    for text in inputs:
        if not env.agents:
            env.reset()
        (mover,) = env.acting_agents
        _, rewards, _, _, infos = env.step({mover: text})
        assert np.isfinite(rewards[mover])
        assert bool(infos[mover]["invalid_reason"]) == infos[mover]["invalid_action"]
        flagged += infos[mover]["invalid_action"]
    assert flagged > len(inputs) // 2 and len(received) >= len(inputs)


@pytest.mark.parametrize("env_id", sorted(PZ_GAMES))
def test_every_named_game_survives_thousands_of_adversarial_answers(env_id):
    env = srl_envs.make(env_id)
    inputs = adversarial_strings(seed=11, n=2000)
    env.reset(seed=1)
    games = 0
    for text in inputs:
        if not env.agents:
            env.reset()
            games += 1
        _, rewards, _, _, infos = env.step(dict.fromkeys(env.acting_agents, text))
        for agent, info in infos.items():
            assert np.isfinite(rewards[agent])
            if info["acted"]:
                assert info["action"] is not None  # always a legal action, the fallback if need be
    assert games > 5


@pytest.mark.parametrize("env_id", sorted(PZ_GAMES))
def test_the_aec_view_of_a_bridged_game_plays_a_game(env_id):
    """PettingZoo's parallel_to_aec turns the bridge back into an AEC env (every live agent
    is asked in turn; the bridge reads only the mover's answer)."""
    aec = parallel_to_aec(srl_envs.make(env_id))
    aec.reset(seed=0)
    bot = RandomLegal(seed=0)
    steps = 0
    for _agent in aec.agent_iter(max_iter=500):
        observation, _, terminated, truncated, _ = aec.last()
        assert isinstance(observation, str)
        aec.step(None if terminated or truncated else bot.act(observation) or "wait")
        steps += 1
    assert steps > 2 and not aec.agents


def test_random_seats_deal_both_seats_and_say_so():
    env = srl_envs.make("srl/pz-tictactoe-v3", seat_order="random")
    firsts = set()
    for seed in range(12):
        obs, infos = env.reset(seed=seed)
        (mover,) = env.acting_agents
        assert "moving first" in obs[mover] and "(X)" in obs[mover]
        firsts.add(mover)
        assert infos[mover]["seat"] == 0
    assert firsts == {"player_1", "player_2"}


def test_rewards_that_arrive_on_the_winners_move_reach_the_loser():
    env = srl_envs.make("srl/pz-tictactoe-v3")
    env.reset(seed=0)
    for move in ("1", "4", "2", "5"):
        env.step(dict.fromkeys(env.acting_agents, f"MOVE: {move}"))
    obs, rewards, terms, _truncs, _infos = env.step({"player_1": "MOVE: 3"})
    assert rewards == {"player_1": 1.0, "player_2": -1.0}
    assert terms == {"player_1": True, "player_2": True} and env.agents == []
    assert "you won (score +1)" in obs["player_1"] and "you lost (score -1)" in obs["player_2"]


def test_the_answer_cap_truncates_an_unfinished_game():
    env = srl_envs.make("srl/pz-connect_four-v3", episode_length=2)
    env.reset(seed=0)
    steps = 0
    while env.agents:
        _, _, terms, truncs, _ = env.step(dict.fromkeys(env.acting_agents, "MOVE: 4"))
        steps += 1
    assert steps == 4 and all(truncs.values()) and not any(terms.values())


def test_the_same_seed_plays_the_same_game():
    def play(seed):
        env = srl_envs.make("srl/pz-leduc_holdem-v4", seat_order="random")
        obs, _ = env.reset(seed=seed)
        bot = RandomLegal(seed=0)
        out = []
        while env.agents:
            actions = {a: bot.act(obs[a]) for a in env.acting_agents}
            obs, rewards, _, _, _ = env.step(actions)
            out.append((sorted(actions.items()), sorted(rewards.items())))
        return out

    assert play(4) == play(4)
    assert any(play(4) != play(s) for s in range(5, 10))


def test_leduc_shows_cards_chips_and_numbered_actions():
    env = srl_envs.make("srl/pz-leduc_holdem-v4")
    obs, _ = env.reset(seed=2)
    prompt = obs[env.acting_agents[0]]
    assert "Your card: " in prompt and "Chips in the pot: yours" in prompt
    assert read_legal(prompt) == ["call", "raise", "fold"]
    assert "moving first" not in prompt  # poker deals who starts


def test_rps_is_simultaneous_and_shows_the_last_rounds():
    env = srl_envs.make("srl/pz-rps-v2", max_cycles=3)
    env.reset(seed=0)
    assert env.acting_agents == ["player_0", "player_1"]
    obs, rewards, *_ = env.step({"player_0": "MOVE: rock", "player_1": "paper"})
    assert rewards == {"player_0": -1.0, "player_1": 1.0}
    assert "round 1: rock vs paper" in obs["player_0"]
    assert "round 1: paper vs rock" in obs["player_1"]


# ------------------------------------------------------------------------------- bots
def _win_rate(env_id, first, second, games=40):
    env = srl_envs.make(env_id)
    agents = env.possible_agents
    bots = {
        agents[0]: srl_envs.make_bot(env_id, first, seed=1),
        agents[1]: srl_envs.make_bot(env_id, second, seed=2),
    }
    wins = 0
    for g in range(games):
        obs, _ = env.reset(seed=100 + g)
        total = dict.fromkeys(agents, 0.0)
        while env.agents:
            actions = {a: bots[a].act(obs[a]) for a in env.acting_agents}
            obs, rewards, _, _, infos = env.step(actions)
            assert not any(i["invalid_action"] for i in infos.values())
            for a, r in rewards.items():
                total[a] += r
        wins += total[agents[0]] > total[agents[1]]
    return wins / games


@pytest.mark.parametrize("env_id", ["srl/pz-tictactoe-v3", "srl/pz-connect_four-v3"])
def test_the_heuristic_beats_the_random_legal_player(env_id):
    assert _win_rate(env_id, "heuristic", "random") >= 0.8


def test_the_tictactoe_heuristic_wins_and_blocks():
    bot = srl_envs.make_bot("srl/pz-tictactoe-v3", "heuristic", seed=0)
    env = srl_envs.make("srl/pz-tictactoe-v3")
    env.reset(seed=0)
    for move in ("1", "4", "2"):  # X threatens 3; O must block
        obs, *_ = env.step(dict.fromkeys(env.acting_agents, f"MOVE: {move}"))
    assert bot.act(obs["player_2"]) == "MOVE: 3"
    obs, *_ = env.step({"player_2": "MOVE: 9"})  # O does not block: X wins at 3
    assert bot.act(obs["player_1"]) == "MOVE: 3"


# ------------------------------------------------------------------------------- any game
def test_a_game_no_renderer_knows_plays_end_to_end_with_the_generic_text():
    env = text_env(texas_holdem_v4.env())
    assert env.base_id is None and env.game.pz_name == "texas_holdem_v4"
    parallel_api_test(env, num_cycles=100)
    obs, _ = env.reset(seed=0)
    prompt = obs[env.acting_agents[0]]
    assert "Observation: [" in prompt and "Legal moves: " in prompt
    bot = RandomLegal(seed=0)
    for _ in range(20):
        if not env.agents:
            obs, _ = env.reset()
        obs, _, _, _, infos = env.step({a: bot.act(obs[a]) for a in env.acting_agents})
        assert not any(i["invalid_action"] for i in infos.values())


def test_chess_plays_through_the_generic_text_with_its_legal_moves_by_number():
    env = text_env(chess_v6.env(), episode_length=3)
    obs, _ = env.reset(seed=0)
    prompt = obs["player_0"]
    legal = read_legal(prompt)
    assert len(legal) == 20 and all(m.isdigit() for m in legal)  # the 20 opening moves
    assert "...(cut)" in prompt  # the 8x8x111 observation is cut to fit a prompt
    _, _, _, _, infos = env.step({"player_0": f"MOVE: {legal[0]}"})
    assert not infos["player_0"]["invalid_action"]


def test_the_ansi_render_of_the_wrapped_game_is_its_state_text():
    env = text_env(connect_four_v3.env(render_mode=None), render_mode="ansi")
    env.reset(seed=0)
    view = env.render()
    assert "Board (row 1 is the top" in view and "To move: player_0" in view


def test_registered_pettingzoo_games_build_with_their_kwargs_and_trainer_length():
    env = srl_envs.make("srl/pz-rps-v2", num_actions=5, max_cycles=2)
    obs, _ = env.reset(seed=0)
    assert read_legal(obs["player_0"]) == ["rock", "paper", "scissors", "spock", "lizard"]
    assert all(srl_envs.spec(e).trainer_episode_length is None for e in PZ_GAMES)
    assert srl_envs.spec("srl/team_battle-v0").trainer_episode_length == 2


class _BoxGame(ParallelEnv):
    metadata = {"name": "box_v0"}
    possible_agents = ["a"]

    def action_space(self, agent):
        return spaces.Box(0.0, 1.0, (2,))

    def observation_space(self, agent):
        return spaces.Box(0.0, 1.0, (2,))


def test_what_cannot_be_bridged_is_a_value_error_that_says_why():
    with pytest.raises(ValueError, match="Discrete action spaces"):
        text_env(_BoxGame())
    with pytest.raises(ValueError, match="AECEnv or ParallelEnv"):
        text_env(tictactoe_v3)  # the module, not an env
    with pytest.raises(ValueError, match="fallback must be"):
        text_env(tictactoe_v3.env(), fallback="10")


def test_register_pettingzoo_makes_any_game_an_srl_id():
    srl_envs.register_pettingzoo("srl/pz-texas_holdem-v4", texas_holdem_v4.env)
    try:
        env = srl_envs.make("srl/pz-texas_holdem-v4", seat_order="random")
        assert env.base_id == "srl/pz-texas_holdem-v4"
        assert srl_envs.spec(env.base_id).default_bot == "random"
        parallel_seed_test(lambda: srl_envs.make("srl/pz-texas_holdem-v4"), num_cycles=50)
    finally:
        from srl_envs import registry

        registry._REGISTRY.pop("srl/pz-texas_holdem-v4")


def _listed(prompt: str) -> str:
    (line,) = [ln for ln in prompt.splitlines() if ln.startswith("Legal moves: ")]
    return line.removeprefix("Legal moves: ")


def test_a_random_move_order_lists_the_legal_moves_shuffled_each_turn_from_the_seed():
    env = srl_envs.make("srl/pz-tictactoe-v3", move_order="random")
    orders = []
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        listed = _listed(obs[env.acting_agents[0]]).split(", ")
        assert sorted(listed, key=int) == [str(i) for i in range(1, 10)]
        orders.append(listed)
    assert len({tuple(o) for o in orders}) == 6  # a new order per game...
    again = srl_envs.make("srl/pz-tictactoe-v3", move_order="random")
    assert _listed(again.reset(seed=0)[0]["player_1"]).split(", ") == orders[0]  # ...the seed's
    obs, *_ = env.step({"player_1": "MOVE: 5"})  # a move is read by its name, not its place
    second = _listed(obs["player_2"]).split(", ")
    assert "5" not in second and sorted(second, key=int) == ["1", "2", "3", "4", "6", "7", "8", "9"]
    with pytest.raises(ValueError, match="move_order"):
        srl_envs.make("srl/pz-tictactoe-v3", move_order="alphabetical")


def test_a_shuffled_numbered_list_reads_a_number_as_the_move_listed_there():
    env = srl_envs.make("srl/pz-leduc_holdem-v4", move_order="random")
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        (mover,) = env.acting_agents
        first = _listed(obs[mover]).split("  ")[0]  # "1) raise"
        name = first.split(") ", 1)[1]
        _, _, _, _, infos = env.step({mover: "MOVE: 1"})
        assert not infos[mover]["invalid_action"] and infos[mover]["action_name"] == name
    # the default keeps the game's own order of its actions
    env = srl_envs.make("srl/pz-leduc_holdem-v4")
    obs, _ = env.reset(seed=0)
    assert _listed(obs[env.acting_agents[0]]) == "1) call  2) raise  3) fold"
