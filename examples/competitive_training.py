"""Competitive mode (Core SRL guide): zero-sum rewards, only the top performers update.

    python examples/competitive_training.py                  # 6 training episodes
    python examples/competitive_training.py --max-episodes 2

Trains 4 LoRA slots of the embedded SmolLM2-135M on the commons game with zero-sum rewards
and SELECTIVE updates for a few episodes on a CPU, then prints rewards and update counts.
"""

import asyncio

from srl_trainers import WeightUpdateStrategy, create_competitive_multimodel_trainer


async def main(max_episodes: int = 6) -> dict:
    trainer = create_competitive_multimodel_trainer(num_models=4)
    trainer.config.competition_intensity = 0.7  # High competition
    trainer.config.weight_update_strategy = WeightUpdateStrategy.SELECTIVE
    trainer.config.max_episodes = max_episodes
    trainer.config.checkpoint_dir = "./checkpoints/competitive"
    try:
        results = await trainer.train()
        for model_id, stats in trainer.get_model_performance_summary().items():
            print(f"{model_id}: reward {stats['avg_reward']:+.3f}, updates {stats['update_count']}")
        return results
    finally:
        await trainer.shutdown()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-episodes", type=int, default=6)
    asyncio.run(main(parser.parse_args().max_episodes))
