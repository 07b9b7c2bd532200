"""The offline league: openskill ratings on hand-checked games, head-to-head play of bots, the
base model and checkpoints (tiny model), and its command line's bad input."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from srl_trainers import MultiModelTrainer
from srl_trainers.league import Ratings, main, parse_player, run_league
from srl_trainers.testing import tiny_trainer_config


def test_a_win_moves_both_ratings_and_a_draw_between_equals_moves_neither():
    r = Ratings()
    r.rate([["a"], ["b"]], [1.0, 0.0])
    a, b = r.rating("a"), r.rating("b")
    assert a.mu > 25.0 > b.mu and a.mu - 25.0 == pytest.approx(25.0 - b.mu)
    assert a.sigma < 25.0 / 3 and b.sigma == pytest.approx(a.sigma)
    r.rate([["c"], ["d"]], [0.5, 0.5])
    assert r.rating("c").mu == pytest.approx(25.0) == pytest.approx(r.rating("d").mu)
    assert r.table()[0]["player"] == "a"
    assert r.table()[0]["ordinal"] == pytest.approx(a.mu - 3 * a.sigma)


def test_teams_and_a_multi_player_ranking():
    r = Ratings()
    r.rate([["red_0", "red_1"], ["blue_0", "blue_1"]], [3.0, 1.0])  # a team win
    assert r.rating("red_0").mu == pytest.approx(r.rating("red_1").mu)
    assert r.rating("red_0").mu > 25.0
    r2 = Ratings()
    r2.rate([["x"], ["y"], ["z"]], [10.0, 5.0, 1.0])  # a commons ranking by score
    mus = [r2.rating(n).mu for n in ("x", "y", "z")]
    assert mus[0] > mus[1] > mus[2]
    with pytest.raises(ValueError, match="a score per team"):
        r2.rate([["x"]], [1.0])


def test_ratings_round_trip_through_their_state():
    r = Ratings()
    for _ in range(3):
        r.rate([["a"], ["b"]], [1.0, 0.0])
    copy = Ratings()
    copy.load_state_dict(json.loads(json.dumps(r.state_dict())))
    assert copy.table() == r.table()
    copy.rate([["a"], ["b"]], [0.0, 1.0])
    r.rate([["a"], ["b"]], [0.0, 1.0])
    assert copy.table() == r.table()  # a resumed league continues exactly


def test_bots_are_rated_by_their_games():
    report = run_league(["bot:random", "bot:heuristic"], env="srl/pz-tictactoe-v3", games=8)
    assert report.ratings[0]["player"] == "bot:heuristic"
    assert report.payoff["bot:heuristic"]["bot:random"] > 0.8
    wins = report.results["bot:heuristic"]["bot:random"]
    assert sum(wins.values()) == 16  # 8 games on each side
    assert report.payoff["bot:random"]["bot:heuristic"] == pytest.approx(
        1.0 - report.payoff["bot:heuristic"]["bot:random"]
    )


def test_checkpoints_the_base_and_bots_play_one_league(tiny_model_path, tmp_path, capsys):
    cfg = tiny_trainer_config(
        tiny_model_path,
        tmp_path,
        env="srl/pz-tictactoe-v3",
        num_models=1,
        episode_length=None,
        kv_cache_size=1024,
        opponent_policy="random",
        max_episodes=1,
        save_interval=1,
    )
    MultiModelTrainer(cfg).train_sync()
    ckpt = str(tmp_path / "ckpt")
    out = tmp_path / "league.json"
    code = main(
        [
            "--players", "latest", "base", "bot:random",
            "--checkpoint-dir", ckpt, "--games", "2",
            "--json", str(out), "--png", str(tmp_path / "league.png"),
        ]
    )  # fmt: skip
    assert code == 0 and (tmp_path / "league.png").stat().st_size > 0
    report = json.loads(out.read_text())
    assert {row["player"] for row in report["ratings"]} == {"latest", "base", "bot:random"}
    assert all(row["games"] == 8 for row in report["ratings"])  # 2 opponents x 2 sides x 2
    assert report["command"][:3] == ["python", "-m", "srl_trainers.league"]
    slot = cfg.slot_ids()[0]
    assert parse_player(f"latest#{slot}", ckpt).slot == slot
    with pytest.raises(ValueError, match="has no slot 'model_7_tiny'"):
        parse_player("latest#model_7_tiny", ckpt)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--players", "bot:random"], "two players or more"),
        (["--players", "bot:random", "nosuchplayer"], "no bot:<name>, no 'base'"),
        (["--players", "bot:random", "bot:grandmaster"], "has no bot 'grandmaster'"),
        (["--players", "bot:random", "bot:random"], "name one player twice"),
        (["--players", "bot:random", "bot:heuristic", "--games", "0"], "--games 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--env", "srl/pz-tictactoe-v3", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_training_rates_every_policy_and_a_resume_continues_the_ratings(tiny_model_path, tmp_path):
    cfg = tiny_trainer_config(
        tiny_model_path,
        tmp_path,
        env="team_battle",
        env_kwargs={"team_size": 2},
        max_episodes=2,
        save_interval=1,
    )
    trainer = MultiModelTrainer(cfg)
    results = trainer.train_sync()
    table = {row["player"]: row for row in trainer.ratings.table()}
    # red: the two LoRA slots rated as one team; blue: the heuristic bot
    assert set(table) == {"model_0_tiny", "model_1_tiny", "bot_heuristic"}
    assert table["model_0_tiny"]["mu"] == pytest.approx(table["model_1_tiny"]["mu"])
    assert all(row["games"] == 2 * trainer.num_copies for row in table.values())
    metrics = trainer._last_metrics
    assert metrics["rating/bot_heuristic/ordinal"] == pytest.approx(
        table["bot_heuristic"]["ordinal"]
    )
    summary = results["final_model_states"]["model_0_tiny"]
    assert summary["rating_mu"] == pytest.approx(table["model_0_tiny"]["mu"])
    resumed = MultiModelTrainer(cfg)
    assert resumed.load_checkpoint("latest")
    assert resumed.ratings.table() == trainer.ratings.table()


def test_pfsp_prefers_opponents_beaten_about_half_the_time():
    from srl_trainers.league import SnapshotLeague, pfsp_weights

    weights = pfsp_weights([0.5, 0.9, 1.0, 0.2])
    assert weights[0] == max(weights) and weights[2] == min(weights) > 0
    assert weights[1] == pytest.approx(weights[0] * 0.09 / 0.25)
    league = SnapshotLeague("pfsp", ["s"], ["opp"], max_snapshots=4, seed=0)
    for episode, (wins, games) in enumerate([(5, 10), (9, 10), (10, 10), (2, 10)]):
        league.add(episode)
        league.results[f"ep{episode}"] = [wins, games]
    counts = {s["name"]: 0 for s in league.snapshots}
    for _ in range(20_000):
        counts[league.draw()["name"]] += 1
    for (name, n), w in zip(counts.items(), weights):
        assert n / 20_000 == pytest.approx(w, abs=0.015), name


def test_latest_and_uniform_sampling_and_eviction():
    from srl_trainers.league import SnapshotLeague

    league = SnapshotLeague("latest", ["a", "b"], ["x", "y", "z"], max_snapshots=2, seed=0)
    assert league.draw() is None
    league.add(0)
    league.add(5)
    _, evicted = league.add(9)
    assert [s["name"] for s in evicted] == ["ep0"] and len(league.snapshots) == 2
    snap = league.draw()
    assert snap["name"] == "ep9"
    assert league.mapping({"x": "bot", "y": "bot", "z": "bot", "p": "a"}, snap) == {
        "x": "a_ep9",
        "y": "b_ep9",
        "z": "a_ep9",
        "p": "a",
    }
    uniform = SnapshotLeague("uniform", ["a"], ["x"], max_snapshots=3, seed=1)
    for e in range(3):
        uniform.add(e)
    assert {uniform.draw()["name"] for _ in range(200)} == {"ep0", "ep1", "ep2"}


def _snapshot_weights(trainer, pid):
    from srl_trainers.lora import lora_parameters

    pool = trainer.pools[trainer.policies[pid].checkpoint]
    return {k: p.detach().clone() for k, p in lora_parameters(pool.model, pid).items()}


def test_self_play_freezes_snapshots_plays_them_and_resumes(tiny_model_path, tmp_path):
    import asyncio

    import torch

    from srl_trainers.evaluate import evaluate
    from srl_trainers.policies import SnapshotPolicy

    cfg = tiny_trainer_config(
        tiny_model_path,
        tmp_path,
        env="srl/pz-tictactoe-v3",
        num_models=1,
        episode_length=None,
        kv_cache_size=1024,
        opponent_policy="random",
        opponent_sampling="latest",
        snapshot_interval=1,
        max_snapshots=2,
        max_episodes=3,
        save_interval=1,
    )
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    asyncio.run(trainer.train_multi_model_episode(0))
    first = next(p for p in trainer.policies if p.endswith("_ep0"))
    frozen = _snapshot_weights(trainer, first)
    results = trainer.train_sync()
    saved_league = trainer.league.state_dict()
    snaps = [p for p, x in trainer.policies.items() if isinstance(x, SnapshotPolicy)]
    # a snapshot after every update (episodes 0-2), the first before training: ep0..ep3,
    # of which max_snapshots=2 stay
    assert sorted(snaps) == ["model_0_tiny_ep2", "model_0_tiny_ep3"] and first not in snaps
    metrics = results["training_metrics"]
    assert metrics["league/snapshots"] == 2 and 0.0 <= metrics["league/win_rate"] <= 1.0
    # the snapshots play the opponent and are rated; the bot no longer plays
    rated = {row["player"] for row in trainer.ratings.table()}
    assert {"model_0_tiny_ep0", "model_0_tiny_ep1"} <= rated and "bot_random" not in rated
    # a resumed run has the same snapshots, weights and league state
    resumed = MultiModelTrainer(cfg)
    assert resumed.load_checkpoint("latest")
    assert resumed.league.state_dict() == saved_league
    for pid in snaps:
        mine, theirs = _snapshot_weights(trainer, pid), _snapshot_weights(resumed, pid)
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    # a snapshot's weights never change after it is taken, while the slot's move on
    newest = "model_0_tiny_ep3"
    before = _snapshot_weights(trainer, newest)
    asyncio.run(trainer.train_multi_model_episode(trainer.current_episode))
    after = _snapshot_weights(trainer, newest)
    assert all(torch.equal(before[k], after[k]) for k in before)
    slot_now = _snapshot_weights(trainer, trainer.slots[0])
    assert not all(torch.equal(a, b) for a, b in zip(slot_now.values(), frozen.values()))
    # evaluation plays the fixed opponent, not a snapshot
    report = evaluate(trainer, num_episodes=2)
    assert report.opponent == "random"
    # the offline league takes a checkpoint's snapshots as players
    ckpt = str(tmp_path / "ckpt")
    league = run_league(
        ["latest", "latest#model_0_tiny_ep2", "bot:random"], checkpoint_dir=ckpt, games=1
    )
    assert {row["player"] for row in league.ratings} == {
        "latest",
        "latest#model_0_tiny_ep2",
        "bot:random",
    }


def test_team_battle_self_play_red_against_its_earlier_blue_teams(tiny_model_path, tmp_path):
    cfg = tiny_trainer_config(
        tiny_model_path,
        tmp_path,
        env="team_battle",
        env_kwargs={"team_size": 2},
        baseline="counterfactual",
        opponent_sampling="pfsp",
        snapshot_interval=1,
        max_episodes=2,
    )
    trainer = MultiModelTrainer(cfg)
    trainer.train_sync()
    # the last episode's blue team: one snapshot, blue_i played by slot i's frozen copy
    blue = [trainer._played_mapping[a] for a in ("blue_0", "blue_1")]
    episode = blue[0].rsplit("_ep", 1)[1]
    assert blue == [f"model_0_tiny_ep{episode}", f"model_1_tiny_ep{episode}"]
    red = {row["player"] for row in trainer.ratings.table()}
    assert {"model_0_tiny", "model_1_tiny", "model_0_tiny_ep0"} <= red
    assert trainer.policy_mapping["blue_0"] == "bot_heuristic"  # the configured mapping stays


def test_self_play_without_opponent_agents_is_a_config_error(tiny_model_path, tmp_path):
    from srl_trainers import ConfigError

    cfg = tiny_trainer_config(
        tiny_model_path, tmp_path, env="srl/pz-tictactoe-v3", num_models=2,
        episode_length=None, kv_cache_size=1024, opponent_sampling="latest",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="needs agents that no slot plays"):
        MultiModelTrainer(cfg).setup()


def test_a_policy_playing_several_seats_counts_once_per_seat():
    """A bot playing both seats of a team meets two slots on equal terms: the update is the
    one two distinct players would get, written once for the bot."""
    from srl_trainers.league import Ratings

    same, distinct = Ratings(), Ratings()
    same.rate([["a", "b"], ["bot", "bot"]], [1.0, 0.0])
    distinct.rate([["a", "b"], ["c", "d"]], [1.0, 0.0])
    for name in ("a", "b"):
        assert same.rating(name).mu == pytest.approx(distinct.rating(name).mu)
        assert same.rating(name).sigma == pytest.approx(distinct.rating(name).sigma)
    assert same.rating("bot").mu == pytest.approx(distinct.rating("c").mu)
    assert same.games["bot"] == 1
    # a draw between equal teams moves no mu
    draw = Ratings()
    draw.rate([["a", "b"], ["bot", "bot"]], [0.5, 0.5])
    assert draw.rating("a").mu == pytest.approx(draw.rating("bot").mu)


def _harvest_api():
    """An OpenAI chat-completions endpoint that answers every commons prompt HARVEST: 5."""
    from fastapi import FastAPI

    app = FastAPI()
    app.state.requests = 0

    @app.post("/v1/chat/completions")
    async def chat() -> dict:
        app.state.requests += 1
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "HARVEST: 5"},
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }

    return app


def test_an_api_model_plays_in_the_league(tmp_path, capsys):
    from srl_trainers.serve import BackgroundServer

    app = _harvest_api()
    with BackgroundServer(app) as server:
        url = server.url + "/v1"
        report = run_league(
            [f"api:fake@{url}", "bot:greedy", "api:other"],
            env="coop_compete",
            games=2,
            api_base_url=url,
        )
        assert app.state.requests > 0
        assert {row["player"] for row in report.ratings} == {
            f"api:fake@{url}",
            "bot:greedy",
            "api:other",
        }
        # the same through the command line, with the endpoint given once
        out = tmp_path / "league.json"
        argv = ["--env", "coop_compete", "--players", "api:fake", "bot:greedy", "--games", "1"]
        assert main([*argv, "--api-base-url", url, "--json", str(out)]) == 0
        assert json.loads(out.read_text())["players"] == ["api:fake", "bot:greedy"]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("player", "needle"),
    [
        ("api:", "name the model"),
        ("api:gpt@ftp://x", "is no http(s) URL"),
        ("api:gpt", "name its endpoint, api:gpt@http://host:port/v1, or give --api-base-url"),
    ],
)
def test_a_bad_api_player_is_one_line_and_exit_code_2(player, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--env", "coop_compete", "--players", player, "bot:greedy", "--games", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("strategy", ["synchronized", "asynchronous", "federated", "selective"])
def test_an_llm_team_against_an_llm_team_with_the_counterfactual_baseline(
    strategy, tiny_model_path, tmp_path
):
    """The layout of num_models=8 in the 4v4 battle, at 2v2: a slot per agent on both teams,
    every slot trained, the counterfactual baseline computed for every turn, the teams rated
    as teams."""
    cfg = tiny_trainer_config(
        tiny_model_path,
        tmp_path,
        env="team_battle",
        env_kwargs={"team_size": 2},
        num_models=4,
        baseline="counterfactual",
        episode_length=1,
        weight_update_strategy=strategy,
        selective_top_k=2 if strategy == "selective" else None,
        max_episodes=2,
    )
    trainer = MultiModelTrainer(cfg)
    trainer.setup()
    assert sorted(trainer.policy_mapping.values()) == sorted(trainer.slots)
    assert {trainer.teams[a] for a in trainer.policy_mapping} == {"red", "blue"}
    rollout = asyncio.run(trainer.rollout.play(0, 1.0, 0.4))
    assert rollout.turns and all(not math.isnan(t.baseline) for t in rollout.turns)
    results = trainer.train_sync()
    assert results["training_completed"]
    summary = results["final_model_states"]
    updated = [s for s in trainer.slots if summary[s]["update_count"] > 0]
    if strategy in ("synchronized", "federated"):  # every slot steps every update
        assert updated == trainer.slots
    else:  # own cadences, or the top-k by recent reward
        assert updated
    losses = [v for k, v in results["training_metrics"].items() if k.endswith("/loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    rated = {row["player"] for row in trainer.ratings.table()}
    assert rated == set(trainer.slots)
